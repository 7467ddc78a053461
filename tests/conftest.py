"""Test configuration: every async test runs on anyio's asyncio backend."""

from __future__ import annotations

import inspect
from typing import Any

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    # Mark coroutine tests before anyio's plugin looks at them, so plain
    # `async def test_...` needs no decorator.
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)
