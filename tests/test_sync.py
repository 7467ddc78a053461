"""SyncPlanner: the blocking facade works with and without a running event loop."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest

import planner
from planner import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    InvalidRequestError,
    Planner,
    TaskPlan,
    TaskPlanRequest,
    UnknownPluginError,
)
from planner.context import RunContext
from planner.sync import SyncPlanner
from planner.testing import FunctionStrategy, sample_plan, sample_request


async def quick(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message="Looking at the inventory")
    return sample_plan(request, tasks=4 if request.refinement_feedback else 3)


started = threading.Event()


async def forever(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message="Thinking for a long time")
    started.set()
    await anyio.sleep_forever()
    raise AssertionError("never")


def strategies() -> dict[str, FunctionStrategy]:
    return {"agno": FunctionStrategy(quick), "slow": FunctionStrategy(forever)}


def request(strategy: str = "agno") -> TaskPlanRequest:
    return sample_request(planning_strategy=strategy)


def the_whole_flow() -> None:
    with SyncPlanner(strategies=strategies()) as p:
        response = p.generate(request())
        kinds = [event.type for event in p.stream(response.execution_id)]
        assert kinds[0] == "status" and "progress" in kinds and kinds[-2:] == ["complete", "done"]
        plan = p.wait(response.execution_id, timeout=30)
        assert plan.total_tasks == 3
        assert p.get(response.execution_id).status == "completed"
        assert [e.type for e in p.events(response.execution_id)] == kinds
        assert [e.id for e in p.list(status="completed")] == [response.execution_id]

        again = p.refine(response.execution_id, "Add a rollback step")
        refined = p.wait(again.execution_id, timeout=30)
        assert [t.id for t in planner.diff(plan, refined).added] == [4]
        assert p.get(again.execution_id).parent_execution_id == response.execution_id
        assert len(p.list(limit=1)) == 1
    assert p.closed


def test_the_whole_flow_without_an_event_loop() -> None:
    the_whole_flow()


async def test_the_whole_flow_inside_a_running_event_loop() -> None:
    # As in a Jupyter cell: this coroutine runs on a loop, and blocking calls still work.
    the_whole_flow()


def test_generations_run_between_calls_and_cancel_stops_one() -> None:
    started.clear()
    with SyncPlanner(strategies=strategies()) as p:
        response = p.generate(request("slow"))
        assert started.wait(30)  # the background loop ran it while this thread did nothing
        final = p.cancel(response.execution_id, timeout=10)
        assert final.status == "cancelled"
        with pytest.raises(planner.ExecutionCancelledError):
            p.wait(response.execution_id)
        with pytest.raises(ExecutionFinishedError):
            p.cancel(response.execution_id)


def test_leaving_a_stream_early_closes_it() -> None:
    with SyncPlanner(strategies=strategies()) as p:
        response = p.generate(request())
        stream = p.stream(response.execution_id)
        first = next(stream)
        assert first.seq == 1
        stream.close()  # runs the async generator's cleanup on the loop
        rest = list(p.stream(response.execution_id, after=first.seq))
        assert rest[0].seq == 2 and rest[-1].type == "done"


def test_errors_keep_their_types() -> None:
    with SyncPlanner(strategies=strategies()) as p:
        with pytest.raises(InvalidRequestError) as caught:
            p.generate({"description": 42})
        assert caught.value.errors[0]["loc"] == ["description"]
        with pytest.raises(ExecutionNotFoundError):
            p.get("nope")
        with pytest.raises(ExecutionNotFoundError):
            list(p.stream("nope"))
        assert p.validate({"description": "x"}).description == "x"


def test_closed_is_closed_and_close_is_idempotent() -> None:
    p = SyncPlanner(strategies=strategies())
    p.close()
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.get("anything")


def test_a_planner_that_cannot_be_built_leaves_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(UnknownPluginError):
        SyncPlanner(store="nosuch://")
    assert threading.active_count() == before


def test_an_existing_planner_can_be_wrapped_but_not_with_other_arguments() -> None:
    inner = Planner(strategies=strategies())
    with SyncPlanner(planner=inner) as p:
        assert p.planner is inner
        response = p.generate(request())
        assert p.wait(response.execution_id, timeout=30).total_tasks == 3
    with pytest.raises(ValueError, match="not both"):
        SyncPlanner(store="memory://x", planner=Planner())


def test_display_prints_progress_lines() -> None:
    out = io.StringIO()
    with SyncPlanner(strategies=strategies()) as p:
        response = p.generate(request())
        p.display(response.execution_id, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["1", "status"]
    assert lines[-2].split()[1] == "done"
    assert lines[-1].startswith(f"execution {response.execution_id}: completed: ")


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "planner-sync-loop"]


def test_a_dropped_sync_planner_stops_its_loop() -> None:
    before = loop_threads()
    p = SyncPlanner(strategies=strategies())
    [thread] = [t for t in loop_threads() if t not in before]
    assert thread.daemon
    response = p.generate(request())
    p.wait(response.execution_id, timeout=30)
    del p
    gc.collect()
    assert not thread.is_alive()


def test_a_forgotten_close_does_not_keep_the_interpreter_from_exiting(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'plans.db'}"
    code = textwrap.dedent(
        f"""
        from planner.sync import SyncPlanner
        from planner.testing import FunctionStrategy, sample_plan, sample_request

        mine = FunctionStrategy(lambda r, c: sample_plan(r))
        p = SyncPlanner({store!r}, strategies={{"agno": mine}})
        response = p.generate(sample_request(planning_strategy="agno"))
        p.wait(response.execution_id, timeout=30)
        print(response.execution_id)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    execution_id = proc.stdout.strip()
    # The run finished and was stored: another process reads it.
    with SyncPlanner(store) as p:
        assert p.get(execution_id).status == "completed"
