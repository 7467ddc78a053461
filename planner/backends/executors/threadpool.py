"""The thread-pool executor (``threadpool``): runs each execution on a worker thread.

Each of ``max_workers`` threads has its own event loop and runs one execution
at a time; more submissions wait in a queue (their records stay ``pending``).
Use it for strategies that block (CPU work, sync SDKs called from ``async``
code) or when the caller's event loop must stay free.

The runs reach the store in one of two ways: a store that is safe to use from
any thread's event loop (the memory store, or any store whose class sets
``thread_safe = True``) is called directly; any other store (one bound to the
event loop that set it up, like a connection pool) is called through that
loop, so it must keep running while runs are in flight.

Like the in-process executor it reclaims, on start, the executions of its kind
whose lease expired, and on close waits for the runs in flight (or cancels
them, as configured).  Runs still queued at the end of the grace period are
left ``pending`` for recovery by the next start.

Options, as keywords or in the URL (``threadpool?max_workers=8&shutdown=cancel``):
``max_workers``, ``shutdown`` (``wait`` or ``cancel``), ``shutdown_timeout``,
``recover``, ``store_access`` (``auto``, ``direct`` or ``loop``).
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread

from planner._notify import Notifier
from planner.backends.executors.inprocess import new_owner_id
from planner.events import Event
from planner.execution import Execution, ExecutionStatus
from planner.interfaces import Executor, NewEvent, Store
from planner.runtime import LeaseKeeper, Runtime
from planner.urls import OptionParser, boolean, integer, number, one_of, parse_options, split_query

__all__ = ["ThreadPoolExecutor"]

log = logging.getLogger("planner")

T = TypeVar("T")

_IDLE = "idle"
_counter = itertools.count(1)


_OPTIONS: dict[str, OptionParser] = {
    "max_workers": integer,
    "shutdown": one_of("wait", "cancel"),
    "shutdown_timeout": number,
    "recover": boolean,
    "store_access": one_of("auto", "direct", "loop"),
}


class _LoopStore(Store):
    """Calls a store on the event loop that owns it, from any thread's loop."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self.poll_interval = store.poll_interval

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        if asyncio.get_running_loop() is self._loop:
            return await make()
        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return await asyncio.wrap_future(future)

    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Forward to the store's :meth:`~planner.interfaces.Store.create`."""
        return await self._call(lambda: self._store.create(execution, events))

    async def get(self, execution_id: str) -> Execution:
        """Forward to the store's :meth:`~planner.interfaces.Store.get`."""
        return await self._call(lambda: self._store.get(execution_id))

    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Execution]:
        """Forward to the store's :meth:`~planner.interfaces.Store.list`."""
        return await self._call(
            lambda: self._store.list(
                status=status, organization_id=organization_id, limit=limit, before=before
            )
        )

    async def update(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus | None = None,
        events: Sequence[NewEvent] = (),
        owner: str | None = None,
        **changes: Any,
    ) -> Execution:
        """Forward to the store's :meth:`~planner.interfaces.Store.update`."""
        return await self._call(
            lambda: self._store.update(
                execution_id, status=status, events=events, owner=owner, **changes
            )
        )

    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Forward to the store's :meth:`~planner.interfaces.Store.append`."""
        return await self._call(lambda: self._store.append(execution_id, events))

    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Forward to the store's :meth:`~planner.interfaces.Store.read`."""
        return await self._call(lambda: self._store.read(execution_id, after, limit))

    async def wait(self, execution_id: str, after: int, timeout: float) -> bool:
        """Forward to the store's :meth:`~planner.interfaces.Store.wait`."""
        return await self._call(lambda: self._store.wait(execution_id, after, timeout))

    async def wait_terminal(self, execution_id: str, timeout: float) -> Execution:
        """Forward to the store's :meth:`~planner.interfaces.Store.wait_terminal`."""
        return await self._call(lambda: self._store.wait_terminal(execution_id, timeout))

    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Forward to the store's :meth:`~planner.interfaces.Store.claim`."""
        return await self._call(lambda: self._store.claim(execution_id, owner, ttl))

    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Forward to the store's :meth:`~planner.interfaces.Store.renew`."""
        return await self._call(lambda: self._store.renew(execution_id, owner, ttl))

    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Forward to the store's :meth:`~planner.interfaces.Store.reclaimable`."""
        return await self._call(lambda: self._store.reclaimable(executors, limit))

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Forward to the store's :meth:`~planner.interfaces.Store.prune`."""
        return await self._call(lambda: self._store.prune(older_than=older_than, keep=keep))


