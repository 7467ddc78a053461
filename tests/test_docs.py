"""Every Python example in the README and docs/ runs, in order, like notebook cells.

A block preceded by ``<!-- not-run: reason -->`` is skipped (for examples that
need a real API key or a cluster); each file's blocks share one namespace and
one event loop, so top-level ``await`` works as in Jupyter.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?P<marker><!-- not-run:[^>]*-->\s*)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(path: Path) -> list[str]:
    return [m["code"] for m in BLOCK.finditer(path.read_text()) if not m["marker"]]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip("no Python examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    loop = asyncio.new_event_loop()
    try:
        for i, code in enumerate(blocks, 1):
            compiled = compile(
                code, f"{path.name}[block {i}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            if compiled.co_flags & inspect.CO_COROUTINE:
                loop.run_until_complete(eval(compiled, namespace))
            else:
                exec(compiled, namespace)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
