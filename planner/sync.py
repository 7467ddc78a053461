"""A blocking facade over :class:`~planner.Planner`, for scripts and REPLs.

:class:`SyncPlanner` runs a Planner on an event loop of its own, in a
background thread, and every method blocks until the loop has answered. It
therefore works the same in a plain script (no loop), in a REPL, and inside a
running event loop such as a Jupyter kernel's (the caller's loop is blocked
while it waits, the Planner's is not)::

    from planner.sync import SyncPlanner

    with SyncPlanner(strategies={"mine": my_strategy}) as planner:
        response = planner.generate(request)
        for event in planner.stream(response.execution_id):
            print(event.seq, event.type)
        plan = planner.wait(response.execution_id)

Generations keep running between calls: the loop runs until :meth:`SyncPlanner.close`.
"""

from __future__ import annotations

import builtins
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Self, TextIO, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from planner.events import Event
from planner.execution import Execution, ExecutionStatus
from planner.interfaces import Executor, Store, Strategy
from planner.models import PlanGenerationResponse, TaskPlanRequest
from planner.plan import TaskPlan
from planner.planner import Planner
from planner.render import display_sync

__all__ = ["SyncPlanner"]

T = TypeVar("T")


def _start_loop() -> tuple[BlockingPortal, threading.Thread]:
    """Start an event loop in a daemon thread and return the portal into it."""
    found: queue.SimpleQueue[BlockingPortal | BaseException] = queue.SimpleQueue()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            found.put(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve)
        except BaseException as exc:  # reported to the constructor, which re-raises it
            found.put(exc)

    thread = threading.Thread(target=run, name="planner-sync-loop", daemon=True)
    thread.start()
    got = found.get()
    if isinstance(got, BaseException):
        raise got
    return got, thread


def _stop_loop(portal: BlockingPortal, thread: threading.Thread, planner: Planner | None) -> None:
    if threading.get_ident() == thread.ident:
        return  # dropped on its own loop: nothing can block there; the daemon thread stays
    try:
        if planner is not None:
            portal.call(planner.close)
    finally:
        portal.call(portal.stop, True)
        thread.join()


async def _next(events: AsyncIterator[Event]) -> Event | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


