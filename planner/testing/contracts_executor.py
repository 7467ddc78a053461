"""The executor conformance suite: every executor must pass these.

Subclass :class:`ExecutorContract` in your own test module and provide an
``executor_factory`` fixture: a function that returns a new, unstarted
executor each time it is called.  Executors from one factory must be able to
pick up each other's work (a Temporal factory uses one task queue per test)::

    import pytest
    from planner.testing.contracts_executor import ExecutorContract

    class TestMyExecutor(ExecutorContract):
        @pytest.fixture
        def executor_factory(self):
            return lambda: MyExecutor(shutdown_timeout=0.2)

The suite runs a real :class:`~planner.Planner` on a memory store (override
:meth:`ExecutorContract.make_store` for another store) with strategies made
from functions.  Strategies may run on other threads or event loops, so they
synchronise with the test through thread-safe :class:`Gate` objects.  Give the
factory's executors a short shutdown grace period (under a second): one test
closes an executor with a run in flight.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from planner.context import RunContext
from planner.errors import (
    ExecutionCancelledError,
    ExecutionFinishedError,
    PlanGenerationFailedError,
)
from planner.events import TERMINAL_TYPES, Event
from planner.execution import ExecutionStatus
from planner.interfaces import Executor, Store
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.planner import Planner
from planner.testing.function import FunctionStrategy, PlanFunction
from planner.testing.samples import sample_plan, sample_request

__all__ = ["ExecutorContract", "ExecutorFactory", "Gate", "assert_well_formed"]

ExecutorFactory = Callable[[], Executor]
"""Returns a new, unstarted executor."""


def assert_well_formed(events: list[Event]) -> None:
    """Assert a finished log: ``seq`` 1..n, exactly one terminal event, then ``done`` last."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events, "the log is empty"
    assert events[-1].type == "done"
    assert sum(e.type in TERMINAL_TYPES for e in events) == 1
    assert events[-2].type in TERMINAL_TYPES


