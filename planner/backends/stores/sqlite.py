"""The SQLite store (``sqlite:///path.db``): executions and their events in one file.

Built on the standard library's :mod:`sqlite3`, nothing to install.  The file is
in WAL mode, so readers never wait for the writer; every call runs in a worker
thread, so the event loop never waits for the disk.  In one process, writes go
through one connection, one at a time; across processes each write is a
``BEGIN IMMEDIATE`` transaction that waits for the file's write lock (the busy
timeout) and is retried while the file is busy, so several processes can share
one file.

Streams are woken without polling by writes made in this process (through any
store object on the same file); writes made by other processes are seen by
polling every :attr:`SQLiteStore.poll_interval` seconds while a stream waits.

The schema is versioned: :meth:`SQLiteStore.setup` applies the migrations the
file lacks and records each in the ``planner_schema_version`` table.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread

from planner._notify import Notifier
from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    LeaseLostError,
    SchemaVersionError,
)
from planner.events import Event
from planner.execution import Execution, ExecutionStatus, check_transition, utcnow
from planner.interfaces import NewEvent, Store
from planner.store_helpers import claim_changes, claim_events, lease_claimable

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

# Store objects on the same file in one process share their wake-ups: a write
# through one wakes the streams waiting on another without a poll.
_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, tuple[Notifier, dict[str, int]]] = {}


def _shared(path: Path) -> tuple[Notifier, dict[str, int]]:
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, (Notifier(), {}))


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _when(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _load(row: tuple[str, str | None]) -> Execution:
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
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._ready = False
        self._closed = False
        # Set up by setup(): the wake-ups of this file in this process, and the
        # last seq written per execution here (waiters check it without a query).
        self._notifier = Notifier()
        self._seen: dict[str, int] = {}

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

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
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

    async def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._write, fn)

    async def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._read, fn)

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._notifier, self._seen = _shared(self.path)
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
        with self._write_lock, self._pool_lock:
            self._closed = True
            self._ready = False
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- writing helpers (inside a transaction) --------------------------------

    @staticmethod
    def _row(conn: sqlite3.Connection, execution_id: str) -> tuple[Execution, int, bool]:
        row = conn.execute(
            "SELECT record, strategy, last_seq, closed FROM planner_executions WHERE id = ?",
            (execution_id,),
        ).fetchone()
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return _load((row[0], row[1])), row[2], bool(row[3])

    @staticmethod
    def _insert_events(
        conn: sqlite3.Connection,
        execution_id: str,
        last_seq: int,
        events: Iterable[NewEvent],
        now: datetime,
    ) -> tuple[list[Event], bool]:
        ts = _us(now)
        out: list[Event] = []
        rows = []
        closed = False
        seq = last_seq
        for type_, data in events:
            seq += 1
            rows.append(
                (
                    execution_id,
                    seq,
                    type_,
                    json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                    ts,
                )
            )
            out.append(
                Event.model_construct(
                    execution_id=execution_id, seq=seq, type=type_, data=data, timestamp=now
                )
            )
            closed = closed or type_ == "done"
        if rows:
            conn.executemany("INSERT INTO planner_events VALUES (?, ?, ?, ?, ?)", rows)
        return out, closed

    @staticmethod
    def _save(conn: sqlite3.Connection, execution: Execution, last_seq: int, closed: bool) -> None:
        conn.execute(
            "UPDATE planner_executions SET status = ?, organization_id = ?, idempotency_key = ?,"
            " executor = ?, strategy = ?, lease_owner = ?, lease_expires_us = ?, created_us = ?,"
            " last_seq = ?, closed = ?, record = ? WHERE id = ?",
            (
                execution.status.value,
                execution.organization_id,
                execution.idempotency_key,
                execution.executor,
                execution.request.planning_strategy,
                execution.lease_owner,
                _us(execution.lease_expires_at) if execution.lease_expires_at else None,
                _us(execution.created_at),
                last_seq,
                int(closed),
                execution.model_dump_json(),
                execution.id,
            ),
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
                    return _load(row), False, 0
            try:
                conn.execute(
                    "INSERT INTO planner_executions (id, status, organization_id,"
                    " idempotency_key, executor, strategy, lease_owner, lease_expires_us,"
                    " created_us, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        execution.id,
                        execution.status.value,
                        execution.organization_id,
                        execution.idempotency_key,
                        execution.executor,
                        execution.request.planning_strategy,
                        execution.lease_owner,
                        _us(execution.lease_expires_at) if execution.lease_expires_at else None,
                        _us(execution.created_at),
                        record,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"an execution with id {execution.id!r} exists") from None
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
        return _load(row)

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

        rows = await self._run_read(query)
        if rows is None:
            raise ExecutionNotFoundError(str(before))
        return [_load(row) for row in rows]

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
            if status is not None:
                check_transition(current.status, status, execution_id)
                changes["status"] = status
            elif current.terminal and changes:
                raise ExecutionFinishedError(execution_id, current.status)
            if owner is not None and current.lease_owner != owner:
                raise LeaseLostError(execution_id, owner)
            if closed and events:
                raise ExecutionFinishedError(execution_id, current.status)
            changes["updated_at"] = now
            updated = current.model_copy(update=changes)
            out, now_closed = self._insert_events(conn, execution_id, last_seq, events, now)
            self._save(conn, updated, last_seq + len(out), closed or now_closed)
            return updated, last_seq + len(out)

        updated, last = await self._run_write(tx)
        if events:
            self._saw(execution_id, last)
            self._notifier.notify(execution_id)
        return updated

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events with consecutive ``seq`` numbers (see :meth:`Store.append`)."""
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> builtins.list[Event]:
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

        def query(conn: sqlite3.Connection) -> builtins.list[tuple[int, str, str, int]] | None:
            rows: builtins.list[tuple[int, str, str, int]] = conn.execute(
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

        rows = await self._run_read(query)
        if rows is None:
            raise ExecutionNotFoundError(execution_id)
        return [
            Event.model_construct(
                execution_id=execution_id,
                seq=seq,
                type=type_,
                data=json.loads(data),
                timestamp=_when(ts),
            )
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

        return [_load(row) for row in await self._run_read(query)]

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
        return len(doomed)
