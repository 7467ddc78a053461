"""The SQLite store: the conformance kit, URLs, migrations, retention, load, processes, crashes."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from blockbuster import blockbuster_ctx

from planner import Planner
from planner.backends.stores import sqlite as sqlite_module
from planner.backends.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from planner.context import RunContext
from planner.errors import SchemaVersionError
from planner.events import Event
from planner.execution import ExecutionStatus
from planner.interfaces import NewEvent
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.plugins import PluginRegistry, default_registry
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts import StoreContract, make_execution

REPO = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT = 90.0


@pytest.fixture(autouse=True)
def no_blocking_calls() -> Iterator[None]:
    # Any blocking call (sqlite3, file I/O, sleep) made by planner code on the
    # event loop's thread raises: the store must do its work in worker threads.
    # Plugin discovery reads package metadata once per process, before this starts.
    default_registry()
    with blockbuster_ctx("planner"):
        yield


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{'?' + query if query else ''}"


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        async with SQLiteStore(url_of(tmp_path / "contract.db")) as store:
            yield store

    @pytest.fixture
    async def peer_store(self, tmp_path: Path, store: SQLiteStore) -> AsyncIterator[SQLiteStore]:
        # A second object on the same file: its own connections and write lock,
        # as in another process; it sees the first one's writes by polling.
        async with SQLiteStore(url_of(tmp_path / "contract.db", "poll_interval=0.05")) as peer:
            yield peer


# -- URLs and options --------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert SQLiteStore("sqlite:///rel/planner.db").path == Path("rel/planner.db")
    assert SQLiteStore("sqlite:////abs/planner.db").path == Path("/abs/planner.db")
    assert SQLiteStore("sqlite:///~/p.db").path == Path.home() / "p.db"
    store = SQLiteStore("sqlite:///x.db?poll_interval=0.25&busy_timeout=5&migrate=false")
    assert (store.poll_interval, store.busy_timeout, store.migrate) == (0.25, 5.0, False)
    assert SQLiteStore("sqlite:///x.db?poll_interval=0.25", poll_interval=1).poll_interval == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "not a SQLite store URL"),
        ("sqlite://x.db", "not a SQLite store URL"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "use 'memory://'"),
        ("sqlite:///x.db?pool=3", "unknown SQLite store option"),
        ("sqlite:///x.db?poll_interval=0", "must be positive"),
        ("sqlite:///x.db?busy_timeout=soon", "must be a number"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SQLiteStore(url)


def test_the_registry_builds_it_from_a_url(tmp_path: Path) -> None:
    registry = PluginRegistry(entry_points=False)
    assert "sqlite" in registry.names("store")
    store = registry.create("store", url_of(tmp_path / "r.db"), poll_interval=0.1)
    assert isinstance(store, SQLiteStore) and store.poll_interval == 0.1


async def test_setup_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "planner.db"
    async with SQLiteStore(url_of(path)):
        pass
    assert path.exists()


# -- schema and migrations ---------------------------------------------------------------


def _sql(path: Path, statement: str) -> list[Any]:
    with sqlite3.connect(path) as conn:
        rows: list[Any] = conn.execute(statement).fetchall()
    return rows


async def test_setup_migrates_once_and_records_the_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with anyio.create_task_group() as tg:  # several objects set up one file at once
        for _ in range(5):
            tg.start_soon(SQLiteStore(url_of(path)).setup)
    store = SQLiteStore(url_of(path))
    async with store:
        assert await store.schema_version() == SCHEMA_VERSION
    assert _sql(path, "SELECT version FROM planner_schema_version") == [(SCHEMA_VERSION,)]
    assert _sql(path, "PRAGMA journal_mode") == [("wal",)]
    indexes = _sql(path, "PRAGMA index_list(planner_events)")
    (pk,) = [row for row in indexes if row[3] == "pk"]
    assert [r[2] for r in _sql(path, f"PRAGMA index_info({pk[1]})")] == ["execution_id", "seq"]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with SQLiteStore(url_of(path)):
        pass
    _sql(path, f"INSERT INTO planner_schema_version VALUES ({SCHEMA_VERSION + 1}, 'x', 'now')")
    with pytest.raises(SchemaVersionError, match="upgrade planner"):
        await SQLiteStore(url_of(path)).setup()


async def test_migrate_false_refuses_an_outdated_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with pytest.raises(SchemaVersionError, match="run its migrations"):
        await SQLiteStore(url_of(path), migrate=False).setup()
    async with SQLiteStore(url_of(path)):
        pass
    async with SQLiteStore(url_of(path), migrate=False) as store:  # current: accepted
        assert await store.schema_version() == SCHEMA_VERSION


async def test_the_store_reopens_after_close(tmp_path: Path) -> None:
    store = SQLiteStore(url_of(tmp_path / "re.db"))
    execution = make_execution()
    async with store:
        await store.create(execution)
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(execution.id)
    async with store:
        assert (await store.get(execution.id)).id == execution.id


# -- the write lock ----------------------------------------------------------------------


async def test_a_write_waits_for_another_connections_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    async with SQLiteStore(url_of(path)) as store:
        execution = make_execution()
        await store.create(execution)
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's write in progress
        locked = anyio.Event()
        try:

            async def release_later() -> None:
                await anyio.sleep(0.3)
                locked.set()
                await anyio.to_thread.run_sync(holder.execute, "COMMIT")

            async with anyio.create_task_group() as tg:
                tg.start_soon(release_later)
                (event,) = await store.append(
                    execution.id, [NewEvent("progress", {"message": "x"})]
                )
            assert locked.is_set()  # it did wait for the lock
            assert event.seq == 1
        finally:
            holder.close()


async def test_a_write_fails_clearly_when_the_lock_never_comes(tmp_path: Path) -> None:
    path = tmp_path / "stuck.db"
    async with SQLiteStore(url_of(path, "busy_timeout=0.2")) as store:
        execution = make_execution()
        await store.create(execution)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await store.append(execution.id, [NewEvent("progress", {"message": "x"})])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await store.read(execution.id) == []


# -- wake-ups ----------------------------------------------------------------------------


async def test_in_process_wake_ups_need_no_polling(tmp_path: Path) -> None:
    # Polls so rare that only a wake-up can end these waits in time.
    url = url_of(tmp_path / "wake.db", "poll_interval=3600")
    async with SQLiteStore(url) as store, SQLiteStore(url) as other:
        execution = make_execution()
        await store.create(execution, [NewEvent("progress", {"message": "first"})])
        woke: list[bool] = []

        async def waiter(target: SQLiteStore) -> None:
            woke.append(await target.wait(execution.id, 1, timeout=3600))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter, store)
                tg.start_soon(waiter, other)  # another object on the same file
                await anyio.sleep(0.05)
                await other.append(execution.id, [NewEvent("progress", {"message": "wake"})])
        assert woke == [True, True]


# -- retention ---------------------------------------------------------------------------


def _file_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_prune_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prune.db"
    async with SQLiteStore(url_of(path)) as store:
        kept = make_execution()
        await store.create(kept, [NewEvent("progress", {"message": "stays"})])
        for _ in range(40):
            ex = make_execution()
            await store.create(ex, [NewEvent("progress", {"message": "y" * 20_000})])
            await store.update(
                ex.id,
                status=ExecutionStatus.CANCELLED,
                events=[NewEvent("cancelled", {"reason": "r", "message": "m"})],
            )
        before = _file_size(path)
        assert await store.prune(keep=0) == 40
        after = _file_size(path)
        assert after < before / 4, (before, after)
        assert [e.id for e in await store.list()] == [kept.id]
        assert len(await store.read(kept.id)) == 1


# -- load through a Planner --------------------------------------------------------------


async def quick_plan(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message="planning")
    return sample_plan(request)


def assert_complete_stream(events: list[Event], attempts: int = 1) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.terminal for e in events) == 1
    assert events[-2].type == "complete"
    assert events[-1].type == "done"
    running = [e.data.get("attempt") for e in events if e.type == "status"][1:]
    assert running == list(range(1, attempts + 1))


async def test_500_concurrent_generations_complete_with_gap_free_streams(tmp_path: Path) -> None:
    request = sample_request(planning_strategy="fn")
    async with Planner(
        store=url_of(tmp_path / "load.db"), strategies={"fn": FunctionStrategy(quick_plan)}
    ) as planner:
        streams: dict[str, list[Event]] = {}

        async def one() -> None:
            response = await planner.generate(request)
            streams[response.execution_id] = [
                e async for e in planner.stream(response.execution_id)
            ]

        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(one)
        assert len(streams) == 500
        for execution_id, events in streams.items():
            assert_complete_stream(events)
            assert events == await planner.events(execution_id)
        completed = await planner.list(status=ExecutionStatus.COMPLETED, limit=1000)
        assert len(completed) == 500


# -- several processes -------------------------------------------------------------------

# Children run this code with `python -c CHILD MODE ARGS...` (no test module is imported).
CHILD = r"""
import json, sys, time
import anyio
from planner import Planner
from planner.testing import FunctionStrategy, sample_plan, sample_request