def _thread_safe(store: Store) -> bool:
    from planner.backends.stores.memory import MemoryStore

    return isinstance(store, MemoryStore) or bool(getattr(store, "thread_safe", False))


class _Worker:
    """One thread with an event loop that lives as long as the executor runs."""

    def __init__(self, name: str, settings: Any, store: Store) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.keeper = LeaseKeeper(store, settings)
        self.ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()
        # One task renews the leases of this thread's runs.
        keeper = self.loop.create_task(self.keeper.run())
        self.ready.set()
        try:
            await self._stop
        finally:
            keeper.cancel()
            await asyncio.wait([keeper])

    def stop(self) -> None:
        """Let the thread's loop end (call once no run is in flight)."""
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set_result, None)


class ThreadPoolExecutor(Executor):
    """Runs executions on worker threads, each with its own event loop, one run per thread.

    Args:
        url: ``threadpool``, optionally with options as a query
            (``threadpool?max_workers=8&shutdown=cancel``); keywords take precedence.
        max_workers: how many runs go at once (default: ``min(32, cpu count + 4)``).
        shutdown: on close, ``"wait"`` for runs in flight up to ``shutdown_timeout``
            seconds and then cancel the rest, or ``"cancel"`` them at once.
        shutdown_timeout: the grace period of ``shutdown="wait"``, in seconds.
        recover: whether :meth:`start` reclaims lost executions of this kind.
        store_access: ``"direct"`` (runs call the store from their threads), ``"loop"``
            (through the event loop that started the executor) or ``"auto"``
            (direct for thread-safe stores).

    Raises:
        ValueError: a bad URL or option.
    """

    name = "threadpool"

    def __init__(
        self,
        url: str = "threadpool",
        *,
        max_workers: int | None = None,
        shutdown: Literal["wait", "cancel"] | None = None,
        shutdown_timeout: float | None = None,
        recover: bool | None = None,
        store_access: Literal["auto", "direct", "loop"] | None = None,
    ) -> None:
        name, query = split_query(url)
        if name.rstrip(":/") != self.name:
            raise ValueError(f"not a thread-pool executor URL: {url!r} (expected 'threadpool?...')")
        options = parse_options(
            query,
            _OPTIONS,
            plugin=self.name,
            keywords={
                "max_workers": max_workers,
                "shutdown": shutdown,
                "shutdown_timeout": shutdown_timeout,
                "recover": recover,
                "store_access": store_access,
            },
        )
        self.max_workers: int = options.get("max_workers", min(32, (os.cpu_count() or 1) + 4))
        self.shutdown: str = options.get("shutdown", "wait")
        self.shutdown_timeout: float = float(options.get("shutdown_timeout", 10.0))
        self.recover: bool = options.get("recover", True)
        self.store_access: str = options.get("store_access", "auto")
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {self.max_workers}")
        if self.shutdown not in ("wait", "cancel"):
            raise ValueError(f"shutdown must be 'wait' or 'cancel', got {self.shutdown!r}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, got {self.shutdown_timeout}")
        if self.store_access not in ("auto", "direct", "loop"):
            raise ValueError(
                f"store_access must be 'auto', 'direct' or 'loop', got {self.store_access!r}"
            )
        self._owner = new_owner_id(self.name)
        self.owner = self._owner
        self._runtime: Runtime | None = None
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._backlog: deque[str] = deque()  # submitted, waiting for a thread
        self._pending: set[str] = set()  # waiting or running
        self._running: dict[str, tuple[asyncio.AbstractEventLoop, anyio.CancelScope]] = {}
        self._notifier = Notifier()
        self._closing = False

    def __repr__(self) -> str:
        return f"ThreadPoolExecutor(max_workers={self.max_workers}, shutdown={self.shutdown!r})"

    @property
    def running(self) -> int:
        """How many runs are queued or in flight."""
        with self._lock:
            return len(self._pending)

    async def start(self, runtime: Runtime) -> None:
        """Start the worker threads and queue what lost its lease."""
        store = runtime.store
        direct = self.store_access == "direct" or (
            self.store_access == "auto" and _thread_safe(store)
        )
        if not direct:
            store = _LoopStore(store, asyncio.get_running_loop())
        self._runtime = Runtime(store, runtime.strategies, runtime.settings)
        self._closing = False
        if not self._workers:
            number = next(_counter)
            self._workers = [
                _Worker(f"planner-threadpool-{number}-{i}", runtime.settings, self._runtime.store)
                for i in range(self.max_workers)
            ]
            for worker in self._workers:
                await anyio.to_thread.run_sync(worker.ready.wait)
            with self._lock:
                self._idle = list(self._workers)
        if self.recover:
            for execution in await runtime.store.reclaimable([self.name]):
                log.info(
                    "recovering execution %s (attempt %d)", execution.id, execution.attempt + 1
                )
                self._enqueue(execution.id)

    def _enqueue(self, execution_id: str) -> None:
        with self._lock:
            if execution_id in self._pending:
                return
            self._pending.add(execution_id)
            if not self._idle:
                self._backlog.append(execution_id)
                return
            worker = self._idle.pop()
        assert worker.loop is not None
        worker.loop.call_soon_threadsafe(self._start, worker, execution_id)

    async def submit(self, execution: Execution) -> str:
        """Queue the run for a worker thread and return its workflow id.

        Raises:
            RuntimeError: the executor is not started, or is shutting down.
        """
        if self._runtime is None:
            raise RuntimeError("the executor is not started")
        if self._closing:
            raise RuntimeError("the executor is shutting down")
        self._enqueue(execution.id)
        return execution.workflow_id

    # -- on the worker threads --------------------------------------------------------------

    def _start(self, worker: _Worker, execution_id: str) -> None:
        assert worker.loop is not None
        worker.loop.create_task(self._job(worker, execution_id))

    async def _job(self, worker: _Worker, execution_id: str) -> None:
        runtime = self._runtime
        assert runtime is not None
        try:
            with anyio.CancelScope() as scope:
                with self._lock:
                    self._running[execution_id] = (asyncio.get_running_loop(), scope)
                try:
                    await runtime.run(execution_id, owner=self._owner, keeper=worker.keeper)
                except Exception:
                    log.exception("run of %s crashed", execution_id)
        finally:
            with self._lock:
                self._pending.discard(execution_id)
                self._running.pop(execution_id, None)
                following = self._backlog.popleft() if self._backlog else None
                if following is None:
                    self._idle.append(worker)
            self._notifier.notify(_IDLE)
            if following is not None:
                self._start(worker, following)

    # -- cancel and shutdown -------------------------------------------------------------

    def _cancel_running(self, execution_ids: Collection[str] | None = None) -> None:
        with self._lock:
            targets = [
                entry
                for execution_id, entry in self._running.items()
                if execution_ids is None or execution_id in execution_ids
            ]
        for loop, scope in targets:
            try:
                loop.call_soon_threadsafe(scope.cancel)
            except RuntimeError:  # that run has just ended and its loop closed
                pass

    async def cancel(self, execution: Execution) -> None:
        """Cancel the run if it is in flight on a worker thread here."""
        self._cancel_running([execution.id])

    async def _wait_idle(self, timeout: float | None, *, running_only: bool = False) -> bool:
        """Wait until no run is in flight (and, unless ``running_only``, none is queued)."""

        def idle() -> bool:
            with self._lock:
                return not (self._running if running_only else self._pending)

        if timeout is not None:
            return await self._notifier.wait(_IDLE, idle, timeout)
        while not await self._notifier.wait(_IDLE, idle, 60.0):
            pass
        return True

    async def close(self) -> None:
        """Stop taking work; wait for (or cancel) runs in flight; stop the threads."""
        if not self._workers:
            return
        self._closing = True
        if self.shutdown == "wait":
            await self._wait_idle(self.shutdown_timeout)
        with self._lock:
            # Never started: left pending, for the next start (or another process) to recover.
            self._pending.difference_update(self._backlog)
            self._backlog.clear()
        self._cancel_running()
        await self._wait_idle(None, running_only=True)
        workers, self._workers = self._workers, []
        with self._lock:
            self._idle = []
        for worker in workers:
            worker.stop()
        for worker in workers:
            await anyio.to_thread.run_sync(worker.thread.join)
