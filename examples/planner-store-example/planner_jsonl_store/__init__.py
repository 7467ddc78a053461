"""A planner store that keeps executions and their events in one JSON-lines file.

``jsonl:///path/to/plans.jsonl`` (or ``jsonl://relative.jsonl``) names the file.
Every change is one line appended to it, written and flushed before the call
returns, so a process that opens the file later (``planner show``, ``planner
list``, a restarted service) sees every execution and event.  A line cut short
by a crash is ignored when the file is read.  The whole history is also held in
memory, and only one store object may use a file at a time: the store is for
single-process tools and tests; share executions between processes with the
``sqlite`` or ``postgresql`` stores.

The module is the plugin: ``pyproject.toml`` names it in the ``planner``
entry-point group, and planner calls :func:`register_stores`.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import planner
from planner import Event, Execution, ExecutionStatus, NewEvent, Store
from planner.errors import ExecutionFinishedError, ExecutionNotFoundError
from planner.execution import utcnow
from planner.store_helpers import claim_changes, claim_events, lease_claimable, update_changes

__all__ = ["SCHEME", "JsonlStore", "register_stores"]

SCHEME = "jsonl"
"""The URL scheme the store is registered under."""


@planner.hookimpl
def register_stores(register: Any) -> None:
    """Register ``jsonl://``: the registry calls ``JsonlStore(url, **store_options)``."""
    register(SCHEME, JsonlStore)


