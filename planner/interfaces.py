"""The three plugin contracts: a store, an executor, a strategy.

Each is small on purpose.  A store keeps execution records and their event
logs; an executor decides where and when a run happens; a strategy turns a
request into a plan.  The core talks to plugins only through these classes.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, runtime_checkable

import anyio

from planner.events import Event
from planner.execution import Execution, ExecutionStatus
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan

if TYPE_CHECKING:
    from planner.context import RunContext
    from planner.runtime import Runtime

__all__ = ["Executor", "NewEvent", "Store", "Strategy"]


class NewEvent(NamedTuple):
    """An event to append: the store assigns ``seq`` and ``timestamp``."""

    type: str
    data: dict[str, Any]


class Store(ABC):
    """Execution records and their append-only event logs.

    Subclasses implement the abstract methods; :meth:`wait` has a polling
    default that stores with a wake-up mechanism override, and
    :meth:`wait_terminal` one built on :meth:`wait`.  Every method that
    changes a record does so atomically with the events it appends.  Stores
    are async context managers: ``async with store:`` runs :meth:`setup` and
    :meth:`close`.
    """

    poll_interval: float = 0.5
    """Seconds between reads in the default :meth:`wait`."""

    async def setup(self) -> None:
        """Prepare the store for use (connect, migrate). Called once before use."""

    async def close(self) -> None:
        """Release connections and wake-up machinery. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.setup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def create(
        self, execution: Execution, events: Sequence[NewEvent] = ()
    ) -> tuple[Execution, bool]:
        """Insert a new execution with its first events.

        When ``execution.idempotency_key`` is set and an execution of the same
        ``organization_id`` already has it, nothing is written.

        Returns:
            ``(record, True)`` for a new execution, ``(existing, False)`` for a
            known idempotency key.

        Raises:
            ValueError: an execution with that id exists.
        """

    @abstractmethod
    async def get(self, execution_id: str) -> Execution:
        """Return the execution.

        Raises:
            ExecutionNotFoundError: no execution has that id.
        """

    @abstractmethod
    async def list(
        self,
        *,
        status: ExecutionStatus | None = None,
        organization_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first.

        Args:
            status: only those in this status.
            organization_id: only those of this tenant.
            limit: at most this many.
            before: an execution id; only executions created before it (a page cursor).

        Raises:
            ExecutionNotFoundError: ``before`` names no execution.
        """

    @abstractmethod
    async def update(
        self,
        execution_id: str,
        *,
        status: ExecutionStatus | None = None,
        events: Sequence[NewEvent] = (),
        owner: str | None = None,
        **changes: Any,
    ) -> Execution:
        """Change a record and append events, in one atomic step.

        Args:
            status: the new status; the move is checked against
                :data:`planner.execution.TRANSITIONS`.
            events: events to append in the same step.
            owner: when given, the change applies only if this owner holds the lease.
            changes: other fields of :class:`Execution` to set.

        Returns:
            The updated record (``updated_at`` set to now).

        Raises:
            ExecutionNotFoundError: no execution has that id.
            ExecutionFinishedError: the execution has ended, or its log is closed.
            InvalidTransitionError: ``status`` is not a move allowed from the current one.
            LeaseLostError: ``owner`` is given and does not hold the lease.
        """

    @abstractmethod
    async def append(self, execution_id: str, events: Sequence[NewEvent]) -> builtins.list[Event]:
        """Append events to the log; they get consecutive ``seq`` numbers.

        Raises:
            ExecutionNotFoundError: no such execution.
            ExecutionFinishedError: the log is closed (its ``done`` event is written).
        """

    @abstractmethod
    async def read(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[Event]:
        """Return the events with ``seq > after``, in order.

        Raises:
            ExecutionNotFoundError: no such execution.
        """

    async def wait(self, execution_id: str, after: int, timeout: float) -> bool:
        """Wait until the log has an event with ``seq > after``, at most ``timeout`` seconds.

        Returns:
            Whether such an event exists now.
        """
        with anyio.move_on_after(timeout):
            while True:
                if await self.read(execution_id, after, limit=1):
                    return True
                await anyio.sleep(self.poll_interval)
        return bool(await self.read(execution_id, after, limit=1))

    async def wait_terminal(self, execution_id: str, timeout: float) -> Execution:
        """Wait until the execution is final (completed, failed, cancelled), at most ``timeout`` s.

        The default follows the event log with :meth:`read` and :meth:`wait`:
        a final status commits together with its ``done`` event, so the record
        is read again only once ``done`` is in the log (or a quiet wait timed
        out, in case a store's log and record ever disagree).  A store that can
        tell a final change from other writes overrides it, so that the waiter
        is woken once rather than for every event (as the planner's stores do).

        Returns:
            The record at the end: final, unless ``timeout`` passed first.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        deadline = anyio.current_time() + timeout
        execution = await self.get(execution_id)
        cursor = 0
        while not execution.terminal:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            events = await self.read(execution_id, cursor)
            if events:
                cursor = events[-1].seq
                if events[-1].type == "done":
                    execution = await self.get(execution_id)
                    continue
            if not await self.wait(execution_id, cursor, min(remaining, 15.0)):
                execution = await self.get(execution_id)
        return execution

    @abstractmethod
    async def claim(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Take the lease and mark the execution running, as a new attempt.

        A claim succeeds when the execution is not final and its lease is held by
        ``owner``, has expired, or is unset.  It sets status ``running``,
        increments ``attempt``, sets ``started_at`` if unset, and appends a
        ``status`` event (and, for a restart, a ``progress`` event saying so).

        Returns:
            The record after the claim, or None when it is final or leased to another.
        """

    @abstractmethod
    async def renew(self, execution_id: str, owner: str, ttl: float) -> Execution | None:
        """Extend ``owner``'s lease by ``ttl`` seconds from now.

        Returns:
            The record (whose ``cancel_requested`` the runner watches), or None
            when the lease is lost or the execution has ended.
        """

    @abstractmethod
    async def reclaimable(
        self, executors: Collection[str], limit: int = 100
    ) -> builtins.list[Execution]:
        """Return unfinished executions of these executor kinds whose lease has expired."""

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Delete finished executions (and their events) older than an age or beyond a count.

        Returns:
            How many executions were deleted.

        Raises:
            NotImplementedError: the store does not support pruning.
        """
        raise NotImplementedError(f"prune is not supported by {type(self).__name__}")


class Executor(ABC):
    """Runs executions: here, in threads, or on a cluster.

    An executor is started with the :class:`~planner.runtime.Runtime` that
    knows how to run one execution, and is an async context manager.
    """

    name: str = "executor"
    """The executor kind, recorded on executions it runs (``Execution.executor``)."""

    owner: str | None = None
    """The lease owner id of runs submitted here, or None when the executor does
    its own recovery (leases are then held by its workers)."""

    @abstractmethod
    async def start(self, runtime: Runtime) -> None:
        """Start accepting work; recover lost executions if the executor does recovery."""

    @abstractmethod
    async def submit(self, execution: Execution) -> str:
        """Schedule the execution's run and return at once.

        Returns:
            The workflow id of the run.

        Raises:
            Exception: the run could not be scheduled (the Planner marks it failed).
        """

    @abstractmethod
    async def cancel(self, execution: Execution) -> None:
        """Stop the execution's run if it is running here or on the executor's cluster."""

    @abstractmethod
    async def close(self) -> None:
        """Stop accepting work and shut down (wait or cancel, as configured)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@runtime_checkable
class Strategy(Protocol):
    """Turns a request into a plan.

    ``plan`` may return a :class:`TaskPlan` or a mapping of its fields; the
    runner validates it against the request.  Progress goes through
    ``ctx.emit``; cancellation arrives as the event loop's cancellation.
    """

    async def plan(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan | dict[str, Any]:
        """Produce a plan for the request."""
        ...
