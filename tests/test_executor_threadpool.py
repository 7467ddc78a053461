"""The thread-pool executor: worker threads with their own event loops, bounded concurrency."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta
from typing import Any, Literal

import anyio
import anyio.to_thread
import pytest
from pg_support import PG_URL, drop_schema

from planner import ExecutionStatus, Planner, RunContext, TaskPlan, TaskPlanRequest
from planner.backends.executors.threadpool import ThreadPoolExecutor
from planner.backends.stores.memory import MemoryStore
from planner.execution import utcnow
from planner.interfaces import NewEvent
from planner.plugins import default_registry
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts import make_execution
from planner.testing.contracts_executor import Gate, assert_well_formed


def request(**fields: Any) -> TaskPlanRequest:
    return sample_request(**{"planning_strategy": "agno", **fields})


class Blocking:
    """A strategy that blocks its thread (a sync call inside ``async def``) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started = threading.Semaphore(0)
        self.running = 0
        self.most = 0
        self.threads: set[int] = set()

    async def __call__(self, req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        self.started.release()
        self.release.wait(30)  # blocks this worker thread's event loop on purpose
        with self.lock:
            self.running -= 1
        return sample_plan(req)

    async def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert await anyio.to_thread.run_sync(self.started.acquire, True, 30)


def test_registered_by_name() -> None:
    names = default_registry().names("executor")
    assert {"inprocess", "threadpool", "temporal"} <= set(names)


def test_url_and_keyword_options() -> None:
    planner = Planner(executor="threadpool?max_workers=3&shutdown=cancel&shutdown_timeout=1.5")
    executor = planner.executor
    assert isinstance(executor, ThreadPoolExecutor)
    assert (executor.max_workers, executor.shutdown, executor.shutdown_timeout) == (
        3,
        "cancel",
        1.5,
    )
    assert ThreadPoolExecutor("threadpool?max_workers=3", max_workers=5).max_workers == 5
    assert ThreadPoolExecutor().shutdown == "wait"
    with pytest.raises(ValueError, match="unknown threadpool option 'workers'"):
        ThreadPoolExecutor("threadpool?workers=3")
    with pytest.raises(ValueError, match="bad value for threadpool option max_workers"):
        ThreadPoolExecutor("threadpool?max_workers=many")
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        ThreadPoolExecutor(max_workers=0)
    with pytest.raises(ValueError, match="shutdown must be 'wait' or 'cancel'"):
        ThreadPoolExecutor(shutdown="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="store_access"):
        ThreadPoolExecutor(store_access="telepathy")  # type: ignore[arg-type]


async def test_runs_happen_on_worker_threads_with_their_own_loops() -> None:
    seen: list[tuple[int, int]] = []

    async def where(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        seen.append((threading.get_ident(), id(asyncio.get_running_loop())))
        await ctx.emit("progress", message="on a worker thread")
        return sample_plan(req)

    async with Planner(
        executor=ThreadPoolExecutor(max_workers=2), strategies={"agno": FunctionStrategy(where)}
    ) as planner:
        response = await planner.generate(request())
        await planner.wait(response.execution_id, timeout=30)
    ((thread, loop),) = seen
    assert thread != threading.get_ident()
    assert loop != id(asyncio.get_running_loop())


async def test_a_blocking_strategy_leaves_the_callers_loop_free() -> None:
    blocking = Blocking()
    async with Planner(
        executor=ThreadPoolExecutor(max_workers=1), strategies={"agno": FunctionStrategy(blocking)}
    ) as planner:
        response = await planner.generate(request())
        await blocking.wait_started(1)
        # The strategy's thread is blocked; this loop still serves the store and streams.
        events = await planner.events(response.execution_id)
        assert [e.type for e in events] == ["status", "status"]
        assert (await planner.get(response.execution_id)).status is ExecutionStatus.RUNNING
        blocking.release.set()
        await planner.wait(response.execution_id, timeout=30)


async def test_max_workers_bounds_the_runs_in_flight() -> None:
    blocking = Blocking()
    async with Planner(
        executor=ThreadPoolExecutor(max_workers=2), strategies={"agno": FunctionStrategy(blocking)}
    ) as planner:
        ids = [(await planner.generate(request())).execution_id for _ in range(4)]
        await blocking.wait_started(2)
        statuses = sorted([(await planner.get(i)).status.value for i in ids])
        assert statuses == ["pending", "pending", "running", "running"]
        blocking.release.set()
        for i in ids:
            await planner.wait(i, timeout=30)
    assert blocking.most == 2
    assert len(blocking.threads) == 2


async def test_shutdown_cancel_stops_runs_at_once_and_leaves_queued_ones_for_recovery() -> None:
    gate = Gate()
    store = MemoryStore()
    executor = ThreadPoolExecutor(max_workers=1, shutdown="cancel", shutdown_timeout=30)
    async with Planner(store, executor, {"agno": FunctionStrategy(gate)}, lease_ttl=0.2) as planner:
        running = await planner.generate(request())
        queued = await planner.generate(request())
        await gate.wait_started()
    assert gate.cancelled
    cancelled = await store.read(running.execution_id)
    assert_well_formed(cancelled)
    assert cancelled[-2].data["reason"] == "shutdown"
    assert (await store.get(queued.execution_id)).status is ExecutionStatus.PENDING
    await anyio.sleep(0.3)  # its lease, given at submit, runs out
    gate.release.set()
    async with Planner(store, "threadpool", {"agno": FunctionStrategy(gate)}) as planner:
        await planner.wait(queued.execution_id, timeout=30)
        assert_well_formed(await planner.events(queued.execution_id))


async def test_shutdown_wait_lets_runs_finish_within_the_grace_period() -> None:
    async def brief(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await anyio.sleep(0.2)
        return sample_plan(req)

    store = MemoryStore()
    executor = ThreadPoolExecutor(max_workers=2, shutdown="wait", shutdown_timeout=30)
    async with Planner(store, executor, {"agno": FunctionStrategy(brief)}) as planner:
        ids = [(await planner.generate(request())).execution_id for _ in range(3)]
    for i in ids:
        assert (await store.get(i)).status is ExecutionStatus.COMPLETED
    with pytest.raises(RuntimeError, match="shutting down"):
        await executor.submit(await store.get(ids[0]))


async def test_a_lost_run_is_recovered_on_start() -> None:
    store = MemoryStore()
    lost = make_execution(
        executor="threadpool",
        lease_owner="threadpool:dead-host:1:abc",
        lease_expires_at=utcnow() - timedelta(seconds=1),
    )
    await store.create(lost, [NewEvent("status", {"status": "pending"})])
    await store.claim(lost.id, "threadpool:dead-host:1:abc", 0.01)
    await anyio.sleep(0.02)

    async def finish(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        return sample_plan(req)

    async with Planner(store, "threadpool", {"agno": FunctionStrategy(finish)}) as planner:
        await planner.wait(lost.id, timeout=30)
        execution = await planner.get(lost.id)
        assert execution.attempt == 2
        events = await planner.events(lost.id)
        assert_well_formed(events)
        assert [e.data.get("stage") for e in events].count("recovered") == 1


@pytest.mark.parametrize("store_access", ["loop", "auto"])
async def test_a_sqlite_store_through_the_callers_loop_or_directly(
    tmp_path: Any, store_access: Literal["loop", "auto"]
) -> None:
    """``loop`` hops to the caller's loop; ``auto`` calls the thread-safe SQLite store directly."""

    async def steps(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        for i in range(3):
            await ctx.emit("progress", message=f"step {i}")
        return sample_plan(req)

    executor = ThreadPoolExecutor(max_workers=2, store_access=store_access)
    async with Planner(
        f"sqlite:///{tmp_path / 'plans.db'}", executor, {"agno": FunctionStrategy(steps)}
    ) as planner:
        ids = [(await planner.generate(request())).execution_id for _ in range(4)]
        for i in ids:
            await planner.wait(i, timeout=30)
            events = await planner.events(i)
            assert_well_formed(events)
            assert [e.type for e in events].count("progress") == 3


async def test_a_postgres_store_bound_to_the_callers_loop() -> None:
    """psycopg's async pool belongs to the loop that opened it: runs reach it through that loop."""
    schema = f"test_threadpool_{uuid.uuid4().hex[:10]}"

    async def steps(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await ctx.emit("progress", message="from a worker thread")
        return sample_plan(req)

    executor = ThreadPoolExecutor(max_workers=3)
    try:
        async with Planner(
            f"{PG_URL}?schema={schema}", executor, {"agno": FunctionStrategy(steps)}
        ) as planner:
            ids = [(await planner.generate(request())).execution_id for _ in range(6)]
            for i in ids:
                await planner.wait(i, timeout=30)
                events = await planner.events(i)
                assert_well_formed(events)
                assert "from a worker thread" in [e.data.get("message") for e in events]
    finally:
        drop_schema(schema)
