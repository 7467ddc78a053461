"""The durable stores: planner on SQLite and PostgreSQL next to the raw floor and the peers.

The work is bench_core's: a zero-latency step that reports 5 progress events and
returns a ~3.6 KB plan.  One execution is ``generate(request)`` then
``wait(id)`` on ``Planner(store=..., executor="inprocess")``.

Systems, each measured on a fresh file / schema per round, rounds interleaved
(the order alternates) so that they share the machine's noise:

- ``planner-sqlite``, ``planner-postgres``: the planner's stores.
- ``planner-memory``: the same planner on the memory store, the ceiling of any
  store (no target; for reference).
- ``raw-sqlite``, ``raw-postgres``: the raw floor, the same rows written with
  plain ``sqlite3`` / ``psycopg`` and nothing else: per execution, the same
  transactions the store commits (create with the first status event; claim
  with the running status event; 5 appends; the outcome with ``complete`` and
  ``done``), 9 event rows and the execution row updated twice.  SQLite: one
  connection, one transaction after the other (SQLite has one writer);
  PostgreSQL: a psycopg async pool, C executions in flight.
- ``langgraph-sqlite``, ``langgraph-postgres``: bench_core's one-node graph with
  ``AsyncSqliteSaver`` / ``AsyncPostgresSaver``, ``astream`` consumed to the end.
- ``dbos-sqlite``: a DBOS workflow on a SQLite system database that writes 5
  progress values to a DBOS stream and returns the plan; ``start_workflow_async``
  then ``get_result``.  DBOS (a process-wide singleton with background threads)
  is launched on a fresh database for each measurement and destroyed after it.

Then latency through the planner's stores: one ``append`` of a progress event,
and a stream from a cursor (``Planner.stream(id, after=last - 1)`` until its
first event), on an execution whose log holds 1 event and on one whose log holds
1,000,000 (written directly with ``executemany`` / ``COPY``).

PostgreSQL runs against 127.0.0.1:5432 (trust auth) in a throwaway database,
dropped at the end (``--pg-url`` names the server; ``--no-postgres`` skips it).

Usage::

    python bench/bench_stores.py                       # --n 500 --rounds 3 --concurrency 50
    python bench/bench_stores.py --n 200 --rounds 3 --history 100000
    python bench/bench_stores.py --only planner-sqlite,raw-sqlite --profile
    git show HEAD:planner/backends/stores/sqlite.py > /tmp/old_sqlite.py
    python bench/bench_stores.py --baseline-sqlite /tmp/old_sqlite.py   # before / after

Peers that are not installed are left out (``pip install -r bench/requirements.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import cProfile
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (
    EVENTS,
    MESSAGES,
    STRATEGY,
    LangGraphWorkload,
    PlannerWorkload,
    Sample,
    Series,
    drive,
)

from planner import Planner
from planner.execution import Execution, ExecutionMetadata, utcnow
from planner.interfaces import NewEvent
from planner.testing import FunctionStrategy, sample_plan, sample_request

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

# -- systems ---------------------------------------------------------------------


class StorePlanner(PlannerWorkload):
    """bench_core's planner workload on a durable store (``url()`` makes a fresh one).

    ``store_class``, when given, builds the store from the URL (another version of
    a store, see ``--baseline-sqlite``); otherwise the URL picks the store.
    """

    def __init__(
        self, request: Any, plan: Any, url: Callable[[], str], store_class: Any = None
    ) -> None:
        super().__init__(request, plan)
        self.url = url
        self.store_class = store_class

    def planner(self) -> Planner:
        """A fresh planner on a fresh store, in-process executor."""
        url = self.url()
        return Planner(
            store=url if self.store_class is None else self.store_class(url),
            executor="inprocess",
            strategies={STRATEGY: FunctionStrategy(self.plan_fn, name="bench")},
        )


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class RawRows:
    """The rows one execution writes, as plain JSON text (the raw floor's input)."""

    def __init__(self, request_json: dict[str, Any], plan_json: dict[str, Any]) -> None:
        self.request = _dumps(request_json)
        self.record_pending = _dumps({"status": "pending", "request": request_json})
        self.record_running = _dumps({"status": "running", "request": request_json})
        self.record_done = _dumps(
            {"status": "completed", "request": request_json, "plan_json": plan_json}
        )
        self.status_pending = _dumps({"status": "pending", "current_step": "submitted"})
        self.status_running = _dumps({"status": "running", "attempt": 1})
        self.progress = [_dumps({"message": m}) for m in MESSAGES]
        self.complete = _dumps(
            {"plan": plan_json, "progress": 100, "message": "Plan generated successfully"}
        )
        self.done = _dumps({"status": "completed"})


RAW_SQLITE_SCHEMA = (
    "CREATE TABLE executions (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " last_seq INTEGER NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE events (execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
    " data TEXT NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (execution_id, seq))",
)


def raw_sqlite_run(path: Path, rows: RawRows, n: int) -> Sample:
    """The raw floor on SQLite: n executions' transactions, one after the other."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in RAW_SQLITE_SCHEMA:
        conn.execute(statement)
    ins = "INSERT INTO events VALUES (?, ?, ?, ?, ?)"
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        eid = str(uuid.uuid4())
        ts = time.time_ns() // 1000
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO executions VALUES (?, 'pending', 1, ?)", (eid, rows.record_pending)
        )
        conn.execute(ins, (eid, 1, "status", rows.status_pending, ts))
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE executions SET status = 'running', last_seq = 2, record = ? WHERE id = ?",
            (rows.record_running, eid),
        )
        conn.execute(ins, (eid, 2, "status", rows.status_running, ts))
        conn.execute("COMMIT")
        for i, data in enumerate(rows.progress):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("SELECT last_seq FROM executions WHERE id = ?", (eid,)).fetchone()
            conn.execute(ins, (eid, 3 + i, "progress", data, ts))
            conn.execute("UPDATE executions SET last_seq = ? WHERE id = ?", (3 + i, eid))
            conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE executions SET status = 'completed', last_seq = 9, record = ? WHERE id = ?",
            (rows.record_done, eid),
        )
        conn.executemany(
            ins, [(eid, 8, "complete", rows.complete, ts), (eid, 9, "done", rows.done, ts)]
        )
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    conn.close()
    if count != n * (EVENTS + 4):
        raise RuntimeError(f"raw sqlite wrote {count} events, expected {n * (EVENTS + 4)}")
    return Sample(seconds, latencies)


RAW_PG_SCHEMA = (
    "CREATE TABLE executions (id text PRIMARY KEY, status text NOT NULL,"
    " last_seq integer NOT NULL, record jsonb NOT NULL)",
    "CREATE TABLE events (execution_id text NOT NULL, seq integer NOT NULL, type text NOT NULL,"
    " data jsonb NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (execution_id, seq))",
)


async def raw_postgres_run(conninfo: str, rows: RawRows, n: int, concurrency: int) -> Sample:
    """The raw floor on PostgreSQL: a psycopg pool, ``concurrency`` executions in flight."""
    from psycopg_pool import AsyncConnectionPool

    schema = f"raw_{uuid.uuid4().hex[:8]}"
    async with AsyncConnectionPool(
        conninfo, min_size=min(concurrency, 10), max_size=10, open=False
    ) as pool:
        async with pool.connection() as conn:
            await conn.execute(f"CREATE SCHEMA {schema}")
            for statement in RAW_PG_SCHEMA:
                await conn.execute(statement.replace("TABLE ", f"TABLE {schema}.", 1))
        ex, ev = f"{schema}.executions", f"{schema}.events"
        ins = f"INSERT INTO {ev} VALUES (%s, %s, %s, %s, now())"

        async def one(_i: int) -> None:
            eid = str(uuid.uuid4())
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"INSERT INTO {ex} VALUES (%s, 'pending', 1, %s)", (eid, rows.record_pending)
                )
                await conn.execute(ins, (eid, 1, "status", rows.status_pending))
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"UPDATE {ex} SET status = 'running', last_seq = 2, record = %s WHERE id = %s",
                    (rows.record_running, eid),
                )
                await conn.execute(ins, (eid, 2, "status", rows.status_running))
            for i, data in enumerate(rows.progress):
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute(
                        f"SELECT last_seq FROM {ex} WHERE id = %s FOR UPDATE", (eid,)
                    )
                    await conn.execute(ins, (eid, 3 + i, "progress", data))
                    await conn.execute(f"UPDATE {ex} SET last_seq = %s WHERE id = %s", (3 + i, eid))
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"UPDATE {ex} SET status = 'completed', last_seq = 9, record = %s"
                    " WHERE id = %s",
                    (rows.record_done, eid),
                )
                async with conn.cursor() as cur:
                    await cur.executemany(
                        ins, [(eid, 8, "complete", rows.complete), (eid, 9, "done", rows.done)]
                    )

        try:
            sample = await drive(one, n, concurrency)
            async with pool.connection() as conn:
                cur = await conn.execute(f"SELECT count(*) FROM {ev}")
                row = await cur.fetchone()
                count = row[0] if row else 0
        finally:
            async with pool.connection() as conn:
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if count != n * (EVENTS + 4):
        raise RuntimeError(f"raw postgres wrote {count} events, expected {n * (EVENTS + 4)}")
    return sample


class LangGraphDurable(LangGraphWorkload):
    """bench_core's graph with a durable checkpointer (``saver()`` opens a fresh one)."""

    def __init__(
        self,
        request_json: dict[str, Any],
        plan_json: dict[str, Any],
        saver: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    ) -> None:
        super().__init__(request_json, plan_json)
        self.saver = saver

    async def measure(self, n: int, concurrency: int) -> Sample:
        """N executions on a fresh graph and checkpointer."""
        async with self.saver() as saver:
            graph = self.graph()
            graph.checkpointer = saver
            return await drive(self.execution(graph), n, concurrency)


class DBOSWorkload:
    """The same work as a DBOS workflow on a SQLite system database.

    DBOS is a process-wide singleton with background threads: it is launched on a
    fresh database for each measurement and destroyed after it, so that its
    threads do not run during the other systems' measurements.
    """

    def __init__(
        self, request_json: dict[str, Any], plan_json: dict[str, Any], db: Callable[[], Path]
    ) -> None:
        from dbos import DBOS

        self.request_json = request_json
        self.db = db
        plan = plan_json
        DBOS(config=self._config())

        @DBOS.workflow()
        async def plan_workflow(request: dict[str, Any]) -> dict[str, Any]:
            for message in MESSAGES:
                await DBOS.write_stream_async("progress", {"message": message})
            return plan

        self._workflow = plan_workflow
        DBOS.destroy()  # the registration stays

    def _config(self) -> Any:
        return {"name": "planner-bench", "system_database_url": f"sqlite:///{self.db()}"}

    async def measure(self, n: int, concurrency: int) -> Sample:
        """N workflows, ``start_workflow_async`` then ``get_result``, on a fresh DBOS."""
        from dbos import DBOS

        DBOS(config=self._config())
        DBOS.launch()
        try:

            async def one(_i: int) -> None:
                handle = await DBOS.start_workflow_async(self._workflow, self.request_json)
                await handle.get_result()

            return await drive(one, n, concurrency)
        finally:
            DBOS.destroy()
            # DBOS installed its thread pool as the loop's default executor and
            # shut it down: give the loop a new one for everybody else.
            asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor())


# -- latency with a short and a long history ----------------------------------------


def _execution(strategy: str) -> Execution:
    from planner.planner import workflow_id_for

    request = sample_request(planning_strategy=strategy)
    now = utcnow()
    eid = str(uuid.uuid4())
    return Execution(
        id=eid,
        workflow_id=workflow_id_for(eid),
        request=request,
        metadata=ExecutionMetadata(planning_strategy=strategy),
        created_at=now,
        updated_at=now,
        executor="bench",
    )


async def _fill_sqlite(path: Path, execution_id: str, count: int) -> None:
    def fill() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        ts = time.time_ns() // 1000
        data = _dumps({"message": "history"})
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO planner_events VALUES (?, ?, 'progress', ?, ?)",
            ((execution_id, seq, data, ts) for seq in range(2, count + 1)),
        )
        conn.execute(
            "UPDATE planner_executions SET last_seq = ? WHERE id = ?", (count, execution_id)
        )
        conn.execute("COMMIT")
        conn.close()

    await anyio.to_thread.run_sync(fill)


