"""The documentation site builds with ``mkdocs build --strict``, offline.

One build per session, into a temporary directory; the tests then read the
generated HTML.  Strict mode turns every warning into a failure: a broken
link, a page missing from the nav, a docstring mkdocstrings cannot parse.
The build runs with the proxy variables pointing at a closed port, so a theme
or plugin that tried to download something would fail it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"
BUILD_TIMEOUT = 110.0
# Plugins of mkdocs-material that fetch from the network while building.
NETWORK_PLUGINS = {"social", "privacy", "optimize", "material/social", "material/privacy"}


def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[name] = "http://127.0.0.1:9"  # the discard port: nothing listens
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(CONFIG),
            "--site-dir",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in nav_pages(config()["nav"]):
        if page.endswith("index.md"):
            built = site / page.removesuffix("index.md") / "index.html"
        else:
            built = site / page.removesuffix(".md") / "index.html"
        assert built.is_file(), page


def test_every_markdown_page_is_in_the_nav() -> None:
    listed = set(nav_pages(config()["nav"]))
    pages = {
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if not p.relative_to(DOCS).as_posix().startswith(("spec/", "_hooks/"))
    }
    assert pages - listed == set(), "add these pages to the nav in mkdocs.yml"
    assert listed - pages == set(), "the nav lists pages that do not exist"


def test_the_required_sections_are_there() -> None:
    pages = set(nav_pages(config()["nav"]))
    assert {"index.md", "concepts.md", "plugins.md", "reference/index.md"} <= pages
    for howto in ("deploy", "refine", "cancel", "recovery"):
        assert f"howto/{howto}.md" in pages
    for guide in ("cli", "stores", "executors", "strategies", "http"):
        assert f"{guide}.md" in pages


def test_no_plugin_downloads_anything() -> None:
    cfg = config()
    names = {p if isinstance(p, str) else next(iter(p)) for p in cfg.get("plugins", [])}
    assert names & NETWORK_PLUGINS == set()
    assert cfg["theme"].get("font") is False  # no Google Fonts
    for plugin in cfg.get("plugins", []):
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            handlers = plugin["mkdocstrings"].get("handlers", {})
            assert all("import" not in h for h in handlers.values())  # no remote inventories


def test_the_api_reference_comes_from_the_docstrings(site: Path) -> None:
    html = (site / "reference" / "planner" / "index.html").read_text(encoding="utf-8")
    assert 'id="planner.planner.Planner"' in html
    assert 'id="planner.planner.Planner.generate"' in html
    assert "Turns task requests into plans, asynchronously, with live progress." in html
    testing = (site / "reference" / "testing" / "index.html").read_text(encoding="utf-8")
    assert 'id="planner.testing.contracts.StoreContract"' in testing


def test_links_to_repository_files_are_rewritten(site: Path) -> None:
    html = (site / "plugins" / "index.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert not [h for h in hrefs if h.startswith("../") and h.endswith(".py")]
    assert "examples/planner-store-example/README.md" in html  # kept as text
    strategies = (site / "strategies" / "index.html").read_text(encoding="utf-8")
    assert 'href="../README.md"' not in strategies


def test_the_getting_started_page_is_the_home_page(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "Getting started" in html
    assert "Your first plan from Python" in html


def load_hook() -> Any:
    spec = importlib.util.spec_from_file_location(
        "source_links", DOCS / "_hooks" / "source_links.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("source_url", "expected"),
    [
        (None, "the [store interface](../index.md) in `planner/interfaces.py`"),
        (
            "https://code.example/planner/blob/main/",
            "the [store interface](../index.md) in "
            "[`planner/interfaces.py`](https://code.example/planner/blob/main/planner/interfaces.py#L1)",
        ),
    ],
)
def test_the_link_hook_rewrites_links_that_leave_docs(
    source_url: str | None, expected: str
) -> None:
    hook = load_hook()
    page = SimpleNamespace(file=SimpleNamespace(src_uri="howto/page.md"))
    cfg = {"docs_dir": str(DOCS), "extra": {"source_url": source_url} if source_url else {}}
    text = (
        "the [store interface](../index.md) in "
        "[`planner/interfaces.py`](../../planner/interfaces.py#L1)"
    )
    assert hook.on_page_markdown(text, page, cfg, None) == expected
    home = hook.on_page_markdown("[the README](../../README.md)", page, cfg, None)
    assert home == "[the README](../index.md)"
    broken = "[gone](../../planner/no_such_module.py)"
    assert hook.on_page_markdown(broken, page, cfg, None) == broken  # strict mode reports it