class Gate:
    """A strategy that reports progress, then waits until released; usable from any thread.

    Attributes:
        started: set when the strategy is waiting at the gate.
        release: set it to let the strategy return its plan.
        cancelled: whether the strategy saw its run cancelled.
        calls: how many times the strategy was called.
    """

    __test__ = False

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = False
        self.calls = 0

    async def __call__(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        """Wait at the gate (polling, so cancellation reaches it on any event loop)."""
        self.calls += 1
        await ctx.emit("progress", message="waiting at the gate")
        self.started.set()
        try:
            # A threading.Event, set from the test's thread: anyio.Event is loop-bound.
            while not self.release.is_set():  # noqa: ASYNC110
                await anyio.sleep(0.005)
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return sample_plan(request)

    async def wait_started(self, timeout: float = 30.0) -> None:
        """Wait until the strategy is at the gate.

        Raises:
            TimeoutError: it did not get there in time.
        """
        if not await anyio.to_thread.run_sync(self.started.wait, timeout):
            raise TimeoutError("the strategy did not start")


async def _five_steps(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    for i in range(5):
        await ctx.emit("progress", message=f"step {i + 1} of 5", stage="planning")
    return sample_plan(request)


def _request() -> TaskPlanRequest:
    return sample_request(planning_strategy="agno")


@pytest.mark.anyio
class ExecutorContract:
    """The behaviour every :class:`~planner.interfaces.Executor` must have.

    Provide a fixture ``executor_factory`` returning a function that builds a new,
    unstarted executor.
    """

    wait_timeout: float = 60.0
    """Seconds a test waits for an execution to end."""

    def make_store(self) -> Store:
        """Return the store the Planners of a test share (default: a memory store)."""
        from planner.backends.stores.memory import MemoryStore

        return MemoryStore()

    @asynccontextmanager
    async def planner(
        self,
        executor_factory: ExecutorFactory,
        strategy: PlanFunction,
        *,
        store: Store | None = None,
        **settings: Any,
    ) -> AsyncIterator[Planner]:
        """Start a Planner with a new executor whose ``agno`` strategy is ``strategy``."""
        async with Planner(
            store or self.make_store(),
            executor_factory(),
            {"agno": FunctionStrategy(strategy)},
            **settings,
        ) as planner:
            yield planner

    async def collect(self, planner: Planner, execution_id: str) -> list[Event]:
        """Return the whole stream of an execution, up to ``done``."""
        with anyio.fail_after(self.wait_timeout):
            return [e async for e in planner.stream(execution_id)]

    # -- the contract -------------------------------------------------------------------

    async def test_submit_returns_before_the_strategy_finishes(
        self, executor_factory: ExecutorFactory
    ) -> None:
        gate = Gate()
        async with self.planner(executor_factory, gate) as planner:
            response = await planner.generate(_request())
            assert response.status == "pending"
            assert response.workflow_id == f"plan-generation-{response.execution_id}"
            await gate.wait_started()
            execution = await planner.get(response.execution_id)
            assert execution.status is ExecutionStatus.RUNNING
            assert execution.executor == planner.executor.name
            gate.release.set()
            plan = await planner.wait(response.execution_id, timeout=self.wait_timeout)
            assert plan.title.startswith("Plan:")

    async def test_events_arrive_in_order_with_one_terminal_event(
        self, executor_factory: ExecutorFactory
    ) -> None:
        async with self.planner(executor_factory, _five_steps) as planner:
            response = await planner.generate(_request())
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert [e.type for e in events] == ["status", "status"] + ["progress"] * 5 + [
                "complete",
                "done",
            ]
            assert [e.data["status"] for e in events[:2]] == ["pending", "running"]
            assert [e.data["message"] for e in events[2:7]] == [
                f"step {i} of 5" for i in range(1, 6)
            ]
            execution = await planner.get(response.execution_id)
            assert execution.status is ExecutionStatus.COMPLETED
            assert execution.attempt == 1
            assert events[-2].data["plan"] == execution.plan_json
            assert events[-1].data["status"] == "completed"

    async def test_cancel_stops_a_running_strategy(self, executor_factory: ExecutorFactory) -> None:
        gate = Gate()
        async with self.planner(executor_factory, gate) as planner:
            response = await planner.generate(_request())
            await gate.wait_started()
            execution = await planner.cancel(response.execution_id, timeout=self.wait_timeout)
            assert execution.status is ExecutionStatus.CANCELLED
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert events[-2].type == "cancelled"
            assert events[-2].data["reason"] == "requested"
            assert gate.cancelled, "the strategy was not stopped"
            with pytest.raises(ExecutionCancelledError):
                await planner.wait(response.execution_id)
            with pytest.raises(ExecutionFinishedError):
                await planner.cancel(response.execution_id)

    async def test_cancel_right_after_submit(self, executor_factory: ExecutorFactory) -> None:
        gate = Gate()
        async with self.planner(executor_factory, gate) as planner:
            response = await planner.generate(_request())
            execution = await planner.cancel(response.execution_id, timeout=self.wait_timeout)
            assert execution.status is ExecutionStatus.CANCELLED
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert events[-2].type == "cancelled"
            assert "complete" not in [e.type for e in events]

    async def test_a_failing_strategy_fails_the_execution(
        self, executor_factory: ExecutorFactory
    ) -> None:
        async def broken(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
            await ctx.emit("progress", message="about to fail")
            raise RuntimeError("the model is on strike")

        async with self.planner(executor_factory, broken) as planner:
            response = await planner.generate(_request())
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert [e.type for e in events] == ["status", "status", "progress", "error", "done"]
            assert events[-2].data["error"] == "RuntimeError"
            assert events[-2].data["message"] == "the model is on strike"
            with pytest.raises(PlanGenerationFailedError) as info:
                await planner.wait(response.execution_id)
            assert info.value.error.type == "RuntimeError"
            execution = await planner.get(response.execution_id)
            assert execution.status is ExecutionStatus.FAILED
            assert execution.plan_json is None

    async def test_a_strategy_that_hangs_times_out(self, executor_factory: ExecutorFactory) -> None:
        async def hang(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async with self.planner(executor_factory, hang, timeout=0.3) as planner:
            response = await planner.generate(_request())
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert events[-2].data["error"] == "timeout"
            assert "0.3 s" in events[-2].data["message"]
            execution = await planner.get(response.execution_id)
            assert execution.status is ExecutionStatus.FAILED

    async def test_resubmitting_runs_the_strategy_once(
        self, executor_factory: ExecutorFactory
    ) -> None:
        gate = Gate()
        async with self.planner(executor_factory, gate) as planner:
            response = await planner.generate(_request(), idempotency_key="once")
            record = await planner.get(response.execution_id)
            assert await planner.executor.submit(record) == record.workflow_id  # while queued
            await gate.wait_started()
            assert await planner.executor.submit(record) == record.workflow_id  # while running
            gate.release.set()
            await planner.wait(response.execution_id, timeout=self.wait_timeout)
            done = await planner.get(response.execution_id)
            assert await planner.executor.submit(done) == record.workflow_id  # after the end
            again = await planner.generate(_request(), idempotency_key="once")
            assert again.execution_id == response.execution_id
            # A later execution on the same executor ends after any stray rerun has begun.
            barrier = await planner.generate(_request())
            await planner.wait(barrier.execution_id, timeout=self.wait_timeout)
            assert gate.calls == 2  # the first execution once, the barrier once
            events = await self.collect(planner, response.execution_id)
            assert_well_formed(events)
            assert [e.type for e in events].count("status") == 2  # pending, running: one attempt
            assert (await planner.get(response.execution_id)).attempt == 1

    async def test_shutdown_with_work_in_flight(self, executor_factory: ExecutorFactory) -> None:
        gate = Gate()
        store = self.make_store()
        async with self.planner(executor_factory, gate, store=store) as planner:
            response = await planner.generate(_request())
            await gate.wait_started()
        # The executor is closed: nothing of this run may still go on here.
        assert gate.cancelled, "the run was not stopped by the shutdown"
        await store.setup()
        execution = await store.get(response.execution_id)
        events = await store.read(response.execution_id)
        assert sum(e.type in TERMINAL_TYPES for e in events) <= 1
        if execution.terminal:  # cancelled by the shutdown
            assert_well_formed(events)
            assert execution.status is ExecutionStatus.CANCELLED
            assert events[-2].data["reason"] == "shutdown"
            return
        # Handed over (a cluster executor): another executor finishes it, once.
        gate.release.set()
        async with self.planner(executor_factory, gate, store=store) as other:
            await other.wait(response.execution_id, timeout=self.wait_timeout)
            events = await self.collect(other, response.execution_id)
            assert_well_formed(events)
            assert events[-2].type == "complete"