mode, url = sys.argv[1], sys.argv[2]

async def quick(request, ctx):
    await ctx.emit("progress", message="planning")
    return sample_plan(request)

async def stuck(request, ctx):
    await ctx.emit("progress", message="started")
    await anyio.sleep_forever()

def say(**fields):
    print(json.dumps(fields), flush=True)

async def generate(count, go):
    async with Planner(store=url, strategies={"fn": FunctionStrategy(quick)}) as planner:
        say(ready=True)
        while not __import__("os").path.exists(go):
            await anyio.sleep(0.01)
        ids = []
        async def one():
            response = await planner.generate(sample_request(planning_strategy="fn"))
            await planner.wait(response.execution_id, timeout=60)
            ids.append(response.execution_id)
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        say(ids=ids)

async def consume(execution_id, after, stop_after):
    async with Planner(store=url, executor_options={"recover": False}) as planner:
        async for event in planner.stream(execution_id, after=after):
            say(seq=event.seq, type=event.type, data=event.data)
            if event.seq == stop_after:
                break

async def wait(execution_id):
    async with Planner(store=url, executor_options={"recover": False}) as planner:
        say(ready=True)
        execution = await planner.store.wait_terminal(execution_id, timeout=60)
        say(status=execution.status.value)

async def crash():
    async with Planner(
        store=url, strategies={"fn": FunctionStrategy(stuck)}, lease_ttl=1.0
    ) as planner:
        response = await planner.generate(sample_request(planning_strategy="fn"))
        say(id=response.execution_id)
        await anyio.sleep_forever()

