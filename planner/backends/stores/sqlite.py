"""The SQLite store (``sqlite:///path.db``): executions and their events in one file.

Built on the standard library's :mod:`sqlite3`, nothing to install.  The file is
in WAL mode, so readers never wait for the writer; no query runs on an event
loop's thread, so the loop never waits for the disk.  Each store object has a
writer thread, which takes every write queued at that moment and commits them
together in one transaction (group commit: one thread hop and one commit serve
many concurrent writers), and a reader thread, which runs the queued reads one
after the other.  Event loops in any thread may call the store.  Across
processes each transaction is ``BEGIN IMMEDIATE``: it waits for the file's write
lock (the busy timeout) and is retried while the file is busy, so several
processes can share one file.

Streams are woken without polling by writes made in this process (through any
store object on the same file); writes made by other processes are seen by
polling every :attr:`SQLiteStore.poll_interval` seconds while a stream waits.

The schema is versioned: :meth:`SQLiteStore.setup` applies the migrations the
file lacks and records each in the ``planner_schema_version`` table.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread

from planner._notify import Notifier
from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    SchemaVersionError,
)
from planner.events import Event, trusted_event
from planner.execution import Execution, ExecutionStatus, utcnow
from planner.interfaces import NewEvent, Store
from planner.store_helpers import claim_changes, claim_events, lease_claimable, update_changes

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "executions and their event logs",
        (
            # ``pos`` is the creation (commit) order: list() pages by it.  The
            # record column holds the whole Execution as JSON; the other columns
            # copy the fields that queries filter on.
            """CREATE TABLE planner_executions (
                pos INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL,
                organization_id TEXT,
                idempotency_key TEXT,
                executor TEXT NOT NULL,
                strategy TEXT,
                lease_owner TEXT,
                lease_expires_us INTEGER,
                created_us INTEGER NOT NULL,
                last_seq INTEGER NOT NULL DEFAULT 0,
                closed INTEGER NOT NULL DEFAULT 0,
                record TEXT NOT NULL
            )""",
            "CREATE INDEX planner_executions_status ON planner_executions (status, pos)",
            "CREATE INDEX planner_executions_org ON planner_executions (organization_id, pos)",
            """CREATE INDEX planner_executions_key ON planner_executions (idempotency_key)
                WHERE idempotency_key IS NOT NULL""",
            """CREATE INDEX planner_executions_lease
                ON planner_executions (executor, lease_expires_us)
                WHERE status IN ('pending', 'running')""",
            """CREATE TABLE planner_events (
                execution_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                type TEXT NOT NULL,
                data TEXT NOT NULL,
                ts_us INTEGER NOT NULL,
                PRIMARY KEY (execution_id, seq)
            )""",
        ),
    ),
)
"""``(version, description, statements)``, applied in order, each in the setup transaction."""

SCHEMA_VERSION: int = MIGRATIONS[-1][0]
"""The schema version this code writes and reads."""

_SELECT = "SELECT record, strategy FROM planner_executions"
_INSERT_EVENTS = "INSERT INTO planner_events VALUES (?, ?, ?, ?, ?)"
_APPEND = (
    "UPDATE planner_executions SET last_seq = last_seq + ?, closed = ?"
    " WHERE id = ? AND closed = 0 RETURNING last_seq"
)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
"""``UPDATE ... RETURNING`` is available (SQLite 3.35 and later)."""


# Store objects on the same file in one process share their wake-ups: a write
# through one wakes the streams waiting on another without a poll.
class _Wakeups(NamedTuple):
    """The wake-ups of one file in this process, shared by its store objects."""

    appends: Notifier  # by execution id, on every write with events
    seen: dict[str, int]  # the last seq written here, per execution
    finals: Notifier  # by execution id, when a write here makes the record final
    finished: set[str]  # the executions made final here


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, _Wakeups] = {}


def _shared(path: Path) -> _Wakeups:
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, _Wakeups(Notifier(), {}, Notifier(), set()))


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _indexed(execution: Execution) -> tuple[Any, ...]:
    """The columns beside the record, for queries: ``status`` to ``created_us``, in table order."""
    return (
        execution.status.value,
        execution.organization_id,
        execution.idempotency_key,
        execution.executor,
        execution.request.planning_strategy,
        execution.lease_owner,
        _us(execution.lease_expires_at) if execution.lease_expires_at else None,
        _us(execution.created_at),
    )


def _when(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_MAX_BATCH = 256
"""The most jobs a lane thread takes at once (writes: transactions committed together)."""

_READ_CHUNK = 1000
"""Events one read takes on the reader thread; a longer log is read on in a worker thread."""

# A job for a lane thread: the query or transaction body, the caller's future and
# the loop that owns it.
_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Resolve the callers' futures (on their own loop)."""
    for future, ok, value in outcomes:
        if future.done():  # the caller was cancelled; what the job did stands
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Redo(Exception):
    """One write of a batch failed: roll the transaction back and run the others again."""


