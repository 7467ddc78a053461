"""The PostgreSQL store against the real server on 127.0.0.1:5432, one schema per test."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import anyio
import psycopg
import pytest
from pg_support import (
    PG_URL,
    LostReplyProxy,
    ThrowawayCluster,
    drop_schema,
    event_lines,
    request_for_tests,
)

from planner.backends.stores.postgres import SCHEMA_VERSION, PostgresStore, migrate, schema_version
from planner.context import RunContext
from planner.errors import ExecutionNotFoundError, SchemaVersionError
from planner.events import Event
from planner.execution import ExecutionStatus, utcnow
from planner.interfaces import NewEvent
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.planner import Planner
from planner.plugins import default_registry
from planner.testing import FunctionStrategy, sample_plan
from planner.testing.contracts import StoreContract, make_execution

ROOT = Path(__file__).parent.parent


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield schema
    finally:
        drop_schema(schema)


@pytest.fixture
async def pg_store(pg_schema: str) -> AsyncIterator[PostgresStore]:
    """A set-up PostgresStore in its own schema."""
    async with PostgresStore(PG_URL, schema=pg_schema, pool_max_size=5) as store:
        yield store


class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def store(self, pg_schema: str) -> AsyncIterator[PostgresStore]:
        async with PostgresStore(PG_URL, schema=pg_schema, pool_max_size=5) as store:
            yield store

    @pytest.fixture
    async def peer_store(self, store: PostgresStore) -> AsyncIterator[PostgresStore]:
        async with PostgresStore(PG_URL, schema=store.schema, pool_max_size=5) as peer:
            yield peer

    roundtrip_examples = 50


def assert_well_formed(events: Sequence[Event]) -> None:
    """Gap-free from 1, exactly one terminal event, ``done`` last."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.terminal for e in events) == 1
    assert events[-1].type == "done"
    assert events[-2].terminal


async def zero_latency(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    return sample_plan(request)


# -- configuration ----------------------------------------------------------------


def test_url_options_are_read_and_the_rest_goes_to_libpq() -> None:
    store = PostgresStore(
        "postgresql://u@h:5/db?schema=s1&prefix=p_&pool_min_size=2&pool_max_size=7"
        "&verify_only=true&poll_interval=0.25&retry_timeout=5&application_name=x"
    )
    assert (store.schema, store.prefix) == ("s1", "p_")
    assert (store.pool_min_size, store.pool_max_size) == (2, 7)
    assert store.verify_only and store.poll_interval == 0.25 and store.retry_timeout == 5
    assert store.conninfo == "postgresql://u@h:5/db?application_name=x"
    override = PostgresStore("postgres://h/db?schema=s1", schema="s2", pool_max_size=3)
    assert override.schema == "s2" and override.pool_max_size == 3
    assert not override.verify_only
    assert PostgresStore("postgresql://h/db?migrate=false").verify_only
    assert PostgresStore("postgresql://h/db?migrate=false", migrate=True).verify_only is False


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite:///x.db", "postgresql://"),
        ("postgresql://h/db?schema=bad-name", "schema"),
        ("postgresql://h/db?prefix=a;drop", "prefix"),
        ("postgresql://h/db?pool_max_size=lots", "pool_max_size|invalid literal"),
        ("postgresql://h/db?pool_min_size=5&pool_max_size=2", "pool size"),
        ("postgresql://h/db?verify_only=maybe", "boolean"),
        ("postgresql://h/db?verify_only=1&migrate=1", "contradict"),
        ("postgresql://h/db?poll_interval=0", "poll_interval"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PostgresStore(url)


def test_the_registry_builds_it_by_url_and_alias() -> None:
    registry = default_registry()
    for scheme in ("postgresql", "postgres"):
        store = registry.create("store", f"{scheme}://127.0.0.1/test?schema=abc", prefix="x_")
        assert isinstance(store, PostgresStore)
        assert (store.schema, store.prefix) == ("abc", "x_")


async def test_operations_before_setup_say_so() -> None:
    with pytest.raises(RuntimeError, match="not set up"):
        await PostgresStore(PG_URL).get("x")


async def test_prefixes_keep_two_stores_apart_in_one_schema(pg_schema: str) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, prefix="a_", pool_max_size=2) as a,
        PostgresStore(PG_URL, schema=pg_schema, prefix="b_", pool_max_size=2) as b,
    ):
        execution = make_execution()
        await a.create(execution)
        assert [e.id for e in await a.list()] == [execution.id]
        assert await b.list() == []
        with pytest.raises(ExecutionNotFoundError):
            await b.get(execution.id)
    with psycopg.connect(PG_URL) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [pg_schema],
            )
        }
    assert tables == {
        f"{p}{t}" for p in ("a_", "b_") for t in ("executions", "events", "schema_version")
    }