async def _fill_postgres(conninfo: str, execution_id: str, count: int) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        async with conn.cursor() as cur:
            copy_sql = "COPY planner_events (execution_id, seq, type, data, ts) FROM STDIN"
            async with cur.copy(copy_sql) as copy:
                ts = datetime.now(UTC).isoformat()
                data = '{"message":"history"}'
                chunk: list[str] = []
                for seq in range(2, count + 1):
                    chunk.append(f"{execution_id}\t{seq}\tprogress\t{data}\t{ts}\n")
                    if len(chunk) == 10_000:
                        await copy.write("".join(chunk))
                        chunk.clear()
                if chunk:
                    await copy.write("".join(chunk))
            await cur.execute(
                "UPDATE planner_executions SET last_seq = %s WHERE id = %s", (count, execution_id)
            )
        await conn.commit()
        # As autovacuum would, in time: the planner's row estimates after a bulk load.
        await conn.execute("ANALYZE planner_events")
        await conn.execute("ANALYZE planner_executions")
        await conn.commit()


async def latency(
    url: str, fill: Callable[[str, int], Awaitable[None]], history: int, k: int
) -> dict[str, float]:
    """Median append and stream-from-cursor latency (ms) on a short and a long log.

    ``empty``: the short log (1 event) alone in the database.  Then ``history``
    events are written into a second execution's log, and the two are measured
    in turn: ``@1`` the short log, ``@N`` the long one.
    """
    noop = FunctionStrategy(lambda request, ctx: None, name="noop")  # never runs
    async with Planner(store=url, executor="inprocess", strategies={STRATEGY: noop}) as planner:
        store = planner.store
        short, long = _execution(STRATEGY), _execution(STRATEGY)
        for execution in (short, long):
            await store.create(execution, [NewEvent("status", {"status": "pending"})])
        last = {short.id: 1, long.id: 1}
        appends: dict[str, list[float]] = {"empty": [], "@1": [], "@N": []}
        streams: dict[str, list[float]] = {"empty": [], "@1": [], "@N": []}

        async def once(execution_id: str, key: str) -> None:
            t0 = time.perf_counter()
            (event,) = await store.append(execution_id, [NewEvent("progress", {"message": "x"})])
            appends[key].append(time.perf_counter() - t0)
            last[execution_id] += 1
            if event.seq != last[execution_id]:
                raise RuntimeError(f"appended seq {event.seq}, expected {last[execution_id]}")
            t0 = time.perf_counter()
            cursor = last[execution_id] - 1
            async with contextlib.aclosing(planner.stream(execution_id, after=cursor)) as s:
                first = await anext(s)
            streams[key].append(time.perf_counter() - t0)
            if first.seq != cursor + 1:
                raise RuntimeError(f"stream from {cursor} began at {first.seq}")

        for _ in range(k):
            await once(short.id, "empty")
        await fill(long.id, history)
        last[long.id] = history
        for _ in range(k):  # in turn, so that both share the noise
            await once(short.id, "@1")
            await once(long.id, "@N")
    out = {f"append {key}": statistics.median(v) * 1000 for key, v in appends.items()}
    out.update({f"stream {key}": statistics.median(v) * 1000 for key, v in streams.items()})
    return out