if mode == "generate":
    anyio.run(generate, int(sys.argv[3]), sys.argv[4])
elif mode == "consume":
    anyio.run(consume, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
elif mode == "wait":
    anyio.run(wait, sys.argv[3])
else:
    anyio.run(crash)
"""


async def start_child(log: Path, *args: str) -> Process:
    """Start ``python -c CHILD *args``; its stderr (warnings, tracebacks) goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stderr = await anyio.to_thread.run_sync(functools.partial(open, log, "wb"))
    try:
        return await anyio.open_process(
            [sys.executable, "-c", CHILD, *args], cwd=REPO, env=env, stderr=stderr
        )
    finally:
        stderr.close()  # the child has its own copy


async def lines(process: Process) -> AsyncIterator[dict[str, Any]]:
    assert process.stdout is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stdout):
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield json.loads(line)


async def test_four_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    go = tmp_path / "go"
    url = url_of(path, "poll_interval=0.05")
    logs = [tmp_path / f"child-{i}.log" for i in range(4)]
    children = [await start_child(log, "generate", url, "40", str(go)) for log in logs]
    results: list[list[str]] = []
    try:
        with anyio.fail_after(PROCESS_TIMEOUT):
            readers = [lines(child) for child in children]
            for reader in readers:  # every child has set up the file
                assert await reader.__anext__() == {"ready": True}
            go.touch()  # now all four generate at once
            results.extend([(await reader.__anext__())["ids"] for reader in readers])
            for child in children:
                assert await child.wait() == 0
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    for log in logs:  # no "database is locked", no warning of a failed lease renewal
        assert (await anyio.Path(log).read_text()) == ""
    ids = [i for r in results for i in r]
    assert len(ids) == len(set(ids)) == 160
    async with SQLiteStore(url_of(path)) as store:
        assert len(await store.list(limit=1000)) == 160
        for execution_id in ids:
            assert (await store.get(execution_id)).status is ExecutionStatus.COMPLETED
            assert_complete_stream(await store.read(execution_id))


