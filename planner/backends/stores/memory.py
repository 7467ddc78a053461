"""The memory store (``memory://``): everything in this process, gone when it exits.

Thread-safe: one lock guards the data, and waiters on any thread's event loop
are woken without polling.  Use it for tests, notebooks and single-process
services that do not need to keep history.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from planner._notify import Notifier
from planner.errors import ExecutionFinishedError, ExecutionNotFoundError
from planner.events import Event, trusted_event
from planner.execution import Execution, ExecutionStatus, utcnow
from planner.interfaces import NewEvent, Store
from planner.store_helpers import claim_changes, claim_events, lease_claimable, update_changes

__all__ = ["MemoryStore"]


_WIDTH = 3  # a logged event is 3 items of an entry's flat log: type, data, timestamp


class _Entry:
    """One execution: its record and its event log.

    The log is one flat list, ``[type, data, timestamp, type, data, ...]``
    (the event with ``seq`` n starts at index ``3 * (n - 1)``), not a list of
    Events: its items are strings, datetimes and payload dicts of plain
    values, which the cyclic garbage collector does not track, so a long-lived
    store of many executions adds little to every collection.  Events are
    built when they are read.
    """

    __slots__ = ("closed", "execution", "log")

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.log: list[Any] = []
        self.closed = False

    @property
    def count(self) -> int:
        """How many events are logged (the last ``seq``)."""
        return len(self.log) // _WIDTH


class MemoryStore(Store):
    """Executions and events in dictionaries.

    Args:
        url: ``memory://`` (a name after it is ignored; each instance is separate).
    """

    def __init__(self, url: str = "memory://") -> None:
        if not url.startswith("memory://"):
            raise ValueError(f"not a memory store URL: {url!r} (expected 'memory://')")
        self.url = url
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []  # creation order
        self._keys: dict[tuple[str | None, str], str] = {}
        self._notifier = Notifier()  # appends, by execution id
        self._finals = Notifier()  # records becoming final, by execution id

    def _entry(self, execution_id: str) -> _Entry:
        try:
            return self._entries[execution_id]
        except KeyError:
            raise ExecutionNotFoundError(execution_id) from None

    def _append_locked(self, entry: _Entry, events: Sequence[NewEvent], now: datetime) -> int:
        """Log the events; return the seq of the first one."""
        if entry.closed and events:
            raise ExecutionFinishedError(entry.execution.id, entry.execution.status)
        log = entry.log
        first = entry.count + 1
        for type_, data in events:
            log += (type_, data, now)
            if type_ == "done":
                entry.closed = True
        return first

    @staticmethod
    def _events(execution_id: str, entry: _Entry, start: int, end: int) -> list[Event]:
        """Build the Events with ``start < seq <= end`` (call under the lock)."""
        log = entry.log
        # The payload was validated when it was made (make_data) and the
        # envelope's fields are ours: build the Events without validating again.
        return [
            trusted_event(execution_id, seq, log[i], log[i + 1], log[i + 2])
            for seq, i in enumerate(range(start * _WIDTH, end * _WIDTH, _WIDTH), start + 1)
        ]

    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution with its first events (see :meth:`Store.create`)."""
        with self._lock:
            if execution.idempotency_key is not None:
                key = (execution.organization_id, execution.idempotency_key)
                known = self._keys.get(key)
                if known is not None:
                    return self._entries[known].execution, False
                self._keys[key] = execution.id
            if execution.id in self._entries:
                raise ValueError(f"an execution with id {execution.id!r} exists")
            entry = _Entry(execution)
            self._entries[execution.id] = entry
            self._order.append(execution.id)
            self._append_locked(entry, events, execution.created_at)
        if events:
            self._notifier.notify(execution.id)
        return execution, True

    async def get(self, execution_id: str) -> Execution:
        """Return the execution (see :meth:`Store.get`)."""
        with self._lock:
            return self._entry(execution_id).execution

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Execution]:
        """Return executions, newest first (see :meth:`Store.list`)."""
        with self._lock:
            end = len(self._order)
            if before is not None:
                self._entry(before)
                end = self._order.index(before)
            out: builtins.list[Execution] = []
            for i in range(end - 1, -1, -1):
                if len(out) >= limit:
                    break
                ex = self._entries[self._order[i]].execution
                if status is not None and ex.status != status:
                    continue
                if organization_id is not None and ex.organization_id != organization_id:
                    continue
                out.append(ex)
            return out

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
        with self._lock:
            entry = self._entry(execution_id)
            current = entry.execution
            fields = update_changes(
                current, changes, status=status, owner=owner, closed=entry.closed, events=events,
                now=now,
            )  # fmt: skip
            entry.execution = current.model_copy(update=fields)
            self._append_locked(entry, events, now)
            updated = entry.execution
        if events:
            self._notifier.notify(execution_id)
        if updated.terminal and not current.terminal:
            self._finals.notify(execution_id)
        return updated

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events with consecutive ``seq`` numbers (see :meth:`Store.append`)."""
        with self._lock:
            entry = self._entry(execution_id)
            first = self._append_locked(entry, events, utcnow())
            out = self._events(execution_id, entry, first - 1, entry.count)
        self._notifier.notify(execution_id)
        return out

    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Return the events with ``seq > after`` (see :meth:`Store.read`)."""
        start = max(after, 0)
        with self._lock:
            entry = self._entry(execution_id)
            count = entry.count
            end = count if limit is None else min(count, start + limit)
            return self._events(execution_id, entry, start, max(start, end))

    async def wait(self, execution_id: str, after: int, timeout: float) -> bool:
        """Wait for an event with ``seq > after``, woken by appends (no polling)."""
        with self._lock:
            self._entry(execution_id)
        entries = self._entries

        def ready() -> bool:
            entry = entries.get(execution_id)
            return entry is None or entry.count > after

        return await self._notifier.wait(execution_id, ready, timeout)

    async def wait_terminal(self, execution_id: str, timeout: float) -> Execution:
        """Wait until the record is final, woken once by the final update (not per event)."""
        with self._lock:
            if self._entry(execution_id).execution.terminal:
                return self._entries[execution_id].execution
        entries = self._entries

        def ready() -> bool:
            entry = entries.get(execution_id)
            return entry is None or entry.execution.terminal

        await self._finals.wait(execution_id, ready, timeout)
        return await self.get(execution_id)

    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Take the lease and start an attempt (see :meth:`Store.claim`)."""
        now = utcnow()
        with self._lock:
            entry = self._entry(execution_id)
            current = entry.execution
            if not lease_claimable(current, owner, now):
                return None
            entry.execution = current.model_copy(update=claim_changes(current, owner, ttl, now))
            self._append_locked(entry, claim_events(entry.execution), now)
            claimed = entry.execution
        self._notifier.notify(execution_id)
        return claimed

    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Extend the lease (see :meth:`Store.renew`)."""
        now = utcnow()
        with self._lock:
            entry = self._entries.get(execution_id)
            if entry is None:
                return None
            current = entry.execution
            if current.terminal or current.lease_owner != owner:
                return None
            entry.execution = current.model_copy(
                update={"lease_expires_at": now + timedelta(seconds=ttl)}
            )
            return entry.execution

    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Return unfinished executions of these kinds with an expired lease."""
        now = utcnow()
        with self._lock:
            out = [
                e.execution
                for e in self._entries.values()
                if e.execution.executor in executors
                and not e.execution.terminal
                and (e.execution.lease_expires_at is None or e.execution.lease_expires_at <= now)
            ]
        return out[:limit]

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Delete finished executions older than ``older_than`` or beyond the newest ``keep``."""
        now = utcnow()
        with self._lock:
            finished = [i for i in self._order if self._entries[i].execution.terminal]
            doomed: set[str] = set()
            if older_than is not None:
                doomed.update(
                    i for i in finished if self._entries[i].execution.created_at < now - older_than
                )
            if keep is not None:
                doomed.update(finished[: max(len(finished) - keep, 0)])
            for i in doomed:
                ex = self._entries.pop(i).execution
                if ex.idempotency_key is not None:
                    self._keys.pop((ex.organization_id, ex.idempotency_key), None)
            self._order = [i for i in self._order if i not in doomed]
        return len(doomed)
