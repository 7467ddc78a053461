"""Strategies that tests/test_cli.py binds with ``--strategy NAME=tests.cli_strategies:ATTR``.

They are real strategies (plain functions wrapped in FunctionStrategy by the
CLI, or a Strategy class): each reports progress through its ``ctx`` and
returns :func:`planner.testing.sample_plan`, or fails in a known way.
"""

from __future__ import annotations

import os
import signal

import anyio

from planner import RunContext, StrategyError, TaskPlan, TaskPlanRequest
from planner.testing import sample_plan

NOT_CALLABLE = 42
"""Neither a Strategy nor a function: binding it must be refused."""


def plan_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Sync: reports progress from its worker thread, then returns the sample plan."""
    ctx.emit_sync("progress", stage="analysis", message="Reading the inventory", progress=10)
    ctx.emit_sync("step_started", step=1, step_name="Select agent")
    ctx.emit_sync("tool_call", tool_id="t1", tool_name="get_top_agents", arguments={"limit": 3})
    ctx.emit_sync("tool_result", tool_id="t1", tool_name="get_top_agents", result=["agent-devops"])
    ctx.emit_sync("step_completed", step=1, step_name="Select agent", output="agent-devops")
    return sample_plan(request)


async def async_plan_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Async: one progress event, then the sample plan."""
    await ctx.emit("progress", message="Planning asynchronously")
    return sample_plan(request)


def echo_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Titles the plan with what the request asked for, so tests see the CLI's overrides."""
    title = f"quick={request.quick_mode} strategy={request.planning_strategy}"
    return sample_plan(request, title=title)


async def failing_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Reports progress, then fails the way a strategy reports a failure it understands."""
    await ctx.emit("progress", message="About to fail")
    raise StrategyError("the model refused to plan")


async def slow_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Takes far longer than the tests' ``--timeout``."""
    await ctx.emit("progress", message="Thinking slowly")
    await anyio.sleep(60)
    return sample_plan(request)


async def interrupting_fn(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    """Presses Ctrl-C on its own process, then waits to be cancelled."""
    await ctx.emit("progress", message="Waiting for Ctrl-C")
    os.kill(os.getpid(), signal.SIGINT)
    await anyio.sleep(60)
    return sample_plan(request)


class SampleStrategy:
    """A Strategy class: the CLI builds it with no arguments."""

    async def plan(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        """Return the sample plan with a title naming this class."""
        await ctx.emit("progress", message="SampleStrategy at work")
        return sample_plan(request, title="from SampleStrategy")