# -- migrations -------------------------------------------------------------------


async def test_migrations_run_inside_the_callers_transaction(pg_schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_URL) as conn:
        assert not conn.autocommit
        assert await migrate(conn, schema=pg_schema) == 0
        assert await schema_version(conn, schema=pg_schema) == SCHEMA_VERSION
        await conn.rollback()  # the caller changes its mind: nothing stays
        assert await schema_version(conn, schema=pg_schema) == 0

        await conn.execute("CREATE TABLE public.x_unrelated_probe (n int)")  # the caller's work
        await migrate(conn, schema=pg_schema)
        await conn.execute("DROP TABLE public.x_unrelated_probe")
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        assert await schema_version(conn, schema=pg_schema) == SCHEMA_VERSION
        assert await migrate(conn, schema=pg_schema) == SCHEMA_VERSION  # a no-op now
    async with PostgresStore(PG_URL, schema=pg_schema, verify_only=True) as store:
        execution = make_execution()
        await store.create(execution)
        assert await store.get(execution.id) == execution


async def test_verify_only_refuses_a_missing_or_outdated_schema(pg_schema: str) -> None:
    store = PostgresStore(PG_URL, schema=pg_schema, verify_only=True)
    with pytest.raises(SchemaVersionError) as caught:
        await store.setup()
    assert (caught.value.found, caught.value.expected) == (0, SCHEMA_VERSION)
    assert "run its migrations" in str(caught.value)

    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await migrate(conn, schema=pg_schema)
        await conn.execute(
            f'DELETE FROM "{pg_schema}".planner_schema_version WHERE version = %s'.encode(),
            [SCHEMA_VERSION],
        )
    with pytest.raises(SchemaVersionError) as caught:
        await PostgresStore(PG_URL, schema=pg_schema, verify_only=True).setup()
    assert caught.value.found == SCHEMA_VERSION - 1


async def test_a_schema_newer_than_the_code_is_refused(pg_schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await migrate(conn, schema=pg_schema)
        await conn.execute(
            f'INSERT INTO "{pg_schema}".planner_schema_version (version) VALUES (%s)'.encode(),
            [SCHEMA_VERSION + 1],
        )
    for verify_only in (False, True):
        with pytest.raises(SchemaVersionError, match="upgrade planner"):
            await PostgresStore(PG_URL, schema=pg_schema, verify_only=verify_only).setup()


async def test_concurrent_first_starts_migrate_once(pg_schema: str) -> None:
    stores = [PostgresStore(PG_URL, schema=pg_schema, pool_max_size=1) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.setup)
    for store in stores:
        await store.close()
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        cur = await conn.execute(
            f'SELECT version FROM "{pg_schema}".planner_schema_version'.encode()
        )
        assert [r[0] for r in await cur.fetchall()] == list(range(1, SCHEMA_VERSION + 1))


# -- streaming ----------------------------------------------------------------------


async def wakes(
    reader: PostgresStore,
    execution_id: str,
    write: Callable[[], Awaitable[object]],
    after: int = 0,
) -> bool:
    """Whether a ``reader.wait`` started before ``write()`` reports a new event.

    The wait may take 60 s; a 30 s guard fails the test long before a reader that
    only polls hourly would have answered.
    """
    woke: list[bool] = []

    async def waiter() -> None:
        woke.append(await reader.wait(execution_id, after, timeout=60))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            await write()
    return woke == [True]


def progress(store: PostgresStore, execution_id: str) -> Callable[[], Awaitable[object]]:
    """A write that appends one progress event through ``store``."""
    return lambda: store.append(execution_id, [NewEvent("progress", {"message": "x"})])


async def stop_listening(store: PostgresStore) -> None:
    """Stop the store's listener, as if its connection were gone: no notification reaches it."""
    listener = store._listener
    assert listener is not None
    listener.cancel()
    await asyncio.wait([listener])
    assert not store.listening


async def test_a_missed_notification_does_not_stall_a_wait(pg_schema: str) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=0.05) as deaf,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        await stop_listening(deaf)  # for good: only polling is left
        execution = make_execution()
        await writer.create(execution)
        assert await wakes(deaf, execution.id, progress(writer, execution.id))


