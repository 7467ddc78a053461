"""The PostgreSQL store (``postgresql://...``): durable, shared by any number of processes.

Records live in one table and events in another, with the request, plan,
metadata and event payloads as ``JSONB``.  Every write is one transaction:
the execution row is locked, its ``last_seq`` counter numbers the new events
(so concurrent appends get consecutive, gap-free ``seq``), and a status change
commits together with its events.  The common writes (create, a first claim,
append, a status change whose rules hold) are one statement each, the rules
being conditions of the ``UPDATE``; the rest lock the row in a transaction.

Streams wake on ``LISTEN``/``NOTIFY`` through one dedicated listener connection
per store, which reconnects on its own; a bounded poll (``poll_interval``)
covers any notification that was missed.  Notifications are sent after the
commit, in batches, from a second dedicated connection: a ``NOTIFY`` inside the
writing transaction would serialise the commits of every writer.  Waiters in
the writing process are woken directly.

A dropped connection (a restarted server, ``pg_terminate_backend``) is retried
on a fresh one for up to ``retry_timeout`` seconds.  Each write carries a token,
so a write whose commit was in flight when the connection died is recognised
on retry and never applied twice.

The schema is versioned: :func:`migrate` brings it up to date inside the
caller's transaction, and a store opened with ``verify_only=True`` refuses to
start on an outdated schema with :class:`~planner.errors.SchemaVersionError`.

URL query parameters (options of the same name override them)::

    postgresql://user@host:5432/db?schema=planner&prefix=planner_&pool_min_size=1
        &pool_max_size=10&verify_only=false&poll_interval=1&retry_timeout=30

(``migrate=false`` is the same as ``verify_only=true``.)
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel

from planner._notify import Notifier
from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    SchemaVersionError,
)
from planner.events import Event, trusted_event
from planner.execution import (
    TRANSITIONS,
    Execution,
    ExecutionStatus,
    utcnow,
)
from planner.interfaces import NewEvent, Store
from planner.store_helpers import claim_changes, claim_events, lease_claimable, update_changes

__all__ = ["SCHEMA_VERSION", "PostgresStore", "migrate", "schema_version"]

log = logging.getLogger("planner")

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}|")
_FINAL = ["completed", "failed", "cancelled"]
_RECENT_MAX = 10_000
_NOTIFY_WINDOW = 0.005  # seconds between two batches of notifications
_URL_OPTIONS = (
    "schema",
    "prefix",
    "pool_min_size",
    "pool_max_size",
    "verify_only",
    "migrate",
    "poll_interval",
    "retry_timeout",
)

# Each migration is a list of statements; {s} is the quoted schema, {p} the table prefix.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE {s}."{p}executions" (
            id text PRIMARY KEY,
            pos bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            workflow_id text NOT NULL,
            status text NOT NULL,
            request jsonb NOT NULL,
            plan_json jsonb,
            error jsonb,
            metadata jsonb NOT NULL,
            created_at timestamptz NOT NULL,
            started_at timestamptz,
            completed_at timestamptz,
            updated_at timestamptz NOT NULL,
            attempt integer NOT NULL DEFAULT 0,
            parent_execution_id text,
            idempotency_key text,
            organization_id text,
            executor text NOT NULL,
            cancel_requested boolean NOT NULL DEFAULT false,
            lease_owner text,
            lease_expires_at timestamptz,
            last_seq integer NOT NULL DEFAULT 0,
            closed boolean NOT NULL DEFAULT false,
            write_id text
        )""",
        """CREATE UNIQUE INDEX "{p}executions_idempotency" ON {s}."{p}executions"
            ((organization_id IS NULL), (coalesce(organization_id, '')), idempotency_key)
            WHERE idempotency_key IS NOT NULL""",
        """CREATE INDEX "{p}executions_unfinished" ON {s}."{p}executions" (executor, pos)
            WHERE status IN ('pending', 'running')""",
        """CREATE INDEX "{p}executions_created" ON {s}."{p}executions" (created_at)""",
        """CREATE TABLE {s}."{p}events" (
            execution_id text NOT NULL
                REFERENCES {s}."{p}executions" (id) ON DELETE CASCADE,
            seq integer NOT NULL,
            type text NOT NULL,
            data jsonb NOT NULL,
            ts timestamptz NOT NULL,
            write_id text,
            PRIMARY KEY (execution_id, seq)
        )""",
    ],
]

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this code writes and reads."""


def _check_names(schema: str, prefix: str) -> None:
    if not _NAME.fullmatch(schema):
        raise ValueError(
            f"invalid schema name {schema!r}: use letters, digits and '_' (at most 40)"
        )
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"invalid table prefix {prefix!r}: use letters, digits and '_' (at most 40)"
        )


async def schema_version(conn: Conn, *, schema: str = "public", prefix: str = "planner_") -> int:
    """Return the schema version applied in the database (0 when none is).

    Args:
        conn: an open psycopg async connection.
        schema, prefix: where the store's tables live.

    Raises:
        ValueError: an invalid schema name or prefix.
    """
    _check_names(schema, prefix)
    cur = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}"."{prefix}schema_version"']
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        f'SELECT coalesce(max(version), 0) FROM "{schema}"."{prefix}schema_version"'
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(conn: Conn, *, schema: str = "public", prefix: str = "planner_") -> int:
    """Bring the store's tables up to :data:`SCHEMA_VERSION`.

    On a connection in autocommit mode the migration runs in a transaction of
    its own; otherwise it runs in the caller's transaction and is committed (or
    rolled back) with it.  Concurrent migrations of the same tables wait for
    each other (a transaction-scoped advisory lock).

    Args:
        conn: an open psycopg async connection.
        schema: the schema of the tables (created if missing).
        prefix: the prefix of the table names.

    Returns:
        The version the database was at before.

    Raises:
        ValueError: an invalid schema name or prefix.
        SchemaVersionError: the database is newer than this code.
    """
    _check_names(schema, prefix)
    if conn.autocommit:
        async with conn.transaction():
            return await _migrate(conn, schema, prefix)
    return await _migrate(conn, schema, prefix)


async def _migrate(conn: Conn, schema: str, prefix: str) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"planner:{schema}.{prefix}"])
    s = f'"{schema}"'
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
    await conn.execute(
        f'CREATE TABLE IF NOT EXISTS {s}."{prefix}schema_version" ('
        "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    before = await schema_version(conn, schema=schema, prefix=prefix)
    if before > SCHEMA_VERSION:
        raise SchemaVersionError(f"schema {schema!r} (prefix {prefix!r})", before, SCHEMA_VERSION)
    for version in range(before + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[version - 1]:
            await conn.execute(statement.format(s=s, p=prefix).encode())
        await conn.execute(
            f'INSERT INTO {s}."{prefix}schema_version" (version) VALUES (%s)', [version]
        )
    return before


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        # No state: the client lost the connection. 08: connection exception.
        # 57P01-57P05: the server is shutting down or restarting.
        return state is None or state.startswith("08") or state.startswith("57P")
    return isinstance(exc, psycopg.InterfaceError)


# JSONB keeps numbers as ``numeric``: 1e+16 comes back as 10000000000000000, an int.
# Write floats that Python prints with a positive exponent in full, with ".0", so
# they come back as the same float.  Strings are skipped: they hold no bare numbers.
_BIG_FLOAT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?[0-9]+(?:\.[0-9]+)?e\+[0-9]+)')


def _full_float(match: re.Match[str]) -> str:
    number = match.group(1)
    return match.group(0) if number is None else f"{int(float(number))}.0"


def _dumps(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _BIG_FLOAT.sub(_full_float, text) if "e+" in text else text


def _json(obj: Any) -> Jsonb:
    return Jsonb(obj, dumps=_dumps)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


# Execution fields and how each is written to its column.
_JSON_FIELDS = frozenset({"request", "plan_json", "error", "metadata"})
_FIELDS = (
    "id",
    "workflow_id",
    "status",
    "request",
    "plan_json",
    "error",
    "metadata",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
    "attempt",
    "parent_execution_id",
    "idempotency_key",
    "organization_id",
    "executor",
    "cancel_requested",
    "lease_owner",
    "lease_expires_at",
)
_COLUMNS = ", ".join(_FIELDS)


def _value(field: str, value: Any) -> Any:
    """A field's value as its column takes it."""
    if field in _JSON_FIELDS:
        if value is None:
            return None
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        return _json(value)
    if isinstance(value, ExecutionStatus):
        return value.value
    return value