class _Lane:
    """A thread that runs the jobs event loops queue for it, a batch at a time.

    ``run`` gets every job queued at that moment (up to :data:`_MAX_BATCH`)
    and returns one ``(ok, result or exception)`` per job; each caller's future
    is then resolved on its own loop, one hand-off per loop and batch.
    """

    def __init__(
        self, name: str, run: Callable[[builtins.list[_Job]], builtins.list[tuple[bool, Any]]]
    ) -> None:
        self._name = name
        self._run = run
        self._jobs: queue.SimpleQueue[builtins.list[_Job] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        _LANES.add(self)

    def _forget(self) -> None:
        # In a forked child the thread does not exist: the next job starts one.
        self._jobs = queue.SimpleQueue()
        self._thread = None

    def submit(self, jobs: builtins.list[_Job]) -> None:
        """Queue jobs, starting the thread if needed (call under the store's lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put(jobs)

    def stop(self) -> threading.Thread | None:
        """Let the thread end after the jobs queued so far (call under the store's lock)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
        return thread

    def _main(self) -> None:
        jobs = self._jobs
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = builtins.list(first)
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            try:
                outcomes = self._run(batch)
            except BaseException as exc:  # never leave a caller waiting
                outcomes = [(False, exc)] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
            by_loop = {}
            for (_fn, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, ok, value))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass
            if stop:
                return


def _not_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


_LANES: weakref.WeakSet[_Lane] = weakref.WeakSet()


def _forget_lanes() -> None:
    for lane in builtins.list(_LANES):
        lane._forget()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_lanes)


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Event data as compact JSON (one encoder for every event: ``json.dumps`` with
options builds a new one per call)."""

_PARSED_MAX = 4096
"""How many records (by their JSON text) the store keeps parsed."""


def _parse(row: tuple[str, str | None]) -> Execution:
    record, strategy = row
    # The strategy name was valid when the record was made; a plugin that is not
    # installed in this process must not make the record unreadable.
    context = {"strategies": {strategy}} if strategy else None
    return Execution.model_validate_json(record, context=context)


def _path_from_url(url: str) -> tuple[str, dict[str, str]]:
    if not url.startswith("sqlite:///"):
        raise ValueError(
            f"not a SQLite store URL: {url!r} (expected 'sqlite:///relative/path.db'"
            " or 'sqlite:////absolute/path.db')"
        )
    rest = url[len("sqlite:///") :]
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError(f"the SQLite store URL {url!r} names no file")
    if path == ":memory:" or path.startswith("file:"):
        raise ValueError(
            f"{url!r}: the SQLite store needs a file (it is shared by threads and"
            " processes); use 'memory://' for an in-memory store"
        )
    return path, dict(parse_qsl(query, keep_blank_values=True))


def _seconds(name: str, given: float | None, query: dict[str, str], default: float) -> float:
    value: object = given if given is not None else query.get(name, default)
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"SQLite store option {name} must be a number, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"SQLite store option {name} must be positive, got {value!r}")
    return seconds


class SQLiteStore(Store):
    """Executions and events in a SQLite file.

    Args:
        url: ``sqlite:///path.db`` (relative to the working directory) or
            ``sqlite:////abs/path.db``; ``~`` is expanded and missing parent
            directories are created.  Options may follow as a query:
            ``sqlite:///planner.db?poll_interval=0.2&busy_timeout=10``.
            ``sqlite:///:memory:`` is refused: use ``memory://``.
        poll_interval: seconds between reads while a stream waits for events
            written by another process (writes in this process wake it at once).
        busy_timeout: seconds a write waits for another process's write lock
            before it fails.
        migrate: apply missing migrations in :meth:`setup`; when False, setup
            refuses a file whose schema is not current.

    Raises:
        ValueError: not a SQLite URL, or an in-memory database.
    """

    thread_safe = True
    """Event loops in any thread may call one store object (the thread-pool executor's do)."""

    def __init__(
        self,
        url: str = "sqlite:///planner.db",
        *,
        poll_interval: float | None = None,
        busy_timeout: float | None = None,
        migrate: bool | None = None,
    ) -> None:
        path, query = _path_from_url(url)
        unknown = set(query) - {"poll_interval", "busy_timeout", "migrate"}
        if unknown:
            raise ValueError(f"unknown SQLite store option(s) in {url!r}: {sorted(unknown)}")
        self.url = url
        self.path = Path(path).expanduser()
        self.poll_interval = _seconds("poll_interval", poll_interval, query, 0.5)
        self.busy_timeout = _seconds("busy_timeout", busy_timeout, query, 30.0)
        self.migrate = (
            migrate
            if migrate is not None
            else query.get("migrate", "true").lower() not in ("0", "false", "no")
        )
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        # Writes from event loops go to one writer thread, which commits the
        # transactions of concurrent writers together (group commit).
        # Reads from event loops go to one reader thread, likewise a batch at a time.
        self._write_lane = _Lane(f"planner-sqlite-writer {self.path}", self._commit_batch)
        self._read_lane = _Lane(f"planner-sqlite-reader {self.path}", self._read_batch)
        self._lane_reader: sqlite3.Connection | None = None
        # The event rows of the transaction in progress (under the write lock).
        self._event_rows: builtins.list[tuple[str, int, str, str, int]] = []
        # Records by their JSON text, parsed (reads of unchanged records skip the parse).
        self._parsed: dict[str, Execution] = {}
        self._thread_lock = threading.Lock()
        # Jobs queued by each loop in this iteration, per lane (see _on_lane).
        self._outbox: dict[tuple[_Lane, asyncio.AbstractEventLoop], builtins.list[_Job]] = {}
        self._stopping = False  # close() has begun: no new writes
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._ready = False
        self._closed = False
        # Set up by setup(): the wake-ups of this file in this process, and the
        # last seq written per execution here (waiters check it without a query).
        self._notifier = Notifier()
        self._seen: dict[str, int] = {}
        self._finals = Notifier()
        self._finished: set[str] = set()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- connections and transactions (worker threads only) -------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=False,  # used by one thread at a time, from a pool
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the
        # last transactions, a killed process loses nothing.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` again while the file is busy, up to the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)  # a worker thread: the event loop is not blocked
            delay = min(delay * 2, 0.05)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on the writer connection."""
        with self._write_lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            if self._writer is None:
                self._writer = self._connect()
            conn = self._writer

            rows = self._event_rows

            def attempt() -> T:
                rows.clear()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    if rows:  # the transaction's events, in one statement
                        conn.executemany(_INSERT_EVENTS, rows)
                        rows.clear()
                    conn.execute("COMMIT")
                except BaseException:
                    rows.clear()
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

            return self._retrying(attempt)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader connection (WAL: it never waits for writers)."""
        with self._pool_lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self._connect()
        try:
            return self._retrying(lambda: fn(conn))
        finally:
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._readers.append(conn)

    async def _on_lane(self, lane: _Lane, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed or self._stopping:
            raise RuntimeError(f"{self!r} is closed")
        # The jobs of one loop iteration go to the lane together, at its end:
        # the lane thread wakes once for them, when this loop is about to wait.
        key = (lane, loop)
        box = self._outbox.get(key)
        if box is None:
            box = self._outbox[key] = []
            loop.call_soon(self._flush, key)
        box.append((fn, future, loop))
        # A cancelled caller stops waiting; its job still runs, in queue order
        # (a write queued before a later write of this process commits first).
        return await future

    def _flush(self, key: tuple[_Lane, asyncio.AbstractEventLoop]) -> None:
        jobs = self._outbox.pop(key)
        with self._thread_lock:
            if not (self._closed or self._stopping):
                key[0].submit(jobs)
                return
        _settle([(future, False, RuntimeError(f"{self!r} is closed")) for _, future, _ in jobs])

    async def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; wait for its commit."""
        if _not_asyncio():  # trio through anyio: a worker thread per write
            return await anyio.to_thread.run_sync(self._write, fn)
        return await self._on_lane(self._write_lane, fn)

    def _commit_batch(self, batch: builtins.list[_Job]) -> builtins.list[tuple[bool, Any]]:
        """Run the writes in one transaction and commit once (group commit).

        A write that raises (a finished execution, a lost lease) answers with
        its exception and leaves no trace: the transaction is rolled back and
        the other writes of the batch run again without it.  Each write is a
        function of the database alone, so running it again is safe.
        """
        failed: dict[int, Exception] = {}
        results: dict[int, Any] = {}

        def body(conn: sqlite3.Connection) -> None:
            results.clear()  # a retried transaction runs every write again
            for i, (fn, _future, _loop) in enumerate(batch):
                if i in failed:
                    continue
                try:
                    results[i] = fn(conn)
                except Exception as exc:
                    failed[i] = exc
                    raise _Redo from None

        while len(failed) < len(batch):
            try:
                self._write(body)
            except _Redo:
                continue  # rolled back: again, without the write that failed
            except Exception as exc:  # the transaction failed as a whole
                return [(False, failed.get(i, exc)) for i in range(len(batch))]
            break
        return [
            (True, results[i]) if i in results else (False, failed[i]) for i in range(len(batch))
        ]

    async def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader thread (WAL: it never waits for writers)."""
        if _not_asyncio():  # trio through anyio: a worker thread per read
            return await anyio.to_thread.run_sync(self._read, fn)
        return await self._on_lane(self._read_lane, fn)

    def _read_batch(self, batch: builtins.list[_Job]) -> builtins.list[tuple[bool, Any]]:
        """The reader thread: run each read on its own connection, one after the other."""
        with self._pool_lock:
            if self._closed:
                return [(False, RuntimeError(f"{self!r} is closed"))] * len(batch)
            conn = self._lane_reader
        if conn is None:
            try:
                conn = self._lane_reader = self._connect()
            except Exception as exc:
                return [(False, exc)] * len(batch)
        outcomes: builtins.list[tuple[bool, Any]] = []
        for fn, _future, _loop in batch:
            try:
                outcomes.append((True, self._retrying(functools.partial(fn, conn))))
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                outcomes.append((False, exc))
        return outcomes

    def _saw(self, execution_id: str, last_seq: int) -> None:
        if len(self._seen) > 100_000:  # bounded; a forgotten id only costs a poll
            self._seen.clear()
        self._seen[execution_id] = last_seq

    # -- setup ---------------------------------------------------------------

    async def setup(self) -> None:
        """Open the file (creating it and its directory), switch to WAL, migrate.

        Raises:
            SchemaVersionError: the file's schema is newer than this code, or
                outdated and ``migrate`` is False.
        """
        if not self._ready:
            await anyio.to_thread.run_sync(self._setup)

    def _setup(self) -> None:
        self._closed = False
        self._stopping = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._notifier, self._seen, self._finals, self._finished = _shared(self.path)
        with self._write_lock:
            if self._writer is None:
                self._writer = self._connect()
            conn = self._writer
            # Only takes effect on a file without tables: a new one.
            self._retrying(lambda: conn.execute("PRAGMA auto_vacuum = INCREMENTAL"))
            mode = self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if str(mode[0]).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot use WAL mode (journal mode is {mode[0]})")
        self._write(self._migrate)
        self._ready = True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS planner_schema_version"
            " (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        (current,) = conn.execute(
            "SELECT coalesce(max(version), 0) FROM planner_schema_version"
        ).fetchone()
        if current > SCHEMA_VERSION or (current < SCHEMA_VERSION and not self.migrate):
            raise SchemaVersionError(str(self.path), current, SCHEMA_VERSION)
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO planner_schema_version VALUES (?, ?, ?)",
                (version, description, utcnow().isoformat()),
            )

    async def schema_version(self) -> int:
        """Return the schema version recorded in the file (0 for a file without one)."""

        def query(conn: sqlite3.Connection) -> int:
            try:
                row = conn.execute("SELECT max(version) FROM planner_schema_version").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return 0
                raise
            return int(row[0] or 0)

        return await self._run_read(query)

    async def close(self) -> None:
        """Close every connection. Idempotent; :meth:`setup` opens the store again."""
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._thread_lock:
            self._stopping = True
            # Each lane ends after the jobs already queued.
            threads = [self._write_lane.stop(), self._read_lane.stop()]
        for thread in threads:
            if thread is not None:
                thread.join()
        with self._write_lock, self._pool_lock:
            self._closed = True
            self._ready = False
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._lane_reader is not None:
                self._readers.append(self._lane_reader)
                self._lane_reader = None
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- writing helpers (inside a transaction) --------------------------------

    def _load(self, row: tuple[str, str | None]) -> Execution:
        """Parse a stored record, or reuse what the same text was parsed to before.

        Executions are immutable, and equal text always parses to an equal
        one, so a record read again unchanged (the common case: every poll of
        a running execution) costs a dictionary lookup instead of a parse.
        """
        execution = self._parsed.get(row[0])
        if execution is None:
            execution = _parse(row)
            self._remember(row[0], execution)
        return execution

    def _remember(self, record: str, execution: Execution) -> None:
        """Keep ``execution`` as the parse of ``record`` (bounded: at most :data:`_PARSED_MAX`).

        A record this process writes is remembered with the execution it was
        dumped from, so reading it back (the common case: a caller's ``get``
        right after an update) costs no parse either.
        """
        parsed = self._parsed
        if len(parsed) >= _PARSED_MAX:
            parsed.clear()
        parsed[record] = execution

    def _row(self, conn: sqlite3.Connection, execution_id: str) -> tuple[Execution, int, bool]:
        row = conn.execute(
            "SELECT record, strategy, last_seq, closed FROM planner_executions WHERE id = ?",
            (execution_id,),
        ).fetchone()
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return self._load((row[0], row[1])), row[2], bool(row[3])

    def _insert_events(
        self,
        conn: sqlite3.Connection,
        execution_id: str,
        last_seq: int,
        events: Iterable[NewEvent],
        now: datetime,
    ) -> tuple[list[Event], bool]:
        """Number the events; their rows are inserted just before the commit.

        Writes in one transaction never read the event table, so the rows of
        every write of a group commit go in with one statement.
        """
        ts = _us(now)
        out: list[Event] = []
        rows = self._event_rows
        closed = False
        seq = last_seq
        for type_, data in events:
            seq += 1
            rows.append(
                (
                    execution_id,
                    seq,
                    type_,
                    _dumps(data),
                    ts,
                )
            )
            out.append(trusted_event(execution_id, seq, type_, data, now))
            closed = closed or type_ == "done"
        return out, closed

    def _save(
        self, conn: sqlite3.Connection, execution: Execution, last_seq: int, closed: bool
    ) -> None:
        record = execution.model_dump_json()
        self._remember(record, execution)
        conn.execute(
            "UPDATE planner_executions SET status = ?, organization_id = ?, idempotency_key = ?,"
            " executor = ?, strategy = ?, lease_owner = ?, lease_expires_us = ?, created_us = ?,"
            " last_seq = ?, closed = ?, record = ? WHERE id = ?",
            (*_indexed(execution), last_seq, int(closed), record, execution.id),
        )

    # -- the Store API -----------------------------------------------------------

    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution with its first events (see :meth:`Store.create`)."""
        record = execution.model_dump_json()

        def tx(conn: sqlite3.Connection) -> tuple[Execution, bool, int]:
            if execution.idempotency_key is not None:
                row = conn.execute(
                    f"{_SELECT} WHERE idempotency_key = ? AND organization_id IS ?",
                    (execution.idempotency_key, execution.organization_id),
                ).fetchone()
                if row is not None:
                    return self._load(row), False, 0
            try:
                conn.execute(
                    "INSERT INTO planner_executions (id, status, organization_id,"
                    " idempotency_key, executor, strategy, lease_owner, lease_expires_us,"
                    " created_us, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (execution.id, *_indexed(execution), record),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"an execution with id {execution.id!r} exists") from None
            self._remember(record, execution)
            out, closed = self._insert_events(conn, execution.id, 0, events, execution.created_at)
            if out:
                conn.execute(
                    "UPDATE planner_executions SET last_seq = ?, closed = ? WHERE id = ?",
                    (len(out), int(closed), execution.id),
                )
            return execution, True, len(out)

        stored, created, appended = await self._run_write(tx)
        if appended:
            self._saw(execution.id, appended)
            self._notifier.notify(execution.id)
        return stored, created

    async def get(self, execution_id: str) -> Execution:
        """Return the execution (see :meth:`Store.get`)."""

        def query(conn: sqlite3.Connection) -> tuple[str, str | None] | None:
            row: tuple[str, str | None] | None = conn.execute(
                f"{_SELECT} WHERE id = ?", (execution_id,)
            ).fetchone()
            return row

        row = await self._run_read(query)
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return self._load(row)

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first (see :meth:`Store.list`)."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(ExecutionStatus(status).value)
        if organization_id is not None:
            where.append("organization_id = ?")
            params.append(organization_id)
        if before is not None:
            where.append("pos < (SELECT pos FROM planner_executions WHERE id = ?)")
            params.append(before)
        sql = (
            f"{_SELECT}{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY pos DESC LIMIT ?"
        )
        params.append(limit)

        def query(conn: sqlite3.Connection) -> builtins.list[tuple[str, str | None]] | None:
            conn.execute("BEGIN")  # one snapshot for the cursor check and the page
            try:
                if before is not None and (
                    conn.execute(
                        "SELECT 1 FROM planner_executions WHERE id = ?", (before,)
                    ).fetchone()
                    is None
                ):
                    return None
                rows: builtins.list[tuple[str, str | None]] = conn.execute(sql, params).fetchall()
                return rows
            finally:
                conn.execute("COMMIT")

        if limit > _READ_CHUNK:  # a long page: in a worker thread, not the reader thread
            rows = await anyio.to_thread.run_sync(self._read, query)
        else:
            rows = await self._run_read(query)
        if rows is None:
            raise ExecutionNotFoundError(str(before))
        return [self._load(row) for row in rows]

    async def update(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus | None = None,
        events: Sequence[NewEvent] = (),
        owner: str | None = None,
        **changes: Any,
    ) -> Execution:
        """Change a record and append events atomically (see :meth:`Store.update`)."""
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> tuple[Execution, int]:
            current, last_seq, closed = self._row(conn, execution_id)
            fields = update_changes(
                current, changes, status=status, owner=owner, closed=closed, events=events, now=now
            )
            updated = current.model_copy(update=fields)
            out, now_closed = self._insert_events(conn, execution_id, last_seq, events, now)
            self._save(conn, updated, last_seq + len(out), closed or now_closed)
            return updated, last_seq + len(out)

        updated, last = await self._run_write(tx)
        if events:
            self._saw(execution_id, last)
            self._notifier.notify(execution_id)
        if status is not None and updated.terminal:  # a transition: it was not final before
            if len(self._finished) > 100_000:  # bounded; a forgotten id only costs a poll
                self._finished.clear()
            self._finished.add(execution_id)
            self._finals.notify(execution_id)
        return updated

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events with consecutive ``seq`` numbers (see :meth:`Store.append`)."""
        now = utcnow()
        count = len(events)
        closes = int(any(type_ == "done" for type_, _ in events))

        def tx(conn: sqlite3.Connection) -> builtins.list[Event]:
            if count and _RETURNING:
                # The common case in one statement: the log is open, number the events.
                numbered = conn.execute(_APPEND, (count, closes, execution_id)).fetchall()
                if numbered:
                    new_last = numbered[0][0]
                    return self._insert_events(conn, execution_id, new_last - count, events, now)[0]
            # No such execution, a finished one, or nothing to append: check and say which.
            row = conn.execute(
                "SELECT last_seq, closed, status FROM planner_executions WHERE id = ?",
                (execution_id,),
            ).fetchone()
            if row is None:
                raise ExecutionNotFoundError(execution_id)
            last_seq, closed, current = row
            if closed and events:
                raise ExecutionFinishedError(execution_id, ExecutionStatus(current))
            out, now_closed = self._insert_events(conn, execution_id, last_seq, events, now)
            if out:
                conn.execute(
                    "UPDATE planner_executions SET last_seq = ?, closed = ? WHERE id = ?",
                    (last_seq + len(out), int(closed or now_closed), execution_id),
                )
            return out

        out = await self._run_write(tx)
        if out:
            self._saw(execution_id, out[-1].seq)
        self._notifier.notify(execution_id)
        return out

    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Return the events with ``seq > after`` (see :meth:`Store.read`)."""
        Rows = builtins.list[tuple[int, str, str, int]]

        def query(conn: sqlite3.Connection, after: int, limit: int | None) -> Rows | None:
            rows: Rows = conn.execute(
                "SELECT seq, type, data, ts_us FROM planner_events"
                " WHERE execution_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (execution_id, after, -1 if limit is None else limit),
            ).fetchall()
            if not rows and (
                conn.execute(
                    "SELECT 1 FROM planner_executions WHERE id = ?", (execution_id,)
                ).fetchone()
                is None
            ):
                return None
            return rows

        # The reader thread serves every stream of the process: it reads at most
        # a chunk, and a worker thread reads on from there (events are only ever
        # appended, so the two reads join without a gap).
        chunk = _READ_CHUNK if limit is None else min(limit, _READ_CHUNK)
        rows = await self._run_read(lambda conn: query(conn, after, chunk))
        if rows is None:
            raise ExecutionNotFoundError(execution_id)
        if len(rows) == chunk and (limit is None or limit > chunk):
            rest = await anyio.to_thread.run_sync(
                self._read,
                lambda conn: query(conn, rows[-1][0], None if limit is None else limit - chunk),
            )
            rows.extend(rest or ())
        loads = json.loads
        return [
            trusted_event(execution_id, seq, type_, loads(data), _when(ts))
            for seq, type_, data, ts in rows
        ]

    async def _last_seq(self, execution_id: str) -> int:
        def query(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT last_seq FROM planner_executions WHERE id = ?", (execution_id,)
            ).fetchone()
            return None if row is None else int(row[0])

        last = await self._run_read(query)
        if last is None:
            raise ExecutionNotFoundError(execution_id)
        return last

    async def wait(self, execution_id: str, after: int, timeout: float) -> bool:
        """Wait for an event with ``seq > after``.

        Appends made in this process wake the waiter at once; appends made by
        other processes are found by a read every ``poll_interval`` seconds.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        deadline = time.monotonic() + timeout
        seen = self._seen
        known = seen.get(execution_id)
        if known is not None and known > after:
            return True
        # When this process writes the log, its last seq is known here and the
        # first read is skipped; otherwise (or after each poll interval) read it.
        must_read = known is None
        while True:
            if must_read and await self._last_seq(execution_id) > after:
                return True
            must_read = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if await self._notifier.wait(
                execution_id,
                lambda: seen.get(execution_id, 0) > after,
                min(remaining, self.poll_interval),
            ):
                return True

    async def wait_terminal(self, execution_id: str, timeout: float) -> Execution:
        """Wait until the record is final, at most ``timeout`` seconds.

        A final update made in this process wakes the waiter once (not for each
        event); one made by another process is found by a read of the record
        every ``poll_interval`` seconds.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        deadline = time.monotonic() + timeout
        finished = self._finished
        while True:
            execution = await self.get(execution_id)
            remaining = deadline - time.monotonic()
            if execution.terminal or remaining <= 0:
                return execution
            await self._finals.wait(
                execution_id,
                lambda: execution_id in finished,
                min(remaining, self.poll_interval),
            )

    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Take the lease and start an attempt (see :meth:`Store.claim`)."""
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> tuple[Execution | None, int]:
            current, last_seq, closed = self._row(conn, execution_id)
            if not lease_claimable(current, owner, now):
                return None, last_seq
            claimed = current.model_copy(update=claim_changes(current, owner, ttl, now))
            out, now_closed = self._insert_events(
                conn, execution_id, last_seq, claim_events(claimed), now
            )
            self._save(conn, claimed, last_seq + len(out), closed or now_closed)
            return claimed, last_seq + len(out)

        claimed, last = await self._run_write(tx)
        if claimed is not None:
            self._saw(execution_id, last)
            self._notifier.notify(execution_id)
        return claimed

    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Extend the lease (see :meth:`Store.renew`)."""

        def tx(conn: sqlite3.Connection) -> Execution | None:
            try:
                current, last_seq, closed = self._row(conn, execution_id)
            except ExecutionNotFoundError:
                return None
            if current.terminal or current.lease_owner != owner:
                return None
            renewed = current.model_copy(
                update={"lease_expires_at": utcnow() + timedelta(seconds=ttl)}
            )
            self._save(conn, renewed, last_seq, closed)
            return renewed

        return await self._run_write(tx)

    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Return unfinished executions of these kinds with an expired lease."""
        kinds = builtins.list(executors)
        if not kinds:
            return []
        now = _us(utcnow())
        marks = ", ".join("?" * len(kinds))
        sql = (
            f"{_SELECT} WHERE status IN ('pending', 'running') AND executor IN ({marks})"
            " AND (lease_expires_us IS NULL OR lease_expires_us <= ?) ORDER BY pos LIMIT ?"
        )

        def query(conn: sqlite3.Connection) -> builtins.list[tuple[str, str | None]]:
            rows: builtins.list[tuple[str, str | None]] = conn.execute(
                sql, (*kinds, now, limit)
            ).fetchall()
            return rows

        load = self._load
        return [load(row) for row in await self._run_read(query)]

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Delete finished executions older than ``older_than`` or beyond the newest ``keep``.

        The freed pages are returned to the file system (incremental vacuum and
        a WAL checkpoint), so the file shrinks.
        """
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> builtins.list[str]:
            finished = conn.execute(
                "SELECT id, created_us FROM planner_executions"
                " WHERE status IN ('completed', 'failed', 'cancelled') ORDER BY pos"
            ).fetchall()
            doomed: set[str] = set()
            if older_than is not None:
                limit = _us(now - older_than)
                doomed.update(i for i, created in finished if created < limit)
            if keep is not None:
                doomed.update(i for i, _ in finished[: max(len(finished) - keep, 0)])
            rows = [(i,) for i in doomed]
            conn.executemany("DELETE FROM planner_events WHERE execution_id = ?", rows)
            conn.executemany("DELETE FROM planner_executions WHERE id = ?", rows)
            return builtins.list(doomed)

        def prune_and_shrink() -> builtins.list[str]:
            doomed = self._write(tx)
            if doomed:
                with self._write_lock:
                    conn = self._writer
                    if conn is not None:
                        # executescript steps the pragma to the end; execute() would
                        # free one page per call.
                        self._retrying(lambda: conn.executescript("PRAGMA incremental_vacuum;"))
                        self._retrying(
                            lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                        )
            return doomed

        doomed = await anyio.to_thread.run_sync(prune_and_shrink)
        for execution_id in doomed:
            self._seen.pop(execution_id, None)
            self._finished.discard(execution_id)
        return len(doomed)
