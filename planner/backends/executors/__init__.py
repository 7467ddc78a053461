"""Built-in executors, registered through the ``planner`` entry point like any plugin."""

from __future__ import annotations

from typing import Any

from planner.hookspecs import hookimpl

__all__ = ["register_executors"]


@hookimpl
def register_executors(register: Any) -> None:
    """Register ``inprocess``."""
    register("inprocess", "planner.backends.executors.inprocess:InProcessExecutor")
