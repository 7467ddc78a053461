"""One run of one execution: the job every executor carries out.

``Runtime.run(execution_id, owner=...)`` claims the lease, calls the strategy
the request names, validates the plan against the request and writes the
outcome.  Whatever happens (a plan, an exception, a timeout, a cancellation)
the execution ends in a final status and its log in exactly one terminal event
followed by ``done``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import ValidationError

from planner.context import RunContext
from planner.errors import (
    ExecutionStateError,
    PlanValidationError,
    PluginError,
    StrategyError,
)
from planner.events import make_data
from planner.execution import ErrorInfo, Execution, ExecutionStatus, utcnow
from planner.interfaces import NewEvent, Store, Strategy
from planner.plan import TaskPlan, validate_plan
from planner.settings import Settings

__all__ = ["LeaseKeeper", "Runtime", "error_info", "terminal_events"]

log = logging.getLogger("planner")

_DONE_MESSAGES = {
    ExecutionStatus.COMPLETED: "Plan generation completed",
    ExecutionStatus.FAILED: "Plan generation failed",
    ExecutionStatus.CANCELLED: "Plan generation cancelled",
}


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception as the ``error`` of an execution record."""
    if isinstance(exc, PlanValidationError):
        return ErrorInfo(type="plan_validation", message=str(exc), details=exc.details)
    if isinstance(exc, ValidationError):
        return ErrorInfo(
            type="invalid_plan",
            message=f"the strategy returned a plan that does not fit TaskPlan: {exc.error_count()}"
            " validation error(s)",
            details=[
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ],
        )
    if isinstance(exc, TimeoutError):
        return ErrorInfo(type="timeout", message=str(exc) or "plan generation timed out")
    if isinstance(exc, StrategyError):
        return ErrorInfo(type=type(exc).__name__, message=str(exc), details=exc.details)
    return ErrorInfo(type=type(exc).__name__, message=str(exc) or repr(exc))


def terminal_events(
    execution_id: str, status: ExecutionStatus, outcome: NewEvent
) -> list[NewEvent]:
    """Return the closing events of a log: the outcome, then ``done``."""
    # ``make_data("done", ...)`` of three strings, written out: it is on the path of every run.
    done = {"message": _DONE_MESSAGES[status], "execution_id": execution_id, "status": status.value}
    return [outcome, NewEvent("done", done)]


async def renew_or_stop(
    store: Store, execution_id: str, owner: str, settings: Settings, lost: Callable[[bool], None]
) -> bool:
    """Renew one lease; call ``lost(cancel_requested)`` and return False when the run must stop."""
    try:
        record = await store.renew(execution_id, owner, settings.lease_ttl)
    except Exception:  # a store hiccup: keep the run, try again next round
        log.warning("lease renewal of %s failed", execution_id, exc_info=True)
        return True
    if record is None:  # the lease expired and another owner took over, or it ended
        lost(False)
        return False
    if record.cancel_requested:  # cancelled from another process
        lost(True)
        return False
    return True


class LeaseKeeper:
    """Renews the leases of all runs in flight on one event loop, from one task.

    Executors that keep many runs on a loop start one keeper (``await
    keeper.run()`` in a background task) and pass it to :meth:`Runtime.run`,
    so a run costs no task of its own for its lease.

    Args:
        store: the store holding the leases.
        settings: ``lease_ttl`` sets the renewal interval (a third of it).
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._runs: dict[str, tuple[str, Callable[[bool], None]]] = {}

    def add(self, execution_id: str, owner: str, lost: Callable[[bool], None]) -> None:
        """Keep this run's lease; ``lost(cancel_requested)`` is called if it must stop."""
        self._runs[execution_id] = (owner, lost)

    def discard(self, execution_id: str) -> None:
        """Stop keeping the run's lease (it has ended)."""
        self._runs.pop(execution_id, None)

    async def run(self) -> None:
        """Renew every registered lease each ``lease_ttl / 3`` seconds, until cancelled."""
        while True:
            await anyio.sleep(self.settings.lease_ttl / 3)
            for execution_id, (owner, lost) in list(self._runs.items()):
                if execution_id in self._runs and not await renew_or_stop(
                    self.store, execution_id, owner, self.settings, lost
                ):
                    self.discard(execution_id)


