"""``import planner`` loads no optional package (checked with ``python -X importtime``).

Nothing here is timed: import speed is measured by ``bench/bench_import.py``.
Each check runs a fresh interpreter, because this test process has long since
imported pytest, yaml and whatever else the suite needs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

OPTIONAL_PACKAGES = (
    "anthropic",
    "agno",
    "claude_agent_sdk",
    "temporalio",
    "psycopg",
    "psycopg_pool",
    "starlette",
    "uvicorn",
    "httpx",
    "yaml",
    "pytest",
)


def imported_modules(code: str) -> set[str]:
    """Run ``python -X importtime -c code`` and return every module name it reports."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names: set[str] = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        columns = line.split("|")
        if len(columns) != 3 or not columns[0].removeprefix("import time:").strip().isdigit():
            continue  # the header line, or a line we do not understand
        names.add(columns[2].strip())
    return names


def belonging_to(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n.split(".", 1)[0] in packages)


def belonging_to_prefix(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_import_planner_loads_no_optional_package() -> None:
    names = imported_modules("import planner")
    # The report was read: the package and its core dependencies are in it.
    assert {"planner", "planner.planner", "pydantic", "anyio", "pluggy"} <= names
    assert belonging_to(names, OPTIONAL_PACKAGES) == []


def test_import_planner_loads_no_backend_and_no_strategy() -> None:
    names = imported_modules("import planner")
    assert belonging_to_prefix(names, ("planner.backends", "planner.strategies")) == []
    assert belonging_to_prefix(names, ("planner.testing", "planner.http", "planner.cli")) == []


def test_import_planner_testing_loads_neither_pytest_nor_anthropic() -> None:
    names = imported_modules("import planner.testing")
    assert {"planner.testing", "planner.testing.function", "planner.testing.samples"} <= names
    assert belonging_to(names, ("pytest", "_pytest", "anthropic")) == []


@pytest.mark.parametrize("package", ["yaml", "pytest"])
def test_the_check_sees_an_optional_package_that_is_imported(package: str) -> None:
    # Proves the checks above can fail: the same parsing spots a real import.
    names = imported_modules(f"import planner, {package}")
    assert package in belonging_to(names, OPTIONAL_PACKAGES)