class JsonlStore(Store):
    """Executions and their event logs in a JSON-lines file.

    Each line is ``{"id": ..., "execution": {...} or null, "events": [...]}``:
    the record as it is after the change (when it changed) and the events the
    change appended.  Reading the file line by line rebuilds the store.

    Args:
        url: ``jsonl:///absolute/path.jsonl`` or ``jsonl://relative/path.jsonl``.
        fsync: also ``os.fsync`` every line (slower; survives power loss).
    """

    poll_interval = 0.05
    """Seconds between reads in :meth:`wait` (the base class polls)."""

    def __init__(self, url: str, *, fsync: bool = False) -> None:
        prefix = f"{SCHEME}://"
        if not url.startswith(prefix) or not url[len(prefix) :]:
            raise ValueError(f"not a {SCHEME} store URL: {url!r} (expected 'jsonl:///path.jsonl')")
        self.url = url
        self.path = Path(url[len(prefix) :])
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._records: dict[str, Execution] = {}
        self._logs: dict[str, list[Event]] = {}
        self._keys: dict[tuple[str | None, str], str] = {}

    # -- the file ---------------------------------------------------------------

    async def setup(self) -> None:
        """Read the file (if it exists) and open it for appending."""
        with self._lock:
            if self._file is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                with self.path.open(encoding="utf-8") as lines:
                    for line in lines:
                        self._replay(line)
            self._file = self.path.open("a", encoding="utf-8")

    async def close(self) -> None:
        """Close the file. Idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _replay(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            return  # the last line of a process that died while writing it
        execution_id = entry["id"]
        if entry["execution"] is not None:
            execution = Execution.model_validate(entry["execution"])
            if execution_id not in self._records:
                self._logs[execution_id] = []
                if execution.idempotency_key is not None:
                    self._keys[(execution.organization_id, execution.idempotency_key)] = (
                        execution_id
                    )
            self._records[execution_id] = execution
        if entry.get("pruned"):
            self._forget(execution_id)
            return
        self._logs[execution_id].extend(Event.model_validate(e) for e in entry["events"])

    def _write(
        self,
        execution_id: str,
        execution: Execution | None,
        events: Sequence[Event] = (),
        *,
        pruned: bool = False,
    ) -> None:
        """Append one line (call under the lock)."""
        if self._file is None:
            raise RuntimeError(f"{self.url} is not set up: use 'async with store:'")
        entry: dict[str, Any] = {
            "id": execution_id,
            "execution": None if execution is None else execution.model_dump(mode="json"),
            "events": [e.model_dump(mode="json") for e in events],
        }
        if pruned:
            entry["pruned"] = True
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    # -- helpers ------------------------------------------------------------------

    def _record(self, execution_id: str) -> Execution:
        try:
            return self._records[execution_id]
        except KeyError:
            raise ExecutionNotFoundError(execution_id) from None

    def _closed(self, execution_id: str) -> bool:
        log = self._logs[execution_id]
        return bool(log) and log[-1].type == "done"

    def _new_events(
        self, execution_id: str, events: Sequence[NewEvent], now: datetime
    ) -> list[Event]:
        """Number the events after the log's last one (call under the lock)."""
        if events and self._closed(execution_id):
            raise ExecutionFinishedError(execution_id, self._records[execution_id].status)
        first = len(self._logs[execution_id]) + 1
        return [
            Event(execution_id=execution_id, seq=seq, type=type_, data=data, timestamp=now)
            for seq, (type_, data) in enumerate(events, first)
        ]

    def _commit(self, execution: Execution | None, execution_id: str, events: list[Event]) -> None:
        """Write the change, then apply it in memory (call under the lock)."""
        self._write(execution_id, execution, events)
        if execution is not None:
            self._records[execution_id] = execution
        self._logs[execution_id].extend(events)

    def _forget(self, execution_id: str) -> None:
        execution = self._records.pop(execution_id)
        self._logs.pop(execution_id, None)
        if execution.idempotency_key is not None:
            self._keys.pop((execution.organization_id, execution.idempotency_key), None)

    # -- the Store methods ----------------------------------------------------------

    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution with its first events (see :meth:`planner.Store.create`)."""
        with self._lock:
            key = None
            if execution.idempotency_key is not None:
                key = (execution.organization_id, execution.idempotency_key)
                known = self._keys.get(key)
                if known is not None:
                    return self._records[known], False
            if execution.id in self._records:
                raise ValueError(f"an execution with id {execution.id!r} exists")
            self._logs[execution.id] = []
            new_events = self._new_events(execution.id, events, execution.created_at)
            try:
                self._commit(execution, execution.id, new_events)
            except BaseException:
                del self._logs[execution.id]
                raise
            if key is not None:
                self._keys[key] = execution.id
            return execution, True

    async def get(self, execution_id: str) -> Execution:
        """Return the execution (see :meth:`planner.Store.get`)."""
        with self._lock:
            return self._record(execution_id)

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first (see :meth:`planner.Store.list`)."""
        with self._lock:
            order = builtins.list(self._records)  # insertion order: oldest first
            if before is not None:
                self._record(before)
                order = order[: order.index(before)]
            out: builtins.list[Execution] = []
            for execution_id in reversed(order):
                if len(out) >= limit:
                    break
                execution = self._records[execution_id]
                if status is not None and execution.status != status:
                    continue
                if organization_id is not None and execution.organization_id != organization_id:
                    continue
                out.append(execution)
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
        """Change a record and append events in one line (see :meth:`planner.Store.update`)."""
        now = utcnow()
        with self._lock:
            current = self._record(execution_id)
            fields = update_changes(
                current, changes, status=status, owner=owner,
                closed=self._closed(execution_id), events=events, now=now,
            )  # fmt: skip
            new_events = self._new_events(execution_id, events, now)
            updated = current.model_copy(update=fields)
            self._commit(updated, execution_id, new_events)
            return updated

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events with consecutive ``seq`` numbers (see :meth:`planner.Store.append`)."""
        with self._lock:
            self._record(execution_id)
            new_events = self._new_events(execution_id, events, utcnow())
            self._commit(None, execution_id, new_events)
            return new_events

    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Return the events with ``seq > after`` (see :meth:`planner.Store.read`)."""
        with self._lock:
            self._record(execution_id)
            start = max(after, 0)
            end = None if limit is None else start + limit
            return self._logs[execution_id][start:end]

    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Take the lease and start an attempt (see :meth:`planner.Store.claim`)."""
        now = utcnow()
        with self._lock:
            current = self._record(execution_id)
            if not lease_claimable(current, owner, now):
                return None
            claimed = current.model_copy(update=claim_changes(current, owner, ttl, now))
            new_events = self._new_events(execution_id, claim_events(claimed), now)
            self._commit(claimed, execution_id, new_events)
            return claimed

    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Extend the lease (see :meth:`planner.Store.renew`)."""
        now = utcnow()
        with self._lock:
            current = self._records.get(execution_id)
            if current is None or current.terminal or current.lease_owner != owner:
                return None
            renewed = current.model_copy(update={"lease_expires_at": now + timedelta(seconds=ttl)})
            self._commit(renewed, execution_id, [])
            return renewed

    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Return unfinished executions of these kinds whose lease expired."""
        now = utcnow()
        with self._lock:
            out = [
                e
                for e in self._records.values()
                if e.executor in executors
                and not e.terminal
                and (e.lease_expires_at is None or e.lease_expires_at <= now)
            ]
        return out[:limit]

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Forget finished executions older than ``older_than`` or beyond the newest ``keep``.

        The file keeps growing (a ``pruned`` line is appended per execution);
        compacting it is left to a real store.
        """
        now = utcnow()
        with self._lock:
            finished = [i for i, e in self._records.items() if e.terminal]
            doomed: set[str] = set()
            if older_than is not None:
                cutoff = now - older_than
                doomed.update(i for i in finished if self._records[i].created_at < cutoff)
            if keep is not None:
                doomed.update(finished[: max(len(finished) - keep, 0)])
            for execution_id in doomed:
                self._write(execution_id, None, pruned=True)
                self._forget(execution_id)
            return len(doomed)