class Runtime:
    """Runs executions from a store with a set of strategies.

    Args:
        store: where records and events live.
        strategies: returns the strategy for a name (raises ``PluginError``).
        settings: timeouts, lease length, models.
    """

    def __init__(
        self,
        store: Store,
        strategies: Callable[[str], Strategy],
        settings: Settings,
    ) -> None:
        self.store = store
        self.strategies = strategies
        self.settings = settings

    def strategy_name(self, execution: Execution) -> str:
        """Return the strategy name the execution's request asks for."""
        return execution.request.planning_strategy or self.settings.default_strategy

    async def run(
        self, execution_id: str, *, owner: str, keeper: LeaseKeeper | None = None
    ) -> ExecutionStatus | None:
        """Run one attempt of the execution and record its outcome.

        Args:
            execution_id: the execution to run.
            owner: the lease owner id of this attempt.
            keeper: the executor's :class:`LeaseKeeper`, which renews the lease of
                every run in flight from one task; without one the run renews its
                own lease from a task of its own.

        Returns:
            The final status, or None when the execution was not claimable
            (already final, or leased to a live owner).

        Raises:
            The event loop's cancellation exception, after recording the
            execution as cancelled, when the run is cancelled from outside.
        """
        execution = await self.store.claim(execution_id, owner, self.settings.lease_ttl)
        if execution is None:
            return None
        ctx = RunContext(self.store, execution, self.settings)
        try:
            strategy = self.strategies(self.strategy_name(execution))
        except PluginError as exc:
            return await self._fail(execution, owner, ctx, exc)

        # One scope bounds the strategy: its deadline is the run's timeout, and
        # ``lost`` cancels it when the lease is lost or a cancel is requested.
        timeout = self.settings.timeout
        strategy_scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        failure: Exception | None = None
        plan: TaskPlan | None = None
        stopped = False

        def lost(cancel_requested: bool) -> None:
            nonlocal stopped
            stopped = True
            ctx.cancel_requested = cancel_requested
            strategy_scope.cancel()

        try:
            if keeper is not None:
                keeper.add(execution_id, owner, lost)
                try:
                    with strategy_scope:
                        plan = await self._plan(strategy, execution, ctx)
                except Exception as exc:
                    failure = exc
                finally:
                    keeper.discard(execution_id)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_lease, execution_id, owner, lost)
                    try:
                        with strategy_scope:
                            plan = await self._plan(strategy, execution, ctx)
                    except Exception as exc:  # recorded below, outside the task group
                        failure = exc
                    finally:
                        tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancelled(execution, owner, ctx)
            raise
        if (
            plan is None
            and failure is None
            and not stopped
            and strategy_scope.cancelled_caught
            and anyio.current_time() >= strategy_scope.deadline
        ):
            failure = TimeoutError(f"plan generation timed out after {timeout:g} s")
        if failure is not None:
            return await self._fail(execution, owner, ctx, failure)
        if plan is None:  # the strategy scope was cancelled: cancel requested or lease lost
            return await self._cancelled(execution, owner, ctx)
        return await self._complete(execution, owner, ctx, plan)

    async def _plan(self, strategy: Strategy, execution: Execution, ctx: RunContext) -> TaskPlan:
        # The run's deadline is on the scope around this call (see ``run``).
        try:
            result: Any = await strategy.plan(execution.request, ctx)
        except TimeoutError:
            raise TimeoutError(
                f"plan generation timed out after {self.settings.timeout:g} s"
            ) from None
        if isinstance(result, TaskPlan):
            plan = result
        elif isinstance(result, dict):
            plan = TaskPlan.model_validate(result)
        else:
            raise StrategyError(
                f"the strategy returned {type(result).__name__}, expected a TaskPlan or a dict"
            )
        violations = validate_plan(plan, execution.request)
        if violations:
            raise PlanValidationError(violations)
        return plan

    async def _keep_lease(
        self, execution_id: str, owner: str, lost: Callable[[bool], None]
    ) -> None:
        while True:
            await anyio.sleep(self.settings.lease_ttl / 3)
            if not await renew_or_stop(self.store, execution_id, owner, self.settings, lost):
                return

    def _metadata(self, execution: Execution, ctx: RunContext, **more: Any) -> Any:
        models = list(execution.metadata.models)
        models.extend(m for m in ctx.models if m not in models)
        return execution.metadata.model_copy(
            update={"usage": execution.metadata.usage + ctx.usage, "models": models, **more}
        )

    async def _finish(
        self,
        execution: Execution,
        owner: str,
        status: ExecutionStatus,
        outcome: NewEvent,
        **changes: Any,
    ) -> ExecutionStatus:
        try:
            await self.store.update(
                execution.id,
                status=status,
                owner=owner,
                events=terminal_events(execution.id, status, outcome),
                completed_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
                cancel_requested=False,
                **changes,
            )
        except ExecutionStateError as exc:
            # Already ended (a forced cancel won the race) or reclaimed by another owner.
            log.info("outcome of %s not recorded: %s", execution.id, exc)
        return status

    async def _complete(
        self, execution: Execution, owner: str, ctx: RunContext, plan: TaskPlan
    ) -> ExecutionStatus:
        plan_json = plan.model_dump(mode="json")
        now = utcnow()
        outcome = NewEvent(
            "complete",
            {"plan": plan_json, "progress": 100, "message": "Plan generated successfully"},
        )
        return await self._finish(
            execution,
            owner,
            ExecutionStatus.COMPLETED,
            outcome,
            plan_json=plan_json,
            metadata=self._metadata(
                execution, ctx, total_tasks=plan.total_tasks, generated_at=now, current_step=None
            ),
        )

    async def _fail(
        self, execution: Execution, owner: str, ctx: RunContext, exc: BaseException
    ) -> ExecutionStatus:
        info = error_info(exc)
        if not isinstance(exc, StrategyError | TimeoutError | ValidationError | PluginError):
            log.warning("plan generation %s failed", execution.id, exc_info=exc)
        data = make_data("error", error=info.type, message=info.message, details=info.details)
        return await self._finish(
            execution,
            owner,
            ExecutionStatus.FAILED,
            NewEvent("error", data),
            error=info,
            metadata=self._metadata(execution, ctx),
        )

    async def _cancelled(
        self, execution: Execution, owner: str, ctx: RunContext
    ) -> ExecutionStatus:
        requested = ctx.cancel_requested
        if not requested:
            try:
                requested = (await self.store.get(execution.id)).cancel_requested
            except Exception:
                requested = False
        reason = "requested" if requested else "shutdown"
        message = (
            "Plan generation cancelled on request"
            if requested
            else "Plan generation cancelled: the planner shut down"
        )
        data = make_data("cancelled", reason=reason, message=message)
        return await self._finish(
            execution,
            owner,
            ExecutionStatus.CANCELLED,
            NewEvent("cancelled", data),
            metadata=self._metadata(execution, ctx),
        )
