"""The ``Planner``: submit a request, follow its progress, get the plan."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import anyio
from pydantic import ValidationError

from planner.errors import (
    ExecutionCancelledError,
    ExecutionFinishedError,
    ExecutionStateError,
    InvalidRequestError,
    PlanGenerationFailedError,
    SubmitError,
    UnknownPluginError,
)
from planner.events import Event, make_data, recurring_data
from planner.execution import (
    ErrorInfo,
    Execution,
    ExecutionMetadata,
    ExecutionStatus,
    utcnow,
)
from planner.interfaces import Executor, NewEvent, Store, Strategy
from planner.models import PlanGenerationResponse, TaskPlanRequest
from planner.plan import TaskPlan
from planner.plugins import PluginRegistry, default_registry
from planner.runtime import Runtime, terminal_events
from planner.settings import Settings

__all__ = ["Planner", "workflow_id_for"]

_SUBMITTED = (
    "Plan generation submitted. Use /api/v1/executions/{execution_id}/stream to track progress."
)


class _StrategyNames:
    """The strategy names a Planner can run, for request validation, looked up lazily.

    ``planning_strategy`` validation checks ``name in names`` only for a name
    outside the seed's enum, and lists them all only to report an error.
    """

    __slots__ = ("_planner",)

    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    def __contains__(self, name: object) -> bool:
        planner = self._planner
        return name in planner._own_strategies or name in planner.registry.names("strategy")

    def __iter__(self) -> Iterator[str]:
        return iter(self._planner.strategy_names)


def workflow_id_for(execution_id: str) -> str:
    """Return the workflow id of an execution, as the reference names it."""
    return f"plan-generation-{execution_id}"


class Planner:
    """Turns task requests into plans, asynchronously, with live progress.

    Args:
        store: a :class:`~planner.interfaces.Store` or its URL (``"memory://"``).
        executor: an :class:`~planner.interfaces.Executor` or its name/URL (``"inprocess"``).
        strategies: strategy objects by name; they take precedence over plugins.
        settings: a :class:`~planner.settings.Settings`; ``settings_options`` override its fields.
        registry: the plugin registry (default: the process-wide one).
        store_options, executor_options: keyword options for building store/executor by URL.

    Use it as ``async with Planner(...) as planner:``, or ``await planner.start()``
    and ``await planner.close()`` (in a notebook, across cells).

    Raises:
        UnknownPluginError: an unknown store or executor name (at construction).
        MissingExtraError: the store or executor needs packages that are not installed.
    """

    def __init__(
        self,
        store: Store | str = "memory://",
        executor: Executor | str = "inprocess",
        strategies: Mapping[str, Strategy] | None = None,
        *,
        settings: Settings | None = None,
        registry: PluginRegistry | None = None,
        store_options: Mapping[str, Any] | None = None,
        executor_options: Mapping[str, Any] | None = None,
        **settings_options: Any,
    ) -> None:
        self.registry = registry or default_registry()
        base = settings or Settings()
        if settings_options:
            base = Settings(**{**base.__dict__, **settings_options})
        self.settings = base
        self.store: Store = (
            self.registry.create("store", store, **(store_options or {}))
            if isinstance(store, str)
            else store
        )
        self.executor: Executor = (
            self.registry.create("executor", executor, **(executor_options or {}))
            if isinstance(executor, str)
            else executor
        )
        self._own_strategies: dict[str, Strategy] = dict(strategies or {})
        self._plugin_strategies: dict[str, Strategy] = {}
        self.runtime = Runtime(self.store, self.strategy, self.settings)
        self._started = False

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> Self:
        """Set up the store and start the executor (which recovers lost runs). Idempotent."""
        if not self._started:
            await self.store.setup()
            try:
                await self.executor.start(self.runtime)
            except BaseException:
                await self.store.close()
                raise
            self._started = True
        return self

    async def close(self) -> None:
        """Shut the executor down (see its shutdown policy), then close the store."""
        if self._started:
            self._started = False
            try:
                await self.executor.close()
            finally:
                await self.store.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- strategies ------------------------------------------------------

    @property
    def strategy_names(self) -> builtins.list[str]:
        """The strategy names this Planner can run: its own and the plugins'."""
        return sorted(set(self._own_strategies) | set(self.registry.names("strategy")))

    def strategy(self, name: str) -> Strategy:
        """Return the strategy for a name (own first, then plugins, built once).

        Raises:
            UnknownPluginError: no strategy has that name.
            MissingExtraError: its packages are not installed.
        """
        own = self._own_strategies.get(name)
        if own is not None:
            return own
        built = self._plugin_strategies.get(name)
        if built is None:
            if name not in self.registry.names("strategy"):
                raise UnknownPluginError("strategy", name, self.strategy_names)
            built = self.registry.create("strategy", name)
            self._plugin_strategies[name] = built
        return built

    # -- submit ------------------------------------------------------------

    def validate(self, request: TaskPlanRequest | Mapping[str, Any]) -> TaskPlanRequest:
        """Validate a request as :meth:`generate` does, accepting this Planner's strategy names.

        Raises:
            InvalidRequestError: with ``loc``/``msg``/``type`` entries like the seed's.
        """
        # A model is validated again from its data: the record gets its own copy
        # (a caller may change the model later) checked against this Planner.
        data: Any = request.model_dump() if isinstance(request, TaskPlanRequest) else request
        try:
            return TaskPlanRequest.__pydantic_validator__.validate_python(  # type: ignore[no-any-return]
                data, context={"strategies": _StrategyNames(self)}
            )
        except ValidationError as exc:
            raise InvalidRequestError(exc.errors()) from None

    async def generate(
        self,
        request: TaskPlanRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        organization_id: str | None = None,
        parent_execution_id: str | None = None,
    ) -> PlanGenerationResponse:
        """Submit a plan generation and return at once.

        Args:
            request: the request, as a model or as its JSON data.
            idempotency_key: the same key (per organization) returns the same execution.
            organization_id: the tenant the execution belongs to.
            parent_execution_id: the execution this one refines.

        Returns:
            ``PlanGenerationResponse`` with status ``pending`` (or the existing
            execution's status for a known idempotency key).

        Raises:
            InvalidRequestError: the request is invalid; nothing was written.
            UnknownPluginError, MissingExtraError: its strategy is not available;
                nothing was written.
            SubmitError: the executor refused the run; the record is marked failed.
        """
        self._require_started()
        valid = self.validate(request)
        strategy_name = valid.planning_strategy or self.settings.default_strategy
        self.strategy(strategy_name)  # fail before writing anything
        now = utcnow()
        execution_id = str(uuid.uuid4())
        owner = self.executor.owner
        execution = Execution(
            id=execution_id,
            workflow_id=workflow_id_for(execution_id),
            request=valid,
            metadata=ExecutionMetadata(
                quick_mode=valid.quick_mode,
                priority=valid.priority,
                planning_strategy=strategy_name,
            ),
            created_at=now,
            updated_at=now,
            parent_execution_id=parent_execution_id,
            idempotency_key=idempotency_key,
            organization_id=organization_id,
            executor=self.executor.name,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=self.settings.lease_ttl)
            if owner is not None
            else None,
        )
        first = NewEvent(
            "status", recurring_data("status", status="pending", current_step="submitted")
        )
        record, created = await self.store.create(execution, [first])
        if created:
            try:
                await self.executor.submit(record)
            except Exception as exc:
                await self._fail_submit(record, exc)
                raise SubmitError(
                    record.id, f"could not submit plan generation {record.id}: {exc}"
                ) from exc
        return PlanGenerationResponse(
            execution_id=record.id,
            workflow_id=record.workflow_id,
            status=record.status.value if not created else "pending",
            message=_SUBMITTED.format(execution_id=record.id),
        )

    async def _fail_submit(self, execution: Execution, exc: Exception) -> None:
        info = ErrorInfo(type="submit_failed", message=f"{type(exc).__name__}: {exc}")
        data = make_data("error", error=info.type, message=info.message)
        try:
            await self.store.update(
                execution.id,
                status=ExecutionStatus.FAILED,
                events=terminal_events(
                    execution.id, ExecutionStatus.FAILED, NewEvent("error", data)
                ),
                error=info,
                completed_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
        except ExecutionStateError:
            pass  # the run started after all and has ended on its own

    async def refine(
        self,
        execution_id: str,
        feedback: str,
        *,
        conversation_context: str | None = None,
        **changes: Any,
    ) -> PlanGenerationResponse:
        """Submit a refinement of a completed execution's plan.

        The new request is the parent's with ``previous_plan`` set to its plan,
        ``refinement_feedback`` to ``feedback``, ``iteration`` one higher and
        ``conversation_context`` extended; ``changes`` override other fields.

        Raises:
            ExecutionNotFoundError: no such execution.
            ExecutionStateError: the parent has no plan (it did not complete).
            InvalidRequestError: ``changes`` make the request invalid.
        """
        parent = await self.store.get(execution_id)
        if parent.status is not ExecutionStatus.COMPLETED or parent.plan_json is None:
            raise ExecutionStateError(
                f"execution {execution_id!r} has no plan to refine (status {parent.status.value})"
            )
        if not feedback.strip():
            raise InvalidRequestError(
                [
                    {
                        "loc": ["refinement_feedback"],
                        "msg": "Feedback must not be empty",
                        "type": "value_error",
                    }
                ]
            )
        context = conversation_context
        if context is None:
            turns = [parent.request.conversation_context, f"User feedback: {feedback}"]
            context = "\n".join(t for t in turns if t)
        data = parent.request.model_dump()
        data.update(
            previous_plan=parent.plan_json,
            refinement_feedback=feedback,
            iteration=parent.request.iteration + 1,
            conversation_context=context,
            **changes,
        )
        return await self.generate(
            data, organization_id=parent.organization_id, parent_execution_id=parent.id
        )

    # -- follow --------------------------------------------------------------

    async def get(self, execution_id: str) -> Execution:
        """Return the execution record.

        Raises:
            ExecutionNotFoundError: no such execution.
        """
        return await self.store.get(execution_id)

    async def list(
        self,
        *,
        status: ExecutionStatus | str | None = None,
        limit: int = 50,
        before: str | None = None,
        organization_id: str | None = None,
    ) -> builtins.list[Execution]:
        """Return executions, newest first; pass the last id as ``before`` for the next page.

        Raises:
            ValueError: an unknown status or a limit below 1.
            ExecutionNotFoundError: ``before`` names no execution.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self.store.list(
            status=ExecutionStatus(status) if status is not None else None,
            organization_id=organization_id,
            limit=limit,
            before=before,
        )

    async def events(self, execution_id: str, after: int = 0) -> builtins.list[Event]:
        """Return the events logged so far after ``after``, without waiting."""
        return await self.store.read(execution_id, after)

    async def stream(
        self, execution_id: str, after: int = 0, *, heartbeat: float = 15.0
    ) -> AsyncIterator[Event]:
        """Yield the execution's events after ``after``, then live ones, ending after ``done``.

        Reconnecting with the last ``seq`` seen yields every later event exactly once.

        Raises:
            ExecutionNotFoundError: no such execution (on first iteration).
        """
        cursor = after
        while True:  # the first read raises ExecutionNotFoundError for an unknown id
            batch = await self.store.read(execution_id, cursor)
            for event in batch:
                cursor = event.seq
                yield event
                if event.type == "done":
                    return
            if not batch:
                if (await self.store.get(execution_id)).terminal:
                    # The final status and ``done`` commit together: a final record
                    # with nothing after the cursor means the caller has seen ``done``.
                    if not await self.store.read(execution_id, cursor, limit=1):
                        return
                    continue
                await self.store.wait(execution_id, cursor, heartbeat)

    async def wait(self, execution_id: str, timeout: float | None = None) -> TaskPlan:
        """Wait for the execution to end and return its plan.

        Raises:
            PlanGenerationFailedError: it failed (``.error`` says why).
            ExecutionCancelledError: it was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
            ExecutionNotFoundError: no such execution.
        """
        if timeout is None:
            return self._plan_of(await self._until_terminal(execution_id))
        # ``fail_after(timeout)`` without its generator wrapper: a scope with a
        # deadline, and TimeoutError when the deadline is what stopped it.
        with anyio.CancelScope(deadline=anyio.current_time() + timeout):
            return self._plan_of(await self._until_terminal(execution_id))
        # Only the scope's own deadline, cancelling the wait, gets here.
        raise TimeoutError

    async def _until_terminal(self, execution_id: str) -> Execution:
        execution = await self.store.wait_terminal(execution_id, 3600.0)
        while not execution.terminal:
            execution = await self.store.wait_terminal(execution_id, 3600.0)
        return execution

    @staticmethod
    def _plan_of(execution: Execution) -> TaskPlan:
        if execution.status is ExecutionStatus.COMPLETED and execution.plan_json is not None:
            return TaskPlan.model_validate(execution.plan_json)
        if execution.status is ExecutionStatus.CANCELLED:
            raise ExecutionCancelledError(execution.id)
        raise PlanGenerationFailedError(
            execution.id, execution.error or ErrorInfo(type="unknown", message="no error recorded")
        )

    # -- cancel ----------------------------------------------------------------

    async def cancel(self, execution_id: str, *, timeout: float = 10.0) -> Execution:
        """Cancel an execution and return its final record.

        A pending execution is cancelled at once; a running one is asked to stop
        (through the store and the executor) and, if its run does not end within
        ``timeout`` seconds, recorded as cancelled anyway.

        Raises:
            ExecutionNotFoundError: no such execution.
            ExecutionFinishedError: it has already ended.
        """
        execution = await self.store.get(execution_id)
        if execution.terminal:
            raise ExecutionFinishedError(execution_id, execution.status)
        if execution.status is ExecutionStatus.PENDING:
            try:
                cancelled = await self._force_cancel(execution_id, "Cancelled before it started")
                await self.executor.cancel(cancelled)  # in case its run was about to start
                return cancelled
            except ExecutionStateError:
                execution = await self.store.get(execution_id)  # it started meanwhile
                if execution.terminal:
                    raise ExecutionFinishedError(execution_id, execution.status) from None
        execution = await self.store.update(execution_id, cancel_requested=True)
        await self.executor.cancel(execution)
        cursor = await self._last_seq(execution_id)
        with anyio.move_on_after(timeout):
            while not execution.terminal:
                await self.store.wait(execution_id, cursor, 0.5)
                new = await self.store.read(execution_id, cursor)
                if new:
                    cursor = new[-1].seq
                execution = await self.store.get(execution_id)
        if not execution.terminal:
            try:
                execution = await self._force_cancel(
                    execution_id, f"Cancelled: the run did not stop within {timeout:g} s"
                )
            except ExecutionStateError:
                execution = await self.store.get(execution_id)
        return execution

    async def _last_seq(self, execution_id: str) -> int:
        events = await self.store.read(execution_id, 0)
        return events[-1].seq if events else 0

    async def _force_cancel(self, execution_id: str, message: str) -> Execution:
        data = make_data("cancelled", reason="requested", message=message)
        return await self.store.update(
            execution_id,
            status=ExecutionStatus.CANCELLED,
            events=terminal_events(
                execution_id, ExecutionStatus.CANCELLED, NewEvent("cancelled", data)
            ),
            completed_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            cancel_requested=False,
        )

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(
                "the Planner is not started: "
                "use 'async with Planner(...)' or 'await planner.start()'"
            )

    # -- maintenance -------------------------------------------------------------

    async def prune(self, *, older_than: timedelta | None = None, keep: int | None = None) -> int:
        """Delete finished executions older than ``older_than`` or beyond the newest ``keep``."""
        return await self.store.prune(older_than=older_than, keep=keep)
