"""Built-in executors, registered through the ``planner`` entry point like any plugin."""

from __future__ import annotations

from typing import Any

from planner.hookspecs import hookimpl

__all__ = ["register_executors"]


@hookimpl
def register_executors(register: Any) -> None:
    """Register ``inprocess``, ``threadpool`` and ``temporal``."""
    register("inprocess", "planner.backends.executors.inprocess:InProcessExecutor")
    register("threadpool", "planner.backends.executors.threadpool:ThreadPoolExecutor")
    register("temporal", "planner.backends.executors.temporal:TemporalExecutor", extra="temporal")
