"""The in-process executor (``inprocess``): runs each execution as a task on this event loop.

Runs start the moment they are submitted and live as background tasks of the
loop that started the executor, so they keep going between notebook cells.
On start it reclaims the executions of this kind whose lease expired (their
process died) and runs them again.  On close it waits for runs in flight up to
``shutdown_timeout`` seconds, then cancels the rest (they end ``cancelled``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

import anyio

from planner.execution import Execution
from planner.interfaces import Executor
from planner.runtime import LeaseKeeper
from planner.urls import boolean, number, parse_options, split_query

if TYPE_CHECKING:
    from planner.runtime import Runtime

__all__ = ["InProcessExecutor", "new_owner_id"]

log = logging.getLogger("planner")

_OPTIONS = {"shutdown_timeout": number, "recover": boolean}


def new_owner_id(kind: str) -> str:
    """Return a lease owner id unique to this process and executor instance."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class InProcessExecutor(Executor):
    """Runs executions as tasks of the current event loop.

    Args:
        url: ``inprocess``, optionally with options as a query
            (``inprocess?shutdown_timeout=5&recover=false``); keywords take precedence.
        shutdown_timeout: seconds :meth:`close` waits for runs in flight before cancelling
            them (default 10).
        recover: whether :meth:`start` reclaims lost executions (default true).

    Raises:
        ValueError: a bad URL or option.
    """

    name = "inprocess"

    def __init__(
        self,
        url: str = "inprocess",
        *,
        shutdown_timeout: float | None = None,
        recover: bool | None = None,
    ) -> None:
        name, query = split_query(url)
        if name.rstrip(":/") != self.name:
            raise ValueError(f"not an in-process executor URL: {url!r} (expected 'inprocess?...')")
        options = parse_options(
            query,
            _OPTIONS,
            plugin=self.name,
            keywords={"shutdown_timeout": shutdown_timeout, "recover": recover},
        )
        self.shutdown_timeout: float = float(options.get("shutdown_timeout", 10.0))
        self.recover: bool = bool(options.get("recover", True))
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, got {self.shutdown_timeout}")
        self._owner = new_owner_id(self.name)
        self.owner = self._owner
        self._runtime: Runtime | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._keeper: LeaseKeeper | None = None
        self._keeper_task: asyncio.Task[None] | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._closing = False

    @property
    def running(self) -> int:
        """How many runs are in flight."""
        return len(self._tasks)

    async def start(self, runtime: Runtime) -> None:
        """Bind to the runtime and run again what lost its lease."""
        self._runtime = runtime
        self._closing = False
        self._keeper = LeaseKeeper(runtime.store, runtime.settings)
        self._keeper_task = asyncio.get_running_loop().create_task(self._keeper.run())
        if self.recover:
            for execution in await runtime.store.reclaimable([self.name]):
                log.info(
                    "recovering execution %s (attempt %d)", execution.id, execution.attempt + 1
                )
                self._spawn(execution.id)

    async def submit(self, execution: Execution) -> str:
        """Start the run as a background task and return its workflow id."""
        if self._runtime is None:
            raise RuntimeError("the executor is not started")
        if self._closing:
            raise RuntimeError("the executor is shutting down")
        self._spawn(execution.id)
        return execution.workflow_id

    def _spawn(self, execution_id: str) -> None:
        if execution_id in self._tasks:
            return
        # A plain loop task, not a task-group child: runs outlive the caller's
        # scope (a notebook cell, a request handler) until the executor closes.
        task = asyncio.get_running_loop().create_task(self._job(execution_id))
        self._tasks[execution_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(execution_id, None))

    async def _job(self, execution_id: str) -> None:
        assert self._runtime is not None
        with anyio.CancelScope() as scope:
            self._scopes[execution_id] = scope
            try:
                await self._runtime.run(execution_id, owner=self._owner, keeper=self._keeper)
            except Exception:
                log.exception("run of %s crashed", execution_id)
            finally:
                self._scopes.pop(execution_id, None)

    async def cancel(self, execution: Execution) -> None:
        """Cancel the run if it is in flight here."""
        scope = self._scopes.get(execution.id)
        if scope is not None:
            scope.cancel()

    async def close(self) -> None:
        """Wait up to ``shutdown_timeout`` for runs in flight, then cancel the rest."""
        self._closing = True
        with anyio.move_on_after(self.shutdown_timeout):
            while self._tasks:
                await asyncio.wait(list(self._tasks.values()))
        for execution_id, task in list(self._tasks.items()):
            scope = self._scopes.get(execution_id)
            if scope is not None:
                scope.cancel()
            else:  # not started yet: it stays pending, for recovery
                task.cancel()
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))
        if self._keeper_task is not None:
            self._keeper_task.cancel()
            await asyncio.wait([self._keeper_task])
            self._keeper_task = None
