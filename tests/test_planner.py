"""The Planner's behaviour on the memory store and the in-process executor."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from planner import (
    Event,
    Execution,
    ExecutionCancelledError,
    ExecutionFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    ExecutionStatus,
    InvalidRequestError,
    PlanGenerationFailedError,
    Planner,
    RunContext,
    SubmitError,
    TaskPlan,
    TaskPlanRequest,
    UnknownPluginError,
)
from planner.backends.executors.inprocess import InProcessExecutor
from planner.backends.stores.memory import MemoryStore
from planner.execution import utcnow
from planner.interfaces import NewEvent
from planner.runtime import Runtime
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts import make_execution

TERMINAL = {"complete", "error", "cancelled"}


def request(**fields: Any) -> TaskPlanRequest:
    return sample_request(**{"planning_strategy": "agno", **fields})


async def five_steps(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    for i in range(5):
        await ctx.emit("progress", message=f"step {i + 1} of 5", stage="planning")
    return sample_plan(req)


@pytest.fixture
async def planner() -> AsyncIterator[Planner]:
    async with Planner("memory://", "inprocess", {"agno": FunctionStrategy(five_steps)}) as p:
        yield p


async def collect(planner: Planner, execution_id: str, after: int = 0) -> list[Event]:
    with anyio.fail_after(10):
        return [e async for e in planner.stream(execution_id, after=after)]


def assert_well_formed(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "done"
    assert sum(e.type in TERMINAL for e in events) == 1
    assert events[-2].type in TERMINAL


class Gate:
    """A strategy that waits until released, so tests can look at a run in flight."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = False
        self.seen: list[TaskPlanRequest] = []

    async def __call__(self, req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        self.seen.append(req)
        await ctx.emit("progress", message="waiting at the gate")
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        return sample_plan(req)


async def test_the_issue_example_end_to_end(planner: Planner) -> None:
    response = await planner.generate(request(description="Rotate the DB credentials"))
    assert response.status == "pending"
    assert response.workflow_id == f"plan-generation-{response.execution_id}"
    assert response.message == (
        "Plan generation submitted. Use /api/v1/executions/"
        f"{response.execution_id}/stream to track progress."
    )
    events = await collect(planner, response.execution_id)
    assert_well_formed(events)
    assert [e.type for e in events] == ["status", "status"] + ["progress"] * 5 + [
        "complete",
        "done",
    ]
    assert events[0].data["status"] == "pending" and events[1].data["status"] == "running"
    plan = await planner.wait(response.execution_id)
    assert plan.title == "Plan: Rotate the DB credentials"
    assert events[-2].data["plan"] == plan.model_dump(mode="json")

    execution = await planner.get(response.execution_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.plan_json == plan.model_dump(mode="json")
    assert execution.attempt == 1
    assert execution.started_at is not None and execution.completed_at is not None
    assert execution.created_at <= execution.started_at <= execution.completed_at
    assert execution.metadata.planning_strategy == "agno"
    assert execution.metadata.total_tasks == 3
    assert execution.lease_owner is None

    recent = await planner.list(status="completed", limit=50)
    assert [e.id for e in recent] == [response.execution_id]

    again = await planner.refine(response.execution_id, "Add a rollback task")
    child = await planner.get(again.execution_id)
    assert child.parent_execution_id == response.execution_id
    assert child.request.previous_plan == execution.plan_json
    assert child.request.refinement_feedback == "Add a rollback task"
    assert child.request.iteration == 2
    assert "Add a rollback task" in (child.request.conversation_context or "")
    await planner.wait(again.execution_id)
    with pytest.raises(ExecutionFinishedError):
        await planner.cancel(again.execution_id)


async def test_generate_returns_before_the_strategy_finishes() -> None:
    gate = Gate()
    async with Planner(strategies={"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        assert response.status == "pending"
        with anyio.fail_after(5):
            await gate.started.wait()
        assert (await planner.get(response.execution_id)).status is ExecutionStatus.RUNNING
        gate.release.set()
        await planner.wait(response.execution_id, timeout=5)


async def test_stream_replays_then_tails_and_resumes_after_a_seq() -> None:
    gate = Gate()
    async with Planner(strategies={"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        with anyio.fail_after(5):
            await gate.started.wait()
        seen: list[Event] = []

        async def consume() -> None:
            async for event in planner.stream(response.execution_id):
                seen.append(event)  # noqa: PERF401 (read while the stream is live)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.05)
                assert [e.type for e in seen] == ["status", "status", "progress"]  # replayed
                gate.release.set()  # now live
        assert_well_formed(seen)
        resumed = await collect(planner, response.execution_id, after=2)
        assert resumed == seen[2:]
        assert await collect(planner, response.execution_id, after=seen[-1].seq) == []


async def test_failure_ends_failed_with_an_error_event() -> None:
    async def broken(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await ctx.emit("progress", message="about to fail")
        raise RuntimeError("the model is on strike")

    async with Planner(strategies={"agno": FunctionStrategy(broken)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "error"
        assert events[-2].data["error"] == "RuntimeError"
        assert events[-2].data["message"] == "the model is on strike"
        with pytest.raises(PlanGenerationFailedError) as info:
            await planner.wait(response.execution_id)
        assert info.value.error.type == "RuntimeError"
        execution = await planner.get(response.execution_id)
        assert execution.status is ExecutionStatus.FAILED
        assert execution.error is not None and "strike" in execution.error.message
        assert execution.plan_json is None


@pytest.mark.parametrize(
    ("result", "error_type"),
    [
        ("not a plan", "StrategyError"),
        (None, "StrategyError"),
        ({"title": "only a title"}, "invalid_plan"),
    ],
)
async def test_garbage_from_the_strategy_fails_clearly(result: Any, error_type: str) -> None:
    async def garbage(req: TaskPlanRequest, ctx: RunContext) -> Any:
        return result

    async with Planner(strategies={"agno": FunctionStrategy(garbage)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["error"] == error_type
        if error_type == "invalid_plan":
            locs = [tuple(d["loc"]) for d in events[-2].data["details"]]
            assert ("summary",) in locs and ("team_breakdown",) in locs


async def test_a_plan_that_names_unknown_ids_fails_with_the_violations() -> None:
    async def hallucinate(req: TaskPlanRequest, ctx: RunContext) -> dict[str, Any]:
        data = sample_plan(req).model_dump()
        data["recommended_execution"]["entity_id"] = "agent-that-does-not-exist"
        return data

    async with Planner(strategies={"agno": FunctionStrategy(hallucinate)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        error = events[-2].data
        assert error["error"] == "plan_validation"
        assert error["details"][0]["code"] == "unknown_agent"
        assert error["details"][0]["value"] == "agent-that-does-not-exist"


async def test_a_strategy_that_hangs_times_out() -> None:
    async def hang(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with Planner(strategies={"agno": FunctionStrategy(hang)}, timeout=0.2) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["error"] == "timeout"
        assert "0.2 s" in events[-2].data["message"]
        assert (await planner.get(response.execution_id)).status is ExecutionStatus.FAILED


async def test_reserved_event_types_are_refused() -> None:
    async def cheat(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await ctx.emit("complete", plan={})
        raise AssertionError("unreachable")

    async with Planner(strategies={"agno": FunctionStrategy(cheat)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["error"] == "ValueError"
        assert "runner writes them" in events[-2].data["message"]


async def test_a_sync_strategy_runs_in_a_thread_and_reports_progress() -> None:
    threads: list[int] = []

    def blocking(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        threads.append(threading.get_ident())
        ctx.emit_sync("progress", message="from a worker thread")
        return sample_plan(req)

    async with Planner(strategies={"agno": FunctionStrategy(blocking)}) as planner:
        response = await planner.generate(request())
        await planner.wait(response.execution_id, timeout=10)
        events = await collect(planner, response.execution_id)
        assert "from a worker thread" in [e.data.get("message") for e in events]
        assert threads and threads[0] != threading.get_ident()


async def test_cancel_a_running_execution(planner: Planner) -> None:
    gate = Gate()
    async with Planner(strategies={"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        with anyio.fail_after(5):
            await gate.started.wait()
        execution = await planner.cancel(response.execution_id)
        assert execution.status is ExecutionStatus.CANCELLED
        assert gate.cancelled
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "cancelled"
        assert events[-2].data["reason"] == "requested"
        with pytest.raises(ExecutionCancelledError):
            await planner.wait(response.execution_id)
        with pytest.raises(ExecutionFinishedError):
            await planner.cancel(response.execution_id)


async def test_cancel_before_the_run_starts(planner: Planner) -> None:
    response = await planner.generate(request())
    execution = await planner.cancel(response.execution_id)  # the run task has not started yet
    assert execution.status is ExecutionStatus.CANCELLED
    events = await collect(planner, response.execution_id)
    assert_well_formed(events)
    assert [e.type for e in events] == ["status", "cancelled", "done"]
    await anyio.sleep(0.05)
    assert (await planner.get(response.execution_id)).status is ExecutionStatus.CANCELLED


async def test_cancel_from_another_planner_reaches_the_run_through_the_store() -> None:
    store = MemoryStore()
    gate = Gate()
    owner = Planner(store, strategies={"agno": FunctionStrategy(gate)}, lease_ttl=0.3)
    other = Planner(store, strategies={"agno": FunctionStrategy(five_steps)})
    async with owner, other:
        response = await owner.generate(request())
        with anyio.fail_after(5):
            await gate.started.wait()
        execution = await other.cancel(response.execution_id, timeout=5)
        assert execution.status is ExecutionStatus.CANCELLED
        assert gate.cancelled  # the owner's run stopped, not just the record
        events = await collect(other, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["message"] == "Plan generation cancelled on request"


async def test_unknown_ids_raise_not_found(planner: Planner) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ExecutionNotFoundError):
        await planner.get(missing)
    with pytest.raises(ExecutionNotFoundError):
        await planner.wait(missing)
    with pytest.raises(ExecutionNotFoundError):
        await planner.cancel(missing)
    with pytest.raises(ExecutionNotFoundError):
        await collect(planner, missing)
    with pytest.raises(ExecutionNotFoundError):
        await planner.refine(missing, "more")


async def test_invalid_requests_write_nothing(planner: Planner) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await planner.generate({"description": 42, "priority": "urgent"})
    assert info.value.errors == [
        {"loc": ["description"], "msg": "Input should be a valid string", "type": "string_type"},
        {
            "loc": ["priority"],
            "msg": "Input should be 'low', 'medium', 'high' or 'critical'",
            "type": "literal_error",
        },
    ]
    assert await planner.list() == []


async def test_an_unknown_default_strategy_writes_nothing() -> None:
    async with Planner(
        strategies={"mine": FunctionStrategy(five_steps)}, default_strategy="mien"
    ) as planner:
        with pytest.raises(UnknownPluginError, match="Did you mean 'mine'"):
            await planner.generate({"description": "x", "planning_strategy": None})
        assert await planner.list() == []


async def test_planner_local_strategy_names_are_accepted_from_mappings() -> None:
    async with Planner(strategies={"mine": FunctionStrategy(five_steps)}) as planner:
        data = request().model_dump()
        data["planning_strategy"] = "mine"
        response = await planner.generate(data)
        await planner.wait(response.execution_id, timeout=5)
        assert (await planner.get(response.execution_id)).metadata.planning_strategy == "mine"


async def test_null_strategy_uses_the_default() -> None:
    async with Planner(
        strategies={"mine": FunctionStrategy(five_steps)}, default_strategy="mine"
    ) as planner:
        response = await planner.generate(request(planning_strategy=None))
        await planner.wait(response.execution_id, timeout=5)


async def test_idempotency_key_returns_the_same_execution() -> None:
    calls: list[str] = []

    async def counted(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        calls.append(ctx.execution_id)
        return sample_plan(req)

    async with Planner(strategies={"agno": FunctionStrategy(counted)}) as planner:
        first = await planner.generate(request(), idempotency_key="rotate-2026-12")
        await planner.wait(first.execution_id, timeout=5)
        second = await planner.generate(request(), idempotency_key="rotate-2026-12")
        assert second.execution_id == first.execution_id
        assert second.status == "completed"
        assert calls == [first.execution_id]
        other = await planner.generate(request(), idempotency_key="rotate-2026-12",
                                       organization_id="another-tenant")  # fmt: skip
        assert other.execution_id != first.execution_id


async def test_refine_needs_a_completed_parent_and_feedback() -> None:
    gate = Gate()
    async with Planner(strategies={"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        with anyio.fail_after(5):
            await gate.started.wait()
        with pytest.raises(ExecutionStateError, match="no plan to refine"):
            await planner.refine(response.execution_id, "more")
        gate.release.set()
        await planner.wait(response.execution_id, timeout=5)
        with pytest.raises(InvalidRequestError):
            await planner.refine(response.execution_id, "   ")
        child = await planner.refine(response.execution_id, "Use the staging queue")
        gate.release.set()
        await planner.wait(child.execution_id, timeout=5)
        assert gate.seen[-1].refinement_feedback == "Use the staging queue"
        assert gate.seen[-1].previous_plan is not None


async def test_list_pages_newest_first(planner: Planner) -> None:
    ids = []
    for _ in range(5):
        ids.append((await planner.generate(request())).execution_id)
        await anyio.sleep(0.002)
    for i in ids:
        await planner.wait(i, timeout=5)
    page1 = await planner.list(limit=2)
    page2 = await planner.list(limit=2, before=page1[-1].id)
    page3 = await planner.list(limit=2, before=page2[-1].id)
    assert [e.id for e in page1 + page2 + page3] == ids[::-1]
    with pytest.raises(ValueError):
        await planner.list(status="bogus")
    with pytest.raises(ValueError):
        await planner.list(limit=0)


class RefusingExecutor(InProcessExecutor):
    async def submit(self, execution: Execution) -> str:
        raise ConnectionError("the cluster is unreachable")


async def test_submit_failure_marks_the_record_failed_and_raises() -> None:
    async with Planner(
        executor=RefusingExecutor(), strategies={"agno": FunctionStrategy(five_steps)}
    ) as planner:
        with pytest.raises(SubmitError, match="cluster is unreachable") as info:
            await planner.generate(request())
        execution = await planner.get(info.value.execution_id)
        assert execution.status is ExecutionStatus.FAILED
        assert execution.error is not None and execution.error.type == "submit_failed"
        events = await collect(planner, execution.id)
        assert_well_formed(events)
        assert events[-2].type == "error"


async def test_a_lost_run_is_recovered_on_start_as_a_new_attempt() -> None:
    store = MemoryStore()
    lost = make_execution(
        lease_owner="inprocess:dead-host:1:abc", lease_expires_at=utcnow() - timedelta(seconds=1)
    )
    await store.create(lost, [NewEvent("status", {"status": "pending"})])
    await store.claim(lost.id, "inprocess:dead-host:1:abc", 0.01)
    await store.append(lost.id, [NewEvent("progress", {"message": "half way, then killed"})])
    await anyio.sleep(0.02)
    async with Planner(store, strategies={"agno": FunctionStrategy(five_steps)}) as planner:
        plan = await planner.wait(lost.id, timeout=10)
        assert plan.title.startswith("Plan:")
        execution = await planner.get(lost.id)
        assert execution.attempt == 2
        events = await collect(planner, lost.id)
        assert_well_formed(events)
        restart = [e for e in events if e.data.get("stage") == "recovered"]
        assert len(restart) == 1 and "attempt 2" in restart[0].data["message"]


async def test_shutdown_cancels_runs_that_outlast_the_grace_period() -> None:
    gate = Gate()
    store = MemoryStore()
    planner = Planner(
        store,
        InProcessExecutor(shutdown_timeout=0.1),
        strategies={"agno": FunctionStrategy(gate)},
    )
    async with planner:
        response = await planner.generate(request())
        with anyio.fail_after(5):
            await gate.started.wait()
    execution = await store.get(response.execution_id)
    assert execution.status is ExecutionStatus.CANCELLED
    events = await store.read(response.execution_id)
    assert_well_formed(events)
    assert events[-2].data["reason"] == "shutdown"


async def test_start_and_close_from_different_tasks_like_a_notebook() -> None:
    planner = Planner(strategies={"agno": FunctionStrategy(five_steps)})
    responses = []

    async def cell(code: Any) -> None:  # each notebook cell runs as its own task
        async with anyio.create_task_group() as tg:
            tg.start_soon(code)

    await cell(planner.start)

    async def submit() -> None:
        responses.append(await planner.generate(request()))

    await cell(submit)
    await planner.wait(responses[0].execution_id, timeout=5)
    await cell(planner.close)


async def test_a_planner_that_is_not_started_says_so() -> None:
    planner = Planner(strategies={"agno": FunctionStrategy(five_steps)})
    with pytest.raises(RuntimeError, match="not started"):
        await planner.generate(request())


def test_unknown_store_and_executor_names_suggest_the_right_one() -> None:
    with pytest.raises(UnknownPluginError, match="Did you mean 'memory'"):
        Planner("memroy://")
    with pytest.raises(UnknownPluginError, match="Did you mean 'inprocess'"):
        Planner(executor="in-process")


async def test_runtime_does_not_run_what_it_cannot_claim() -> None:
    store = MemoryStore()
    execution = make_execution()
    await store.create(execution)
    await store.update(execution.id, status=ExecutionStatus.CANCELLED)
    runtime = Runtime(store, lambda name: FunctionStrategy(five_steps), Planner().settings)
    assert await runtime.run(execution.id, owner="me") is None