async def test_a_consumer_in_another_process_resumes_after_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "resume.db"
    url = url_of(path, "poll_interval=0.05")
    async with SQLiteStore(url) as store:
        # Not an in-process execution: the consumers' Planners must not run it.
        execution = make_execution(executor="elsewhere")
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        for i in range(2, 6):
            await store.append(execution.id, [NewEvent("progress", {"message": f"m{i}"})])

        async def consume(after: int, stop_after: int) -> list[dict[str, Any]]:
            child = await start_child(
                tmp_path / f"consume-{after}.log",
                "consume",
                url,
                execution.id,
                str(after),
                str(stop_after),
            )
            try:
                got = [line async for line in lines(child)]
                assert await child.wait() == 0
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
            return got

        with anyio.fail_after(PROCESS_TIMEOUT):
            first = await consume(0, 3)  # stops after seq 3, like a dropped connection
            assert [e["seq"] for e in first] == [1, 2, 3]
            second: list[dict[str, Any]] = []

            async def resume() -> None:
                second.extend(await consume(first[-1]["seq"], -1))

            async with anyio.create_task_group() as tg:
                tg.start_soon(resume)
                # Live events arrive while the second consumer streams.
                for i in range(6, 9):
                    await anyio.sleep(0.05)
                    await store.append(execution.id, [NewEvent("progress", {"message": f"m{i}"})])
                await store.update(
                    execution.id,
                    status=ExecutionStatus.CANCELLED,
                    events=[
                        NewEvent("cancelled", {"reason": "test", "message": "stop"}),
                        NewEvent("done", {"message": "bye"}),
                    ],
                )
        logged = await store.read(execution.id)
    assert [e["seq"] for e in second] == list(range(4, 11))
    assert first + second == [{"seq": e.seq, "type": e.type, "data": e.data} for e in logged]


