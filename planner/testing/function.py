"""A strategy made from a function, for tests, benchmarks and quick experiments."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from planner.context import RunContext
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan

__all__ = ["FunctionStrategy", "PlanFunction"]

PlanResult = TaskPlan | dict[str, Any]
PlanFunction = Callable[[TaskPlanRequest, RunContext], PlanResult | Awaitable[PlanResult]]
"""``fn(request, ctx)`` returning a plan (a TaskPlan or its fields), sync or async."""


class FunctionStrategy:
    """A strategy that calls ``fn(request, ctx)``.

    An async ``fn`` runs on the event loop; a sync one runs in a worker thread
    (it may block, and reports progress with ``ctx.emit_sync``).

    Args:
        fn: the function.
        name: a name for messages (default: the function's name).
    """

    __test__ = False  # not a test class, whatever pytest thinks of the module

    def __init__(self, fn: PlanFunction, *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__
        )

    def __repr__(self) -> str:
        return f"FunctionStrategy({self.name})"

    async def plan(self, request: TaskPlanRequest, ctx: RunContext) -> PlanResult:
        """Call the function and return what it returns."""
        if self._is_async:
            result = self.fn(request, ctx)
            assert inspect.isawaitable(result)
            return await result
        out = await anyio.to_thread.run_sync(self.fn, request, ctx, abandon_on_cancel=True)
        if inspect.isawaitable(out):
            return await out
        return out