def _column(execution: Execution, field: str) -> Any:
    return _value(field, getattr(execution, field))


# For each new status, the statuses it may be reached from (``TRANSITIONS`` reversed).
_SOURCES = {
    new: [old.value for old, targets in TRANSITIONS.items() if new in targets]
    for new in ExecutionStatus
}


def _execution(row: dict[str, Any]) -> Execution:
    data = {f: row[f] for f in _FIELDS}
    for f in ("created_at", "started_at", "completed_at", "updated_at", "lease_expires_at"):
        data[f] = _utc(data[f])
    # The request was valid when it was stored; its strategy may be one that only
    # the writing Planner knows, so accept the stored name.
    name = data["request"].get("planning_strategy")
    return Execution.model_validate(data, context={"strategies": {name} if name else set()})


class _Watch:
    """The wake-up state of one execution that tasks of this process wait on."""

    __slots__ = ("kicks", "last_seq", "users")

    def __init__(self) -> None:
        self.users = 0
        self.last_seq = 0
        self.kicks = 0


class PostgresStore(Store):
    """Executions and events in PostgreSQL, through a psycopg 3 async connection pool.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (or ``postgres://``),
            with optional query parameters named like the options below; anything
            else in the URL goes to libpq.
        schema: the schema of the tables (default ``public``; created by migrations).
        prefix: the prefix of the table names (default ``planner_``).
        pool_min_size, pool_max_size: the connection pool's size (default 1 and 10).
        verify_only: do not migrate; refuse to start unless the schema is current.
        migrate: the opposite of ``verify_only`` (the SQLite store's name for it).
        poll_interval: seconds between reads while a stream waits, in case a
            notification was missed (default 1).
        retry_timeout: seconds to keep retrying an operation whose connection
            failed (default 30).

    Raises:
        ValueError: not a PostgreSQL URL, or an invalid option.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        prefix: str | None = None,
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        verify_only: bool | None = None,
        migrate: bool | None = None,
        poll_interval: float | None = None,
        retry_timeout: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"postgresql", "postgres"}:
            raise ValueError(f"not a PostgreSQL store URL: {url!r} (expected 'postgresql://...')")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        ours = {k: query.pop(k) for k in _URL_OPTIONS if k in query}
        self.url = url
        self.conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        self.schema = schema if schema is not None else ours.get("schema", "public")
        self.prefix = prefix if prefix is not None else ours.get("prefix", "planner_")
        _check_names(self.schema, self.prefix)
        try:
            self.pool_min_size = int(
                pool_min_size if pool_min_size is not None else ours.get("pool_min_size", 1)
            )
            self.pool_max_size = int(
                pool_max_size if pool_max_size is not None else ours.get("pool_max_size", 10)
            )
            if verify_only is None and "verify_only" in ours:
                verify_only = _flag(ours["verify_only"])
            if migrate is None and "migrate" in ours:
                migrate = _flag(ours["migrate"])
            self.poll_interval = float(
                poll_interval if poll_interval is not None else ours.get("poll_interval", 1.0)
            )
            self.retry_timeout = float(
                retry_timeout if retry_timeout is not None else ours.get("retry_timeout", 30.0)
            )
        except ValueError as exc:
            raise ValueError(f"invalid PostgreSQL store option in {url!r}: {exc}") from None
        if verify_only is not None and migrate is not None and verify_only == migrate:
            raise ValueError("verify_only and migrate contradict each other: give one")
        self.verify_only = bool(verify_only) if verify_only is not None else migrate is False
        if not 0 <= self.pool_min_size <= self.pool_max_size or self.pool_max_size < 1:
            raise ValueError(
                f"invalid pool size: min {self.pool_min_size}, max {self.pool_max_size}"
            )
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {self.poll_interval}")
        if self.retry_timeout < 0:
            raise ValueError(f"retry_timeout must not be negative, got {self.retry_timeout}")

        s, p = f'"{self.schema}"', self.prefix
        self._executions = f'{s}."{p}executions"'
        self._events = f'{s}."{p}events"'
        channel = f"{self.schema}.{p}events"
        if len(channel) > 63:  # PostgreSQL's limit on a channel name
            channel = "planner_" + hashlib.sha256(channel.encode()).hexdigest()[:32]
        self.channel = channel
        """The ``LISTEN``/``NOTIFY`` channel of this store's tables."""
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._gate = anyio.Semaphore(self.pool_max_size)
        self._listener: asyncio.Task[None] | None = None
        self._listener_ready = False
        self._notifier = Notifier()
        self._watch_lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        # The newest seq seen committed per execution (bounded, oldest dropped),
        # and the listener's connection count; see _known_seq.
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._generation = 0
        # Executions made final, here or (by notification) elsewhere, bounded; and
        # the wake-ups of wait_terminal, which only final updates ring.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._finals = Notifier()
        # Notifications of this store's commits, sent in batches by _send_notes:
        # the last seq per execution, and whether that write made it final.
        self._outbox: dict[str, tuple[int, bool]] = {}
        self._outbox_waiter: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether the listener connection is up (streams wake at once, not by polling)."""
        return self._listener_ready

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r}, prefix={self.prefix!r})"

    # -- lifecycle -----------------------------------------------------------

    async def setup(self) -> None:
        """Open the pool, migrate (or verify) the schema and start listening.

        Raises:
            SchemaVersionError: ``verify_only`` and the schema is not current, or
                the database is newer than this code.
            psycopg.OperationalError: the server cannot be reached.
        """
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.conninfo,
            min_size=self.pool_min_size,
            max_size=self.pool_max_size,
            kwargs={"autocommit": True},
            open=False,
            name=f"planner-{self.schema}.{self.prefix}",
        )
        await pool.open()
        try:
            async with pool.connection() as conn:
                if self.verify_only:
                    found = await schema_version(conn, schema=self.schema, prefix=self.prefix)
                    if found != SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"schema {self.schema!r} (prefix {self.prefix!r})",
                            found,
                            SCHEMA_VERSION,
                        )
                else:
                    await migrate(conn, schema=self.schema, prefix=self.prefix)
            listener = await self._connect_listener()
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen(listener))
        self._sender = loop.create_task(self._send_notes())

    async def close(self) -> None:
        """Send the last notifications, stop listening and close the pool. Idempotent."""
        for task in (self._sender, self._listener):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        self._sender = self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None and self._outbox:
            notes, self._outbox = self._outbox, {}
            try:
                async with pool.connection(timeout=2) as conn:
                    await self._notify(conn, notes)
            except Exception as exc:
                log.warning("planner store %s: last notifications lost: %s", self.channel, exc)
        if pool is not None:
            await pool.close()
        self._kick_all()

    # -- wake-ups ----------------------------------------------------------------

    async def _connect_listener(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            await conn.close()
            raise
        self._listener_ready = True
        return conn

    async def _listen(self, conn: Conn | None) -> None:
        delay = 0.05
        while True:
            try:
                if conn is None:
                    conn = await self._connect_listener()
                    # Notifications sent while we were away are lost: forget what
                    # they would have updated, and send every waiter to the database.
                    with self._watch_lock:
                        self._generation += 1
                        self._recent.clear()
                    self._kick_all()
                    log.info("planner store %s: listener reconnected", self.channel)
                delay = 0.05
                async for note in conn.notifies():
                    execution_id, _, rest = note.payload.partition(" ")
                    seq, _, flag = rest.partition(" ")
                    self._woken(execution_id, int(seq or 0), final=flag == "final")
            except Exception as exc:
                log.warning("planner store %s: listener connection lost: %s", self.channel, exc)
            finally:
                self._listener_ready = False
                if conn is not None:
                    await conn.close()
                    conn = None
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _notify(self, conn: Conn, notes: dict[str, tuple[int, bool]]) -> None:
        """Send ``"<execution id> <seq>"``, with ``" final"`` when that write made it final."""
        payloads = [
            f"{key} {seq} final" if final else f"{key} {seq}" for key, (seq, final) in notes.items()
        ]
        await conn.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", [self.channel, payloads]
        )

    async def _send_notes(self) -> None:
        """Send the notifications of this store's commits, as many as wait in one statement.

        Sent after the commit rather than in the writing transaction: a ``NOTIFY``
        serialises the commits of every transaction that sends one, which halves
        the write rate of a busy store.  The first notification after a quiet
        spell goes at once; later ones wait for the end of a short window
        (``_NOTIFY_WINDOW``) and go together.  A notification lost with its
        sender (a killed process) delays a stream elsewhere by at most
        ``poll_interval``.
        """
        conn: Conn | None = None
        delay = 0.05
        try:
            while True:
                if not self._outbox:
                    self._outbox_waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._outbox_waiter
                    finally:
                        self._outbox_waiter = None
                notes, self._outbox = self._outbox, {}
                try:
                    if conn is None:
                        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                    await self._notify(conn, notes)
                    delay = 0.05
                    # What comes in meanwhile goes out together: a busy store
                    # sends one statement per window, not one per write.
                    await anyio.sleep(_NOTIFY_WINDOW)
                except BaseException as exc:
                    # Not known to be sent: send them again (a repeat only costs a read).
                    for key, note in notes.items():
                        if self._outbox.get(key, (0, False)) < note:
                            self._outbox[key] = note
                    if not isinstance(exc, Exception):
                        raise  # cancelled by close(), which sends what is left
                    log.warning("planner store %s: notifications delayed: %s", self.channel, exc)
                    if conn is not None:
                        await conn.close()
                        conn = None
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            if conn is not None:
                await conn.close()

    def _woken(
        self, execution_id: str, seq: int, *, vouch: bool = True, final: bool = False
    ) -> None:
        with self._watch_lock:
            if final:
                finished = self._finished
                finished[execution_id] = None
                if len(finished) > _RECENT_MAX:
                    finished.popitem(last=False)
            if vouch:
                recent = self._recent
                if recent.get(execution_id, 0) < seq:
                    recent[execution_id] = seq
                    recent.move_to_end(execution_id)
                    if len(recent) > _RECENT_MAX:
                        recent.popitem(last=False)
            watch = self._watches.get(execution_id)
            if watch is not None:
                watch.last_seq = max(watch.last_seq, seq)
        if final:
            self._finals.notify(execution_id)
        if watch is not None:
            self._notifier.notify(execution_id)

    def _known_seq(self, execution_id: str) -> int | None:
        """The newest ``seq`` of the execution this store has seen committed, if it can vouch.

        It can while the listener is up: every change since it last (re)connected
        was either seen here (a write of this store, or a notification) or has
        its notification still on the way.  None: ask the database.
        """
        with self._watch_lock:
            return self._recent.get(execution_id) if self._listener_ready else None

    def _kick_all(self) -> None:
        with self._watch_lock:
            for watch in self._watches.values():
                watch.kicks += 1
            keys = list(self._watches)
        for key in keys:
            self._notifier.notify(key)
        self._finals.notify_all()  # their final notifications may be lost too: read again

    # -- plumbing ----------------------------------------------------------------

    def _require_pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not set up: use 'async with store:'")
        return self._pool

    async def _run(
        self,
        work: Callable[[Conn], Awaitable[T]],
        committed: Callable[[Conn], Awaitable[T | None]] | None = None,
    ) -> T:
        """Run ``work`` on a pooled connection, retrying on a lost connection.

        ``committed`` is asked before each retry whether the failed attempt
        committed after all (its result, or None); without it ``work`` is
        repeated as is (reads, and writes that may be repeated).
        """
        pool = self._require_pool()
        deadline = anyio.current_time() + self.retry_timeout
        delay = 0.02
        failed = False
        while True:
            try:
                # Tasks queue for a connection here, which costs far less than
                # queueing inside the pool; the pool then rarely makes one wait.
                async with self._gate, pool.connection() as conn:
                    if failed and committed is not None:
                        done = await committed(conn)
                        if done is not None:
                            log.info(
                                "planner store %s: the write had committed before its"
                                " connection was lost",
                                self.channel,
                            )
                            return done
                    return await work(conn)
            except Exception as exc:
                if not _retryable(exc) or anyio.current_time() + delay > deadline:
                    raise
                log.info("planner store %s: retrying after %s", self.channel, exc)
                failed = True
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _lock(self, conn: Conn, execution_id: str) -> dict[str, Any]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_COLUMNS}, last_seq, closed FROM {self._executions} WHERE id = %s FOR UPDATE",
            [execution_id],
        )
        row = await cur.fetchone()
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return row

    def _events_cte(self, source: str, seq: str) -> str:
        """An ``ins`` CTE inserting the events of ``%(types)s``/``%(datas)s``, numbered by ``seq``.

        ``seq`` is an SQL expression of ``t.ord`` (1, 2, ...); ``source`` is the
        CTE the insert depends on (no row there: nothing is inserted).
        """
        return (
            f"ins AS (INSERT INTO {self._events} (execution_id, seq, type, data, ts, write_id)"
            f" SELECT %(id)s, {seq}, t.type, t.data, %(now)s,"
            " CASE WHEN t.ord = 1 THEN %(token)s END"
            f" FROM {source}, ROWS FROM (unnest(%(types)s::text[]),"
            " jsonb_array_elements(%(datas)s)) WITH ORDINALITY AS t(type, data, ord))"
        )

    def _events_params(
        self, execution_id: str, events: Sequence[NewEvent], now: datetime, token: str
    ) -> dict[str, Any]:
        return {
            "id": execution_id,
            "now": now,
            "token": token,
            "types": [t for t, _ in events],
            "datas": _json([d for _, d in events]),
        }

    async def _write(
        self,
        conn: Conn,
        row: dict[str, Any],
        updated: Execution,
        names: Sequence[str],
        events: Sequence[NewEvent],
        now: datetime,
        token: str,
    ) -> builtins.list[Event]:
        """Write the record's changed fields and append events, in one statement.

        ``row`` is the locked row as it was; the events get the next ``seq``s.
        """
        first = row["last_seq"] + 1
        params = self._events_params(updated.id, events, now, token)
        params.update({f"c_{n}": _column(updated, n) for n in names})
        params["last"] = row["last_seq"] + len(events)
        params["closed"] = row["closed"] or any(t == "done" for t, _ in events)
        params["first"] = first
        sets = "".join(f"{n} = %(c_{n})s, " for n in names)
        query = (
            f"WITH u AS (UPDATE {self._executions} SET {sets}last_seq = %(last)s,"
            " closed = %(closed)s, write_id = %(token)s WHERE id = %(id)s RETURNING 1)"
        )
        if events:
            query += ", " + self._events_cte("u", "%(first)s - 1 + t.ord") + " SELECT 1 FROM u"
        else:
            query += " SELECT 1 FROM u"
        await conn.execute(query.encode(), params)
        return [
            trusted_event(updated.id, seq, t, d, now) for seq, (t, d) in enumerate(events, first)
        ]

    async def _events_of(
        self, conn: Conn, execution_id: str, token: str, count: int
    ) -> list[Event] | None:
        """The events (at most ``count``) written with ``token``; None when it did not commit."""
        cur = await conn.execute(
            f"SELECT seq FROM {self._events} WHERE execution_id = %s AND write_id = %s",
            [execution_id, token],
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return await self._read(conn, execution_id, row[0] - 1, count, until_token=True)

    async def _wrote(self, conn: Conn, execution_id: str, token: str) -> bool:
        cur = await conn.execute(
            f"SELECT write_id = %s FROM {self._executions} WHERE id = %s", [token, execution_id]
        )
        row = await cur.fetchone()
        return bool(row is not None and row[0])

    def _after_write(
        self, execution_id: str, events: Sequence[Event], generation: int, *, final: bool = False
    ) -> None:
        """Record a committed write's last ``seq`` and wake this process's waiters.

        ``generation`` is the listener's when the write began: a write that spans
        a reconnection may be older than a change the new listener missed, so it
        must not vouch for the execution (see :meth:`_known_seq`).  ``final``:
        the write made the record final.
        """
        if events or final:  # a final update without events wakes with seq 0
            self._posted(execution_id, events[-1].seq if events else 0, generation, final=final)

    def _posted(self, execution_id: str, seq: int, generation: int, *, final: bool = False) -> None:
        """A write of this store committed ``seq``: wake local waiters, notify the others."""
        self._woken(execution_id, seq, vouch=generation == self._generation, final=final)
        outbox = self._outbox
        if outbox.get(execution_id, (0, False)) < (seq, final):
            outbox[execution_id] = (seq, final)
        waiter = self._outbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- records -----------------------------------------------------------------

    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution with its first events (see :meth:`Store.create`)."""
        token = uuid.uuid4().hex
        closed = any(t == "done" for t, _ in events)
        placeholders = ", ".join(
            [*(f"%(c_{f})s" for f in _FIELDS), "%(n)s", "%(closed)s", "%(token)s"]
        )

        query = (
            f"WITH x AS (INSERT INTO {self._executions} ({_COLUMNS}, last_seq, closed, write_id)"
            f" VALUES ({placeholders})"
            " ON CONFLICT ((organization_id IS NULL), (coalesce(organization_id, '')),"
            " idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id)"
        )
        if events:
            query += ", " + self._events_cte("x", "t.ord") + " SELECT id FROM x"
        else:
            query += " SELECT id FROM x"
        params: dict[str, Any] = {f"c_{f}": _column(execution, f) for f in _FIELDS}
        params.update(self._events_params(execution.id, events, execution.created_at, token))
        params.update({"n": len(events), "closed": closed})

        async def work(conn: Conn) -> tuple[Execution, bool]:
            # One statement: the record, its events and the notification commit together.
            try:
                cur = await conn.execute(query.encode(), params)
            except psycopg.errors.UniqueViolation:
                raise ValueError(f"an execution with id {execution.id!r} exists") from None
            if await cur.fetchone() is None:  # the idempotency key is taken
                existing = await self._by_key(conn, execution)
                if existing is not None:
                    return existing, False
                raise ValueError(f"an execution with id {execution.id!r} exists")
            return execution, True

        async def committed(conn: Conn) -> tuple[Execution, bool] | None:
            if await self._wrote(conn, execution.id, token) or (
                events and await self._events_of(conn, execution.id, token, 1) is not None
            ):
                return execution, True
            return None

        generation = self._generation
        result = await self._run(work, committed)
        if result[1] and events:
            self._posted(execution.id, len(events), generation)
        return result

    async def _by_key(self, conn: Conn, execution: Execution) -> Execution | None:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM {self._executions}"
            " WHERE idempotency_key = %s AND organization_id IS NOT DISTINCT FROM %s",
            [execution.idempotency_key, execution.organization_id],
        )
        row = await cur.fetchone()
        return None if row is None else _execution(row)

    async def get(self, execution_id: str) -> Execution:
        """Return the execution (see :meth:`Store.get`)."""
        return await self._run(lambda conn: self._get(conn, execution_id))

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first (see :meth:`Store.list`)."""
        where = ["TRUE"]
        params: builtins.list[Any] = []
        if status is not None:
            where.append("status = %s")
            params.append(ExecutionStatus(status).value)
        if organization_id is not None:
            where.append("organization_id = %s")
            params.append(organization_id)
        if before is not None:
            where.append(f"pos < (SELECT pos FROM {self._executions} WHERE id = %s)")
            params.append(before)
        params.append(max(limit, 0))

        async def work(conn: Conn) -> builtins.list[Execution]:
            if before is not None:
                cur = await conn.execute(
                    f"SELECT 1 FROM {self._executions} WHERE id = %s", [before]
                )
                if await cur.fetchone() is None:
                    raise ExecutionNotFoundError(before)
            dcur = conn.cursor(row_factory=dict_row)
            await dcur.execute(
                f"SELECT {_COLUMNS} FROM {self._executions} WHERE {' AND '.join(where)}"
                " ORDER BY pos DESC LIMIT %s",
                params,
            )
            return [_execution(row) for row in await dcur.fetchall()]

        return await self._run(work)

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
        token = uuid.uuid4().hex
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown Execution fields: {', '.join(sorted(unknown))}")
        generation = self._generation
        appended: builtins.list[Event] = []
        n = len(events)
        names = [*changes, "status"] if status is not None else builtins.list(changes)
        names = [f for f in names if f != "updated_at"]
        # The rules check_transition and the lease apply, as conditions of the UPDATE,
        # which evaluates them on the locked row: one statement when they hold.
        conditions = ""
        if status is not None:
            conditions += " AND status = ANY(%(sources)s)"
        elif changes:
            conditions += " AND status <> ALL(%(final)s)"
        if owner is not None:
            conditions += " AND lease_owner = %(owner)s"
        if events:
            conditions += " AND NOT closed"
        sets = "".join(f"{f} = %(c_{f})s, " for f in names)
        query = (
            f"WITH u AS (UPDATE {self._executions} SET {sets}updated_at = %(now)s,"
            " last_seq = last_seq + %(n)s, closed = closed OR %(closes)s, write_id = %(token)s"
            f" WHERE id = %(id)s{conditions} RETURNING {_COLUMNS}, last_seq)"
        )
        if events:
            query += ", " + self._events_cte("u", "u.last_seq - %(n)s + t.ord") + " SELECT * FROM u"
        else:
            query += " SELECT * FROM u"
        statement = query.encode()

        async def fast(conn: Conn) -> Execution:
            now = utcnow()
            params = self._events_params(execution_id, events, now, token)
            params.update({f"c_{f}": _value(f, changes.get(f, status)) for f in names})
            params.update(
                {
                    "n": n,
                    "closes": any(t == "done" for t, _ in events),
                    "sources": _SOURCES[status] if status is not None else None,
                    "final": _FINAL,
                    "owner": owner,
                }
            )
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(statement, params)
            row = await cur.fetchone()
            if row is None:  # a rule is broken (or no such row): the locked path says which
                return await locked(conn)
            first = row["last_seq"] - n + 1
            appended[:] = [
                trusted_event(execution_id, seq, t, d, now)
                for seq, (t, d) in enumerate(events, first)
            ]
            return _execution(row)

        async def locked(conn: Conn) -> Execution:
            now = utcnow()
            async with conn.transaction():
                row = await self._lock(conn, execution_id)
                current = _execution(row)
                fields = update_changes(
                    current, changes, status=status, owner=owner, closed=row["closed"],
                    events=events, now=now,
                )  # fmt: skip
                updated = current.model_copy(update=fields)
                appended[:] = await self._write(
                    conn, row, updated, builtins.list(fields), events, now, token
                )
            return updated

        async def committed(conn: Conn) -> Execution | None:
            if await self._wrote(conn, execution_id, token):
                return await self._get(conn, execution_id)
            if events:
                found = await self._events_of(conn, execution_id, token, n)
                if found is not None:
                    appended[:] = found
                    return await self._get(conn, execution_id)
            return None

        result = await self._run(fast, committed)
        final = status is not None and result.terminal  # a transition: not final before
        self._after_write(execution_id, appended, generation, final=final)
        return result

    async def _get(self, conn: Conn, execution_id: str) -> Execution:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM {self._executions} WHERE id = %s", [execution_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return _execution(row)

    # -- the event log -----------------------------------------------------------

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events with consecutive ``seq`` numbers (see :meth:`Store.append`)."""
        if not events:
            await self.get(execution_id)
            return []
        token = uuid.uuid4().hex
        n = len(events)
        closes = any(t == "done" for t, _ in events)
        query = (
            f"WITH u AS (UPDATE {self._executions} SET last_seq = last_seq + %(n)s,"
            " closed = closed OR %(closes)s"
            " WHERE id = %(id)s AND NOT closed RETURNING last_seq), "
            + self._events_cte("u", "u.last_seq - %(n)s + t.ord")
            + " SELECT u.last_seq FROM u"
        ).encode()

        async def work(conn: Conn) -> builtins.list[Event]:
            now = utcnow()
            # One statement, one round trip: the UPDATE locks the row and takes
            # the next seqs; the events and the notification commit with it.
            params = self._events_params(execution_id, events, now, token)
            params.update({"n": n, "closes": closes})
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    f"SELECT status FROM {self._executions} WHERE id = %s", [execution_id]
                )
                found = await cur.fetchone()
                if found is None:
                    raise ExecutionNotFoundError(execution_id)
                raise ExecutionFinishedError(execution_id, ExecutionStatus(found[0]))
            first = row[0] - n + 1
            return [
                trusted_event(execution_id, seq, t, d, now)
                for seq, (t, d) in enumerate(events, first)
            ]

        async def committed(conn: Conn) -> builtins.list[Event] | None:
            return await self._events_of(conn, execution_id, token, n)

        generation = self._generation
        out = await self._run(work, committed)
        self._after_write(execution_id, out, generation)
        return out

    async def _read(
        self,
        conn: Conn,
        execution_id: str,
        after: int,
        limit: int | None,
        *,
        until_token: bool = False,
    ) -> builtins.list[Event]:
        cur = await conn.execute(
            f"SELECT seq, type, data, ts, write_id FROM {self._events}"
            " WHERE execution_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            [execution_id, max(after, 0), limit],
        )
        rows = await cur.fetchall()
        out = []
        for i, (seq, type_, data, ts, write_id) in enumerate(rows):
            if until_token and i > 0 and write_id is not None:
                break  # the next write's events
            out.append(trusted_event(execution_id, seq, type_, data, ts.astimezone(UTC)))
        return out

    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Return the events with ``seq > after`` (see :meth:`Store.read`)."""

        async def work(conn: Conn) -> builtins.list[Event]:
            out = await self._read(conn, execution_id, after, limit)
            if not out:
                cur = await conn.execute(
                    f"SELECT 1 FROM {self._executions} WHERE id = %s", [execution_id]
                )
                if await cur.fetchone() is None:
                    raise ExecutionNotFoundError(execution_id)
            return out

        return await self._run(work)

    async def _last_seq(self, execution_id: str) -> int | None:
        async def work(conn: Conn) -> int | None:
            cur = await conn.execute(
                f"SELECT last_seq FROM {self._executions} WHERE id = %s", [execution_id]
            )
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        return await self._run(work)

    async def wait(self, execution_id: str, after: int, timeout: float) -> bool:
        """Wait for an event with ``seq > after``: woken by ``NOTIFY``, polling as a fallback.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        with self._watch_lock:
            watch = self._watches.get(execution_id)
            if watch is None:
                watch = self._watches[execution_id] = _Watch()
            watch.users += 1
        try:
            deadline = anyio.current_time() + timeout
            # What this store has seen stands in for the first read: the wait is
            # registered, so any later change wakes it.  Every later round, and
            # the answer at the deadline, come from the database.
            known = self._known_seq(execution_id) if timeout > 0 else None
            while True:
                kicks = watch.kicks
                if known is None:
                    last = await self._last_seq(execution_id)
                    if last is None:
                        raise ExecutionNotFoundError(execution_id)
                else:
                    last = known
                if last > after:
                    return True
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    if known is None:
                        return False
                    known = None
                    continue
                known = None

                def ready(kicks: int = kicks) -> bool:
                    return watch.last_seq > after or watch.kicks != kicks

                if (
                    await self._notifier.wait(
                        execution_id, ready, min(remaining, self.poll_interval)
                    )
                    and watch.last_seq > after
                ):
                    return True
        finally:
            with self._watch_lock:
                watch.users -= 1
                if watch.users == 0:
                    del self._watches[execution_id]

    async def wait_terminal(self, execution_id: str, timeout: float) -> Execution:
        """Wait until the record is final, at most ``timeout`` seconds.

        Woken once, by the final update: one made by this store object at
        once, one made elsewhere by its notification (marked ``final``); the
        record is read again every ``poll_interval`` seconds in case that
        notification was lost.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        deadline = anyio.current_time() + timeout
        finished = self._finished
        while True:
            generation = self._generation  # a reconnected listener may have missed it
            execution = await self.get(execution_id)
            remaining = deadline - anyio.current_time()
            if execution.terminal or remaining <= 0:
                return execution

            def ready(generation: int = generation) -> bool:
                return execution_id in finished or self._generation != generation

            await self._finals.wait(execution_id, ready, min(remaining, self.poll_interval))

    # -- leases ------------------------------------------------------------------

    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Take the lease and start an attempt (see :meth:`Store.claim`)."""
        token = uuid.uuid4().hex
        generation = self._generation
        appended: builtins.list[Event] = []
        # A first attempt, the common case, is one statement: the UPDATE applies
        # lease_claimable's rule to the locked row.  Anything else (a restart, or
        # nothing to claim) takes the locked path.
        events = claim_events(Execution.model_construct(attempt=1))
        query = (
            f"WITH u AS (UPDATE {self._executions} SET status = 'running', attempt = 1,"
            " started_at = coalesce(started_at, %(now)s), lease_owner = %(owner)s,"
            " lease_expires_at = %(expires)s, updated_at = %(now)s,"
            " last_seq = last_seq + %(n)s, write_id = %(token)s"
            " WHERE id = %(id)s AND attempt = 0 AND NOT closed AND status <> ALL(%(final)s)"
            " AND CASE WHEN lease_owner = %(owner)s THEN status = 'pending'"
            " ELSE lease_expires_at IS NULL OR lease_expires_at <= %(now)s END"
            f" RETURNING {_COLUMNS}, last_seq), "
            + self._events_cte("u", "u.last_seq - %(n)s + t.ord")
            + " SELECT * FROM u"
        ).encode()

        async def fast(conn: Conn) -> Execution | None:
            now = utcnow()
            params = self._events_params(execution_id, events, now, token)
            params.update(
                {
                    "owner": owner,
                    "expires": now + timedelta(seconds=ttl),
                    "n": len(events),
                    "final": _FINAL,
                }
            )
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            row = await cur.fetchone()
            if row is None:
                return await locked(conn)
            first = row["last_seq"] - len(events) + 1
            appended[:] = [
                trusted_event(execution_id, seq, t, d, now)
                for seq, (t, d) in enumerate(events, first)
            ]
            return _execution(row)

        async def locked(conn: Conn) -> Execution | None:
            now = utcnow()
            async with conn.transaction():
                row = await self._lock(conn, execution_id)
                current = _execution(row)
                if not lease_claimable(current, owner, now):
                    return None
                changes = claim_changes(current, owner, ttl, now)
                claimed = current.model_copy(update=changes)
                if row["closed"]:  # a log closed without a final status stays closed
                    raise ExecutionFinishedError(execution_id, current.status)
                appended[:] = await self._write(
                    conn, row, claimed, builtins.list(changes), claim_events(claimed), now, token
                )
            return claimed

        async def committed(conn: Conn) -> Execution | None:
            found = await self._events_of(conn, execution_id, token, 2)  # a claim writes 1 or 2
            if found is None:
                return None
            appended[:] = found
            return await self._get(conn, execution_id)

        result = await self._run(fast, committed)
        self._after_write(execution_id, appended, generation)
        return result

    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Extend the lease (see :meth:`Store.renew`)."""

        async def work(conn: Conn) -> Execution | None:
            now = utcnow()
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"UPDATE {self._executions} SET lease_expires_at = %s"
                " WHERE id = %s AND lease_owner = %s AND status <> ALL(%s)"
                f" RETURNING {_COLUMNS}",
                [now + timedelta(seconds=ttl), execution_id, owner, _FINAL],
            )
            row = await cur.fetchone()
            return None if row is None else _execution(row)

        return await self._run(work)

    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Return unfinished executions of these kinds with an expired lease."""

        async def work(conn: Conn) -> builtins.list[Execution]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_COLUMNS} FROM {self._executions}"
                " WHERE status IN ('pending', 'running') AND executor = ANY(%s)"
                " AND (lease_expires_at IS NULL OR lease_expires_at <= %s)"
                " ORDER BY pos LIMIT %s",
                [builtins.list(executors), utcnow(), limit],
            )
            return [_execution(row) for row in await cur.fetchall()]

        return await self._run(work)

    # -- retention ---------------------------------------------------------------

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Delete finished executions older than ``older_than`` or beyond the newest ``keep``.

        Their events go with them (the foreign key cascades).
        """
        if older_than is None and keep is None:
            return 0
        conditions = []
        params: builtins.list[Any] = []
        if older_than is not None:
            conditions.append("created_at < %s")
            params.append(utcnow() - older_than)
        if keep is not None:
            conditions.append(
                f"pos IN (SELECT pos FROM {self._executions} WHERE status = ANY(%s)"
                " ORDER BY pos DESC OFFSET %s)"
            )
            params.extend([_FINAL, max(keep, 0)])

        async def work(conn: Conn) -> int:
            cur = await conn.execute(
                f"DELETE FROM {self._executions} WHERE status = ANY(%s)"
                f" AND ({' OR '.join(conditions)})",
                [_FINAL, *params],
            )
            return cur.rowcount

        return await self._run(work)