async def test_wait_wakes_on_another_stores_append(pg_schema: str) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600) as reader,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        execution = make_execution()
        await writer.create(execution)
        # Without NOTIFY this reader would poll only after an hour.
        assert await wakes(reader, execution.id, progress(writer, execution.id))


async def finishes(
    reader: PostgresStore, execution_id: str, finish: Callable[[], Awaitable[object]]
) -> ExecutionStatus:
    """The status ``reader.wait_terminal``, started before ``finish()``, returns with.

    The reader's own polls are meant to be hourly: a 30 s guard fails the test
    long before polling could have answered.
    """
    got: list[ExecutionStatus] = []

    async def waiter() -> None:
        got.append((await reader.wait_terminal(execution_id, timeout=60)).status)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            await finish()
    return got[0]


def cancel(store: PostgresStore, execution_id: str) -> Callable[[], Awaitable[object]]:
    """Events that are not the end, then the final update, through ``store``."""

    async def write() -> None:
        for _ in range(3):
            await progress(store, execution_id)()
        await store.update(
            execution_id,
            status=ExecutionStatus.CANCELLED,
            events=[NewEvent("done", {"message": "bye"})],
        )

    return write


async def test_wait_terminal_wakes_on_another_stores_final_update(pg_schema: str) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600) as reader,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        execution = make_execution()
        await writer.create(execution)
        # The final update's notification says so ("<id> <seq> final").
        assert await finishes(reader, execution.id, cancel(writer, execution.id)) == "cancelled"


async def test_wait_terminal_polls_when_notifications_are_lost(pg_schema: str) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=0.05) as deaf,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        await stop_listening(deaf)
        execution = make_execution()
        await writer.create(execution)
        assert await finishes(deaf, execution.id, cancel(writer, execution.id)) == "cancelled"


async def test_wait_on_an_unknown_execution_raises_not_found(pg_store: PostgresStore) -> None:
    with pytest.raises(ExecutionNotFoundError):
        await pg_store.wait(str(uuid.uuid4()), 0, timeout=1)


# -- load and faults ------------------------------------------------------------------


