"""The example plugin distributions under ``examples/`` install and pass their own tests.

Each one is built by hatchling and installed by pip into a fresh ``--target``
directory (no network, no dependencies: planner itself is the one under test),
then its own test suite runs in a fresh interpreter with that directory on
``PYTHONPATH``, so its entry point is discovered exactly as in a user's
environment and the conformance suite runs against the installed code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dist_support import pip_install

import planner

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PLANNER_SOURCE_ROOT = Path(planner.__file__).resolve().parent.parent
TIMEOUT = 100.0


def test_store_example_installs_registers_and_passes_the_store_contract(tmp_path: Path) -> None:
    source = EXAMPLES / "planner-store-example"
    site = tmp_path / "site"
    pip_install(source, site, TIMEOUT)
    assert (site / "planner_jsonl_store" / "__init__.py").is_file()
    assert list(site.glob("planner_store_example-*.dist-info/entry_points.txt"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env["PLANNER_PLUGINS"] = "jsonl"  # this plugin, and no other third-party one
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLANNER_SOURCE_ROOT)])
    # The example's tests are copied out, so they import the installed module,
    # not the source directory next to them.
    tests = tmp_path / "example-tests"
    tests.mkdir()
    for path in (source / "tests").glob("*.py"):
        (tests / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tests),
            "-c",
            os.devnull,
            "-W",
            "error",
            "--strict-markers",
            "--junit-xml",
            str(tmp_path / "report.xml"),
            str(tests),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"the example's tests failed:\n{result.stdout}\n{result.stderr}"
    report = (tmp_path / "report.xml").read_text(encoding="utf-8")
    # Its own tests and the inherited conformance checks all ran.
    assert 'failures="0"' in report and 'errors="0"' in report
    assert "TestJsonlStoreContract" in report
    assert "test_the_entry_point_registers_the_scheme" in report
    assert "test_create_then_get_round_trips_every_field" in report


@pytest.mark.parametrize("name", ["planner-store-example"])
def test_example_is_linked_from_the_plugin_guide(name: str) -> None:
    assert f"examples/{name}" in (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