# -- the run ---------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.asynccontextmanager
async def throwaway_database(server_url: str) -> AsyncIterator[str]:
    """A fresh database on the server, dropped afterwards; yields its URL."""
    import psycopg

    name = f"planner_bench_{uuid.uuid4().hex[:10]}"
    admin = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        base, _, _ = server_url.rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (False, not an error, when its package is missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a submodule of a package that is not installed
        return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every system round after round, then the latencies; print the tables."""
    request = sample_request(planning_strategy=STRATEGY)
    plan = sample_plan(request)
    request_json = request.model_dump(mode="json")
    tmp = Path(tempfile.mkdtemp(prefix="planner-bench-"))
    counter = iter(range(1_000_000))

    def fresh(stem: str) -> Path:
        return tmp / f"{stem}-{next(counter)}.db"

    want_pg = not args.no_postgres
    have_lg_sqlite = _installed("langgraph.checkpoint.sqlite")
    have_lg_pg = _installed("langgraph.checkpoint.postgres")
    have_dbos = _installed("dbos")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" sqlite {sqlite3.sqlite_version}, langgraph {_version('langgraph')},"
        " langgraph-checkpoint-sqlite"
        f" {_version('langgraph-checkpoint-sqlite')}, langgraph-checkpoint-postgres"
        f" {_version('langgraph-checkpoint-postgres')}, dbos {_version('dbos')},"
        f" psycopg {_version('psycopg')}"
    )
    print(
        f"n={args.n} executions per measurement, concurrency {args.concurrency},"
        f" {args.rounds} rounds, files in {tmp} (removed at the end)"
    )

    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # runs last
        pg: str | None = None
        if want_pg:
            pg = await stack.enter_async_context(throwaway_database(args.pg_url))
        schemas = iter(range(1_000_000))

        def pg_url() -> str:
            assert pg is not None
            return f"{pg}?schema=bench{next(schemas)}"

        rows = RawRows(request_json, PlannerWorkload(request, plan).plan_json)
        systems: dict[str, Callable[[int, int], Awaitable[Sample]]] = {}
        planner_sqlite = StorePlanner(request, plan, lambda: f"sqlite:///{fresh('planner')}")
        systems["planner-sqlite"] = lambda n, c: planner_sqlite.measure("wait", n, c)
        if args.baseline_sqlite is not None:
            spec = importlib.util.spec_from_file_location("baseline_sqlite", args.baseline_sqlite)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            baseline = StorePlanner(
                request, plan, lambda: f"sqlite:///{fresh('baseline')}", module.SQLiteStore
            )
            systems["baseline-sqlite"] = lambda n, c: baseline.measure("wait", n, c)
        # The ceiling: the same planner on the memory store (no target; for reference).
        planner_memory = PlannerWorkload(request, plan)
        systems["planner-memory"] = lambda n, c: planner_memory.measure("wait", n, c)
        systems["raw-sqlite"] = lambda n, c: anyio.to_thread.run_sync(
            raw_sqlite_run, fresh("raw"), rows, n
        )
        if have_lg_sqlite:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            lg_sqlite = LangGraphDurable(
                request_json,
                planner_sqlite.plan_json,
                lambda: AsyncSqliteSaver.from_conn_string(str(fresh("langgraph"))),
            )
            systems["langgraph-sqlite"] = lg_sqlite.measure
        if have_dbos:
            dbos = DBOSWorkload(request_json, planner_sqlite.plan_json, lambda: fresh("dbos"))
            systems["dbos-sqlite"] = dbos.measure
        if pg is not None:
            planner_pg = StorePlanner(request, plan, pg_url)
            systems["planner-postgres"] = lambda n, c: planner_pg.measure("wait", n, c)
            pg_conninfo = pg
            systems["raw-postgres"] = lambda n, c: raw_postgres_run(pg_conninfo, rows, n, c)
            if have_lg_pg:
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
                from psycopg_pool import AsyncConnectionPool

                @contextlib.asynccontextmanager
                async def pg_saver() -> AsyncIterator[Any]:
                    schema = f"lg{uuid.uuid4().hex[:8]}"
                    import psycopg

                    async with await psycopg.AsyncConnection.connect(
                        pg_conninfo, autocommit=True
                    ) as admin:
                        await admin.execute(f"CREATE SCHEMA {schema}")
                    try:
                        async with AsyncConnectionPool(
                            f"{pg_conninfo}?options=-csearch_path%3D{schema}",
                            max_size=10,
                            kwargs={"autocommit": True, "prepare_threshold": 0},
                            open=False,
                        ) as pool:
                            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
                            await saver.setup()
                            yield saver
                    finally:
                        async with await psycopg.AsyncConnection.connect(
                            pg_conninfo, autocommit=True
                        ) as admin:
                            await admin.execute(f"DROP SCHEMA {schema} CASCADE")

                lg_pg = LangGraphDurable(request_json, planner_sqlite.plan_json, pg_saver)
                systems["langgraph-postgres"] = lg_pg.measure
        if args.only:
            keep = set(args.only.split(","))
            systems = {k: v for k, v in systems.items() if k in keep}

        print(f"streaming check, planner on sqlite: {await planner_sqlite.check()}")
        if args.profile:
            return await profile(systems, args)
        names = list(systems)
        for name in names:  # warm up
            await systems[name](max(20, args.n // 10), args.concurrency)
        series = {name: Series(name, args.concurrency) for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                before = time.process_time()
                series[name].samples.append(await systems[name](args.n, args.concurrency))
                cpu[name].append((time.process_time() - before) / args.n)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)

        print()
        # cpu ms/exec: this process's CPU time (all its threads) per execution; the
        # PostgreSQL server's own work is not in it.  Steadier than exec/s on a busy host.
        print(
            f"{'system':<20} {'conc':>4} {'exec/s':>9} {'spread':>7} {'p50 ms':>8} {'p95 ms':>8}"
            f" {'cpu ms/exec':>12}"
        )
        print("-" * 73)
        for name in names:
            s = series[name]
            print(
                f"{name:<20} {args.concurrency:>4} {s.rate:>9.0f} {s.spread:>6.0%}"
                f" {s.latency(50) * 1000:>8.2f} {s.latency(95) * 1000:>8.2f}"
                f" {statistics.median(cpu[name]) * 1000:>12.3f}"
            )
        rates = {name: s.rate for name, s in series.items()}
        result: dict[str, Any] = {
            "date": datetime.now(UTC).date().isoformat(),
            "python": platform.python_version(),
            "n": args.n,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "executions_per_second": rates,
            "cpu_ms_per_execution": {k: statistics.median(v) * 1000 for k, v in cpu.items()},
        }
        print("\ntargets: planner >= 0.5 x raw floor, planner >= 3 x best peer")
        verdicts: dict[str, Any] = {}
        for db in ("sqlite", "postgres"):
            ours = rates.get(f"planner-{db}")
            if ours is None:
                continue
            raw = rates.get(f"raw-{db}")
            peers = {
                k: v
                for k, v in rates.items()
                if k.endswith(db) and k.split("-")[0] in ("langgraph", "dbos")
            }
            line = f"  {db:<8}"
            if raw:
                ratio = ours / raw
                verdicts[f"{db}/raw"] = ratio
                line += f" planner/raw {ratio:5.2f}x ({'MET' if ratio >= 0.5 else 'NOT MET'})"
            if peers:
                best = max(peers, key=lambda k: peers[k])
                ratio = ours / peers[best]
                verdicts[f"{db}/peer"] = ratio
                line += (
                    f"   planner/best peer ({best}) {ratio:5.2f}x"
                    f" ({'MET' if ratio >= 3 else 'NOT MET'})"
                )
            print(line)
        result["ratios"] = verdicts

        if args.history > 0:
            print(
                f"\nlatency (median of {args.latency_k}, ms), with 1 and {args.history:,}"
                " events already stored in the execution's log"
            )
            keys = [f"{op} {key}" for op in ("append", "stream") for key in ("empty", "@1", "@N")]
            print("empty: the short log alone in the database; @1: the short log and @N: the")
            print("long log, measured in turn once the long one holds N events")
            print(f"{'store':<10}" + "".join(f" {key:>13}" for key in keys))
            lat: dict[str, dict[str, float]] = {}
            lat_path = fresh("latency")

            async def fill_sqlite(eid: str, count: int) -> None:
                await _fill_sqlite(lat_path, eid, count)

            t0 = time.perf_counter()
            lat["sqlite"] = await latency(
                f"sqlite:///{lat_path}", fill_sqlite, args.history, args.latency_k
            )
            if pg is not None:
                pg_lat = pg_url()
                schema = pg_lat.rpartition("schema=")[2]
                conninfo = f"{pg}?options=-csearch_path%3D{schema}"

                async def fill_pg(eid: str, count: int) -> None:
                    await _fill_postgres(conninfo, eid, count)

                lat["postgres"] = await latency(pg_lat, fill_pg, args.history, args.latency_k)
            for db, figures in lat.items():
                print(f"{db:<10}" + "".join(f" {figures[key]:>13.3f}" for key in keys))
            print(f"(latency part took {time.perf_counter() - t0:.0f} s)")
            result["latency_ms"] = lat
    return result


async def profile(
    systems: dict[str, Callable[[int, int], Awaitable[Sample]]], args: argparse.Namespace
) -> dict[str, Any]:
    """cProfile the first selected system at --concurrency; print the hotspots."""
    name = next(iter(systems))
    await systems[name](max(20, args.n // 10), args.concurrency)
    prof = cProfile.Profile()
    prof.enable()
    sample = await systems[name](args.n, args.concurrency)
    prof.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(order).print_stats(30)
        print(out.getvalue())
    print(f"profiled {name}: {sample.rate:.0f}/s under the profiler")
    return {}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=500, help="executions per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per system")
    parser.add_argument("--concurrency", type=int, default=50, help="executions in flight")
    parser.add_argument(
        "--history",
        type=int,
        default=1_000_000,
        help="events stored before the latency part (0: skip it)",
    )
    parser.add_argument("--latency-k", type=int, default=200, help="latency samples")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="the PostgreSQL server")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--only", help="comma-separated systems to measure")
    parser.add_argument(
        "--baseline-sqlite",
        type=Path,
        help="also measure the SQLiteStore of this file, as baseline-sqlite (e.g. the"
        " committed version: git show HEAD:planner/backends/stores/sqlite.py > /tmp/old.py)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first system")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.n, args.rounds, args.concurrency, args.latency_k) < 1:
        parser.error("--n, --rounds, --concurrency and --latency-k must be at least 1")
    result = asyncio.run(run(args))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