async def test_500_concurrent_generations_complete_with_gap_free_streams(
    pg_schema: str,
) -> None:
    store = PostgresStore(PG_URL, schema=pg_schema, pool_max_size=8)

    async def two_events(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        await ctx.emit("progress", message="planning")
        return sample_plan(request)

    async with Planner(store, strategies={"agno": FunctionStrategy(two_events)}) as planner:
        streams: dict[str, list[Event]] = {}

        async def one() -> None:
            response = await planner.generate(request_for_tests())
            streams[response.execution_id] = [
                e async for e in planner.stream(response.execution_id)
            ]

        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(one)
        assert len(streams) == 500
        for execution_id, events in streams.items():
            assert_well_formed(events)
            assert [e.type for e in events] == [
                "status",
                "status",
                "progress",
                "complete",
                "done",
            ]
            assert (await store.get(execution_id)).status is ExecutionStatus.COMPLETED


async def outlives(
    store: PostgresStore,
    steps: int,
    disrupt: Callable[[], Awaitable[object]],
    after: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """A run of ``steps`` progress events, streamed while ``disrupt()`` hits the store.

    ``disrupt`` starts once ten steps are in; the plan must come through, and the
    stream must hold every event once, in order, as the log does.  ``after``
    runs last, before the planner closes the store.
    """
    progress = anyio.Event()

    async def many_steps(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        for i in range(steps):
            await ctx.emit("progress", message=f"step {i}")
            if i == 10:
                progress.set()
            await anyio.sleep(0.01)
        return sample_plan(request)

    async with Planner(store, strategies={"agno": FunctionStrategy(many_steps)}) as planner:
        response = await planner.generate(request_for_tests())
        seen: list[Event] = []

        async def consume() -> None:
            seen.extend([e async for e in planner.stream(response.execution_id)])

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await progress.wait()
            await disrupt()
        plan = await planner.wait(response.execution_id, timeout=60)
        assert plan.total_tasks > 0
        assert_well_formed(seen)
        messages = [e.data["message"] for e in seen if e.type == "progress"]
        assert messages == [f"step {i}" for i in range(steps)]  # each once, in order
        assert seen == await planner.events(response.execution_id)
        if after is not None:
            await after()


async def test_terminated_connections_are_replaced_and_nothing_is_lost(pg_schema: str) -> None:
    app = f"planner-test-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(
        f"{PG_URL}?application_name={app}", schema=pg_schema, pool_max_size=4, poll_interval=0.2
    )

    def terminate_all() -> int:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                [app],
            ).fetchall()
        return len(rows)

    async def kill_three_times() -> None:  # kill everything, three times, while the run goes on
        killed = 0
        for _ in range(3):
            killed += await anyio.to_thread.run_sync(terminate_all)
            await anyio.sleep(0.1)
        assert killed >= 3

    async def listener_is_back() -> None:
        with anyio.fail_after(30):  # the listener came back by itself
            while not store.listening:  # noqa: ASYNC110 - a state, not an event to wait on
                await anyio.sleep(0.05)

    await outlives(store, 60, kill_three_times, listener_is_back)


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.pg_support", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_consumer_in_another_process_resumes_after_a_seq(pg_schema: str) -> None:
    gate = anyio.Event()

    async def gated(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        for i in range(5):
            await ctx.emit("progress", message=f"before {i}")
        await gate.wait()
        for i in range(5):
            await ctx.emit("progress", message=f"after {i}")
        return sample_plan(request)

    store = PostgresStore(PG_URL, schema=pg_schema, pool_max_size=4)
    async with Planner(store, strategies={"agno": FunctionStrategy(gated)}) as planner:
        response = await planner.generate(request_for_tests())
        execution_id = response.execution_id
        with anyio.fail_after(60):
            while len(await planner.events(execution_id)) < 7:  # 2 status + 5 progress
                await store.wait(execution_id, 6, 1)
        cursor = 4  # the consumer saw seq 1..4, then lost its connection
        with _child("stream", PG_URL, pg_schema, execution_id, str(cursor)) as child:
            assert child.stdout is not None
            ready = await anyio.to_thread.run_sync(child.stdout.readline)
            assert ready.strip() == "ready"
            gate.set()  # the rest of the run happens while the consumer streams
            out, _ = await anyio.to_thread.run_sync(lambda: child.communicate(timeout=60))
        assert child.returncode == 0
        all_events = await planner.events(execution_id)
        expected = [e.model_dump(mode="json") for e in all_events if e.seq > cursor]
        assert event_lines(out) == expected
        assert_well_formed(all_events)


async def test_a_killed_process_is_recovered_as_attempt_2(pg_schema: str) -> None:
    with _child("generate", PG_URL, pg_schema, "1.0") as child:
        assert child.stdout is not None
        line = await anyio.to_thread.run_sync(child.stdout.readline)
        execution_id = line.strip()
        uuid.UUID(execution_id)  # the run is in its strategy, two progress events in
        os.kill(child.pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(child.wait)
    assert child.returncode == -signal.SIGKILL

    store = PostgresStore(PG_URL, schema=pg_schema, pool_max_size=4)
    async with store:
        lost = await store.get(execution_id)
        assert lost.status is ExecutionStatus.RUNNING and lost.attempt == 1
        assert lost.lease_expires_at is not None
        # The dead owner's lease runs out (the child's lease_ttl is 1 s).
        await anyio.sleep((lost.lease_expires_at - utcnow()).total_seconds() + 0.05)
        assert await store.reclaimable(["inprocess"]) == [lost]
    async with Planner(
        store, strategies={"agno": FunctionStrategy(zero_latency)}, lease_ttl=1.0
    ) as planner:
        plan = await planner.wait(execution_id, timeout=60)
        assert plan.total_tasks > 0
        events = [e async for e in planner.stream(execution_id)]
        record = await planner.get(execution_id)
    assert record.status is ExecutionStatus.COMPLETED and record.attempt == 2
    assert_well_formed(events)
    assert [(e.type, e.data.get("status") or e.data.get("stage")) for e in events] == [
        ("status", "pending"),
        ("status", "running"),
        ("progress", None),
        ("progress", None),
        ("status", "running"),
        ("progress", "recovered"),
        ("complete", None),
        ("done", "completed"),
    ]
    assert [e.data.get("attempt") for e in events if e.type == "status"] == [None, 1, 2]


# -- retention ------------------------------------------------------------------------


async def test_prune_deletes_the_events_too(pg_store: PostgresStore) -> None:
    done = NewEvent("done", {"message": "done", "execution_id": "x", "status": "cancelled"})
    for _ in range(5):
        execution = make_execution()
        await pg_store.create(execution, [NewEvent("progress", {"message": "x" * 1000})] * 20)
        await pg_store.update(execution.id, status=ExecutionStatus.CANCELLED, events=[done])

    def count() -> int:
        with psycopg.connect(PG_URL) as conn:
            row = conn.execute(
                f'SELECT count(*) FROM "{pg_store.schema}".planner_events'.encode()
            ).fetchone()
        assert row is not None
        return int(row[0])

    assert count() == 5 * 21
    assert await pg_store.prune(keep=1) == 4
    assert count() == 21
    assert await pg_store.prune(older_than=timedelta(0)) == 1
    assert count() == 0


async def test_a_write_whose_reply_is_lost_is_not_applied_twice(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="planner")
    async with LostReplyProxy() as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        async with PostgresStore(url, schema=pg_schema, pool_max_size=2) as store:
            execution = make_execution()
            await store.create(execution, [NewEvent("status", {"status": "pending"})])
            await store.update(execution.id, status=ExecutionStatus.RUNNING)

            # An append: one statement, committed by the server, its reply lost.
            proxy.arm(b"append-marker")
            appended = await store.append(
                execution.id, [NewEvent("progress", {"message": "append-marker"})] * 2
            )
            assert [e.seq for e in appended] == [2, 3]

            # A final status change: one statement too, its reply lost.
            proxy.arm(b"finish-marker")
            done = await store.update(
                execution.id,
                status=ExecutionStatus.COMPLETED,
                events=[
                    NewEvent("complete", {"plan": {}, "message": "finish-marker"}),
                    NewEvent("done", {"message": "d", "execution_id": "x", "status": "completed"}),
                ],
            )
            assert done.status is ExecutionStatus.COMPLETED
            assert proxy.cuts == 2
            events = await store.read(execution.id)
    assert [(e.seq, e.type) for e in events] == [
        (1, "status"),
        (2, "progress"),
        (3, "progress"),
        (4, "complete"),
        (5, "done"),
    ]
    committed = [r for r in caplog.records if "had committed" in r.getMessage()]
    assert len(committed) == 2


async def test_a_restart_claim_whose_commit_reply_is_lost_is_not_applied_twice(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="planner")
    async with LostReplyProxy() as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        async with PostgresStore(url, schema=pg_schema, pool_max_size=2) as store:
            execution = make_execution()
            await store.create(execution, [NewEvent("status", {"status": "pending"})])
            first = await store.claim(execution.id, "owner-1", ttl=0.0)  # expires at once
            assert first is not None and first.attempt == 1

            # A restart is a transaction (lock, write, COMMIT): its COMMIT reply is lost.
            proxy.arm(b"Restarting plan generation", b"COMMIT")
            second = await store.claim(execution.id, "owner-2", ttl=60.0)
            assert proxy.cuts == 1
            assert second is not None
            assert (second.attempt, second.lease_owner) == (2, "owner-2")
            events = await store.read(execution.id)
    assert [(e.seq, e.type, e.data.get("attempt")) for e in events] == [
        (1, "status", None),
        (2, "status", 1),
        (3, "status", 2),
        (4, "progress", None),
    ]
    assert len([r for r in caplog.records if "had committed" in r.getMessage()]) == 1


async def test_every_kind_of_write_wakes_a_peer(pg_schema: str) -> None:
    # Notifications go out after the commit, in batches: claim, append and update
    # each still wake a waiter in another store (which would otherwise poll for an hour).
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600) as reader,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        execution = make_execution()
        await writer.create(execution, [NewEvent("status", {"status": "pending"})])
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: writer.claim(execution.id, "owner", ttl=60.0),
            lambda: writer.append(execution.id, [NewEvent("progress", {"message": "x"})]),
            lambda: writer.update(
                execution.id,
                status=ExecutionStatus.COMPLETED,
                owner="owner",
                events=[NewEvent("complete", {"plan": {}, "message": "done"})],
            ),
        ]
        for after, write in enumerate(writes, 1):
            assert await wakes(reader, execution.id, write, after)


async def test_the_last_writes_notifications_are_sent_on_close(pg_schema: str) -> None:
    async with PostgresStore(
        PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600
    ) as reader:
        writer = PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2)
        await writer.setup()
        execution = make_execution()
        await writer.create(execution)

        async def append_and_close() -> None:
            await writer.append(execution.id, [NewEvent("progress", {"message": "x"})])
            await writer.close()  # at once: the notification may still be queued

        assert await wakes(reader, execution.id, append_and_close)