async def test_a_waiter_in_another_process_sees_the_final_update(tmp_path: Path) -> None:
    # Other processes' writes reach a wait_terminal by its poll of the record.
    url = url_of(tmp_path / "final.db", "poll_interval=0.05")
    async with SQLiteStore(url) as store:
        execution = make_execution(executor="elsewhere")
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        child = await start_child(tmp_path / "wait.log", "wait", url, execution.id)
        try:
            with anyio.fail_after(PROCESS_TIMEOUT):
                reader = lines(child)
                assert await reader.__anext__() == {"ready": True}
                await store.append(execution.id, [NewEvent("progress", {"message": "not yet"})])
                await anyio.sleep(0.2)  # several polls see a record that is not final
                await store.update(
                    execution.id,
                    status=ExecutionStatus.CANCELLED,
                    events=[NewEvent("done", {"message": "bye"})],
                )
                assert await reader.__anext__() == {"status": "cancelled"}
                assert await child.wait() == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def test_a_killed_process_is_recovered_as_a_new_attempt(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    url = url_of(path, "poll_interval=0.05")
    child = await start_child(tmp_path / "crash.log", "crash", url)
    try:
        with anyio.fail_after(PROCESS_TIMEOUT):
            execution_id = (await lines(child).__anext__())["id"]
            async with SQLiteStore(url) as store:
                seen = 0
                while not any(
                    e.type == "progress" and e.data["message"] == "started"
                    for e in await store.read(execution_id)
                ):
                    await store.wait(execution_id, seen, timeout=5)
                    seen = len(await store.read(execution_id))
            child.send_signal(signal.SIGKILL)  # mid-generation: no chance to clean up
            await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    async with SQLiteStore(url) as store:
        lost = await store.get(execution_id)
        assert lost.status is ExecutionStatus.RUNNING and lost.attempt == 1
        with anyio.fail_after(PROCESS_TIMEOUT):  # the dead owner's lease runs out
            while True:
                if execution_id in [e.id for e in await store.reclaimable(["inprocess"])]:
                    break
                await anyio.sleep(0.1)

    async with Planner(
        store=url, strategies={"fn": FunctionStrategy(quick_plan)}, lease_ttl=1.0
    ) as planner:
        plan = await planner.wait(execution_id, timeout=PROCESS_TIMEOUT)
        record = await planner.get(execution_id)
        events = [e async for e in planner.stream(execution_id)]
    assert plan == TaskPlan.model_validate(record.plan_json)
    assert record.status is ExecutionStatus.COMPLETED and record.attempt == 2
    assert_complete_stream(events, attempts=2)
    messages = [e.data.get("message", "") for e in events if e.type == "progress"]
    assert messages[0] == "started"
    assert "attempt 2" in messages[1] and "lost" in messages[1]
    assert messages[2] == "planning"


# -- the writer and reader threads -----------------------------------------------------


def progress(n: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent("progress", {"message": f"m{i}"}) for i in range(start, start + n)]


async def test_a_long_log_is_read_whole_and_in_pages(tmp_path: Path) -> None:
    # The reader thread takes a chunk; a worker thread reads on from there.
    async with SQLiteStore(url_of(tmp_path / "long.db")) as store:
        execution = make_execution()
        await store.create(execution)
        for start in range(0, 2500, 500):
            await store.append(execution.id, progress(500, start))
        everything = await store.read(execution.id)
        assert [e.seq for e in everything] == list(range(1, 2501))
        assert [e.data["message"] for e in everything] == [f"m{i}" for i in range(2500)]
        assert [e.seq for e in await store.read(execution.id, after=700)] == list(range(701, 2501))
        assert [e.seq for e in await store.read(execution.id, limit=1500)] == list(range(1, 1501))
        page = await store.read(execution.id, after=999, limit=1001)
        assert [e.seq for e in page] == list(range(1000, 2001))
        assert await store.read(execution.id, after=2500) == []


async def test_concurrent_writes_commit_together_and_a_failing_one_leaves_no_trace(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(url_of(tmp_path / "group.db")) as store:
        open_one, finished = make_execution(), make_execution()
        await store.create(open_one)
        await store.create(finished, [NewEvent("done", {"status": "completed"})])
        results: dict[int, Any] = {}

        async def write(i: int) -> None:
            target = finished.id if i % 5 == 0 else open_one.id
            try:
                results[i] = await store.append(target, progress(1, i))
            except Exception as exc:
                results[i] = exc

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(write, i)

        failures = [i for i, r in results.items() if isinstance(r, Exception)]
        assert sorted(failures) == list(range(0, 60, 5))
        assert all(type(results[i]).__name__ == "ExecutionFinishedError" for i in failures)
        log = await store.read(open_one.id)
        assert [e.seq for e in log] == list(range(1, 49))  # 48 appends, gap-free
        by_message = {e.data["message"]: e.seq for e in log}
        for i, appended in results.items():
            if not isinstance(appended, Exception):
                (event,) = appended
                assert by_message[f"m{i}"] == event.seq
        assert [e.type for e in await store.read(finished.id)] == ["done"]


async def test_written_records_read_back_equal_and_the_parse_cache_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store remembers the records it writes as parsed; reading them back
    # (here, and through a second object that must parse them) gives equal
    # executions, and the remembered records never exceed the bound.
    monkeypatch.setattr(sqlite_module, "_PARSED_MAX", 8)
    path = tmp_path / "cache.db"
    async with SQLiteStore(url_of(path)) as store, SQLiteStore(url_of(path)) as peer:
        written = []
        for i in range(20):
            execution = make_execution()
            await store.create(execution)
            written.append(
                await store.update(
                    execution.id,
                    status=ExecutionStatus.RUNNING,
                    events=progress(1, i),
                )
            )
            assert len(store._parsed) <= 8
        for updated in written:
            assert await store.get(updated.id) == updated
            assert await peer.get(updated.id) == updated
            assert len(store._parsed) <= 8
            assert len(peer._parsed) <= 8


async def test_event_loops_in_several_threads_share_one_store(tmp_path: Path) -> None:
    async with SQLiteStore(url_of(tmp_path / "threads.db")) as store:
        assert store.thread_safe
        execution = make_execution()
        await store.create(execution)

        async def writer(name: str) -> list[int]:
            seqs = []
            for i in range(40):
                (event,) = await store.append(
                    execution.id, [NewEvent("progress", {"message": f"{name}-{i}"})]
                )
                seqs.append(event.seq)
                await store.get(execution.id)
            return seqs

        def in_own_loop(name: str) -> list[int]:
            return anyio.run(writer, name, backend="asyncio")

        results: dict[str, list[int]] = {}

        async def run_thread(name: str) -> None:
            results[name] = await anyio.to_thread.run_sync(in_own_loop, name)

        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "c", "d"):
                tg.start_soon(run_thread, name)
            tg.start_soon(writer, "main")

        log = await store.read(execution.id)
        assert [e.seq for e in log] == list(range(1, 201))
        for name, seqs in results.items():
            assert seqs == sorted(seqs)
            assert [e.seq for e in log if e.data["message"].startswith(f"{name}-")] == seqs


async def test_the_thread_pool_executor_calls_it_from_its_threads(tmp_path: Path) -> None:
    from planner.backends.executors.threadpool import ThreadPoolExecutor

    async def steps(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        for i in range(3):
            await ctx.emit("progress", message=f"step {i}")
        return sample_plan(req)

    # "direct": the runs on the pool's threads call the store from their own loops.
    executor = ThreadPoolExecutor(max_workers=3, store_access="direct")
    async with Planner(
        url_of(tmp_path / "pool.db"), executor, {"agno": FunctionStrategy(steps)}
    ) as planner:
        ids = [
            (await planner.generate(sample_request(planning_strategy="agno"))).execution_id
            for _ in range(8)
        ]
        for i in ids:
            await planner.wait(i, timeout=60)
            events = [e async for e in planner.stream(i)]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert [e.type for e in events].count("progress") == 3
            assert events[-1].type == "done"