class SyncPlanner:
    """A :class:`~planner.Planner` with blocking methods, run on a background thread's loop.

    Args:
        store, executor, strategies: as for :class:`~planner.Planner`.
        planner: an existing, not yet started Planner to run instead of building one
            (then give no other arguments).
        options: other keyword arguments of :class:`~planner.Planner` (settings ...).

    The Planner is started at construction; use ``with SyncPlanner(...) as p:``
    or call :meth:`close`. Methods must not be called from the Planner's own
    loop (a strategy running on it); anywhere else is fine.

    Attributes:
        planner: the underlying async Planner (its coroutines belong to the background loop).

    Raises:
        ValueError: ``planner`` together with other arguments.
        UnknownPluginError, MissingExtraError: as for :class:`~planner.Planner`.
    """

    def __init__(
        self,
        store: Store | str = "memory://",
        executor: Executor | str = "inprocess",
        strategies: Mapping[str, Strategy] | None = None,
        *,
        planner: Planner | None = None,
        **options: Any,
    ) -> None:
        if planner is not None and (
            options or strategies is not None or store != "memory://" or executor != "inprocess"
        ):
            raise ValueError("give either planner= or the arguments to build one, not both")
        portal, thread = _start_loop()
        self._portal: BlockingPortal | None = portal
        try:
            # Built on the loop's thread: stores and executors may bind to the running loop.
            self.planner: Planner = planner or portal.call(
                lambda: Planner(store, executor, strategies, **options)
            )
            portal.call(self.planner.start)
        except BaseException:
            self._portal = None
            _stop_loop(portal, thread, None)
            raise
        # Closed by close(), or when dropped, or at interpreter exit (the thread is a
        # daemon, so a forgotten close never keeps the interpreter from exiting).
        self._finalizer = weakref.finalize(self, _stop_loop, portal, thread, self.planner)

    # -- running on the loop -------------------------------------------------------------

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        portal = self._portal
        if portal is None:
            raise RuntimeError("the SyncPlanner is closed")
        future = portal.start_task_soon(func, *args)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while waiting: stop the call on the loop too (a no-op once it is done).
            future.cancel()
            raise

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._portal is None

    def close(self) -> None:
        """Close the Planner (executor, then store) and stop the background loop. Idempotent."""
        if self._portal is None:
            return
        self._portal = None
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the Planner's methods ---------------------------------------------------------------

    def validate(self, request: TaskPlanRequest | Mapping[str, Any]) -> TaskPlanRequest:
        """Validate a request as :meth:`generate` does (see :meth:`Planner.validate`)."""
        return self.planner.validate(request)

    def generate(
        self,
        request: TaskPlanRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        organization_id: str | None = None,
        parent_execution_id: str | None = None,
    ) -> PlanGenerationResponse:
        """Submit a plan generation and return at once (see :meth:`Planner.generate`).

        Raises:
            InvalidRequestError, UnknownPluginError, MissingExtraError, SubmitError: as there.
        """

        async def run() -> PlanGenerationResponse:
            return await self.planner.generate(
                request,
                idempotency_key=idempotency_key,
                organization_id=organization_id,
                parent_execution_id=parent_execution_id,
            )

        return self._call(run)

    def stream(self, execution_id: str, after: int = 0) -> Generator[Event, None, None]:
        """Yield the execution's events after ``after``, then live ones, ending after ``done``.

        Breaking out of the loop early is fine: closing the generator (or dropping it)
        closes the stream on the loop.

        Raises:
            ExecutionNotFoundError: no such execution (on first iteration).
        """
        events = self.planner.stream(execution_id, after)
        try:
            while (event := self._call(_next, events)) is not None:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None and self._portal is not None:
                self._call(aclose)

    def events(self, execution_id: str, after: int = 0) -> builtins.list[Event]:
        """Return the events logged so far after ``after``, without waiting."""
        return self._call(self.planner.events, execution_id, after)

    def wait(self, execution_id: str, timeout: float | None = None) -> TaskPlan:
        """Wait for the execution to end and return its plan (see :meth:`Planner.wait`).

        Raises:
            PlanGenerationFailedError: the execution failed.
            ExecutionCancelledError: it was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
            ExecutionNotFoundError: no such execution.
        """
        return self._call(self.planner.wait, execution_id, timeout)

    def get(self, execution_id: str) -> Execution:
        """Return the execution record.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        return self._call(self.planner.get, execution_id)

    def list(
        self,
        *,
        status: ExecutionStatus | str | None = None,
        limit: int = 50,
        before: str | None = None,
        organization_id: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first (see :meth:`Planner.list`).

        Raises:
            ValueError: an unknown status or a limit below 1.
            ExecutionNotFoundError: ``before`` names no execution.
        """

        async def run() -> builtins.list[Execution]:
            return await self.planner.list(
                status=status, limit=limit, before=before, organization_id=organization_id
            )

        return self._call(run)

    def refine(
        self,
        execution_id: str,
        feedback: str,
        *,
        conversation_context: str | None = None,
        **changes: Any,
    ) -> PlanGenerationResponse:
        """Submit a refinement of a completed execution's plan (see :meth:`Planner.refine`).

        Raises:
            ExecutionNotFoundError, ExecutionStateError, InvalidRequestError: as there.
        """

        async def run() -> PlanGenerationResponse:
            return await self.planner.refine(
                execution_id, feedback, conversation_context=conversation_context, **changes
            )

        return self._call(run)

    def cancel(self, execution_id: str, *, timeout: float = 10.0) -> Execution:
        """Cancel an execution and return its final record (see :meth:`Planner.cancel`).

        Raises:
            ExecutionNotFoundError: no such execution.
            ExecutionFinishedError: it has already ended.
        """

        async def run() -> Execution:
            return await self.planner.cancel(execution_id, timeout=timeout)

        return self._call(run)

    def display(
        self,
        execution_id: str,
        *,
        after: int = 0,
        rich: bool | None = None,
        file: TextIO | None = None,
        max_lines: int = 12,
    ) -> None:
        """Show the execution's progress live until it ends (see :func:`planner.display`).

        The display is driven from the calling thread, so a notebook cell shows it.
        Returns nothing (``get`` gives the record).

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        display_sync(
            self.stream(execution_id, after),
            lambda: self.get(execution_id),
            execution_id,
            rich=rich,
            file=file,
            max_lines=max_lines,
        )