async def test_a_deaf_store_asks_the_database_before_waiting(pg_schema: str) -> None:
    # A store vouches for the last seq it saw only while its listener is up.
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600) as deaf,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        execution = make_execution()
        await deaf.create(execution, [NewEvent("status", {"status": "pending"})])
        await stop_listening(deaf)
        await writer.append(execution.id, [NewEvent("progress", {"message": "x"})])
        with anyio.fail_after(30):  # polling alone would take an hour
            assert await deaf.wait(execution.id, 1, timeout=3600)


def _backends(app: str, query_like: str = "%") -> list[int]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
            [app, query_like],
        ).fetchall()
    return [r[0] for r in rows]


def _terminate(pids: list[int]) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_the_listener_reconnects_and_wakes_streams_again(pg_schema: str) -> None:
    app = f"planner-test-{uuid.uuid4().hex[:8]}"
    async with (
        PostgresStore(
            f"{PG_URL}?application_name={app}",
            schema=pg_schema,
            pool_max_size=2,
            poll_interval=3600,
        ) as reader,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        old = await anyio.to_thread.run_sync(_backends, app, "LISTEN%")
        assert len(old) == 1
        await anyio.to_thread.run_sync(_terminate, old)
        with anyio.fail_after(30):
            while True:
                new = await anyio.to_thread.run_sync(_backends, app, "LISTEN%")
                if new and new != old:
                    break
                await anyio.sleep(0.05)
        assert reader.listening
        execution = make_execution()
        await writer.create(execution)
        # Polling alone would take an hour: the reconnected listener must wake it.
        assert await wakes(reader, execution.id, progress(writer, execution.id))


async def test_a_final_update_while_the_listener_is_away_still_ends_wait_terminal(
    pg_schema: str,
) -> None:
    async with (
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2, poll_interval=3600) as reader,
        PostgresStore(PG_URL, schema=pg_schema, pool_max_size=2) as writer,
    ):
        execution = make_execution()
        await writer.create(execution)

        async def away_then_cancel() -> None:
            await stop_listening(reader)  # the listener's connection is gone ...
            await cancel(writer, execution.id)()  # ... so the final notification is lost
            await anyio.sleep(0.3)  # (it goes out within a few ms: not to the new listener)
            # It comes back as after a dropped connection: waiters must read again.
            reader._listener = asyncio.get_running_loop().create_task(reader._listen(None))

        assert await finishes(reader, execution.id, away_then_cancel) == "cancelled"


async def test_long_schema_and_prefix_names_work(pg_schema: str) -> None:
    schema = pg_schema + "_" + "s" * (40 - len(pg_schema) - 1)
    try:
        async with PostgresStore(PG_URL, schema=schema, prefix="p" * 40, pool_max_size=2) as store:
            assert len(store.channel) <= 63
            execution = make_execution()
            await store.create(execution)
            assert await wakes(store, execution.id, progress(store, execution.id))
    finally:
        await anyio.to_thread.run_sync(drop_schema, schema)


async def test_a_restarted_server_costs_no_events() -> None:
    with ThrowawayCluster() as cluster:
        store = PostgresStore(cluster.url, pool_max_size=4, poll_interval=0.2, retry_timeout=60)

        async def restart() -> None:
            await anyio.to_thread.run_sync(cluster.stop)  # every connection ends
            await anyio.sleep(0.3)  # writes fail meanwhile, and are retried
            await anyio.to_thread.run_sync(cluster.start)

        await outlives(store, 40, restart)
