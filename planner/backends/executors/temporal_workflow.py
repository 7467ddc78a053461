"""The Temporal workflow that runs one plan generation, and the data it exchanges.

This module is imported inside Temporal's workflow sandbox, so it imports only
``temporalio.workflow`` and pydantic: the activity that does the work (and
imports the strategies and their SDKs) is referred to by name.

The workflow schedules one activity, ``run_plan_generation``, which runs the
:class:`~planner.runtime.Runtime` job against the shared store.  Its outcome
decides how the workflow ends: ``completed`` returns, ``failed`` fails the
workflow (``ApplicationError`` of type ``PlanFailed``), ``cancelled`` ends it
cancelled.  Transient failures (a store hiccup, a lease still held by a worker
that died, a strategy error marked ``retryable``) are retried by Temporal with
exponential backoff.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, Field

__all__ = [
    "ACTIVITY_NAME",
    "NON_RETRYABLE_TYPES",
    "PlanGenerationInput",
    "PlanGenerationOutcome",
    "PlanGenerationState",
    "PlanGenerationWorkflow",
]

ACTIVITY_NAME = "run_plan_generation"
"""The name the worker registers the plan generation activity under."""

NON_RETRYABLE_TYPES = ("PlanFailed", "PlanCancelled")
"""``ApplicationError`` types the activity raises for outcomes no retry can change."""

Status = Literal["pending", "running", "completed", "failed", "cancelled"]


class PlanGenerationInput(BaseModel):
    """What the workflow needs: the execution id and the activity's policy.

    Attributes:
        execution_id: the execution to run (its record is in the shared store).
        max_attempts: how many attempts a strategy failure marked ``retryable`` may use.
        start_to_close_timeout: seconds one activity attempt may take.
        heartbeat_timeout: seconds without a heartbeat before Temporal retries the
            activity elsewhere (a killed worker).
        retry_initial_interval: seconds before the first retry.
        retry_max_interval: the longest wait between retries, in seconds.
        retry_backoff: how much the wait grows after each retry.
    """

    execution_id: str
    max_attempts: int = Field(default=3, ge=1)
    start_to_close_timeout: float = Field(default=900.0, gt=0)
    heartbeat_timeout: float = Field(default=10.0, gt=0)
    retry_initial_interval: float = Field(default=1.0, gt=0)
    retry_max_interval: float = Field(default=30.0, gt=0)
    retry_backoff: float = Field(default=2.0, ge=1)


class PlanGenerationOutcome(BaseModel):
    """What one activity run reports: the execution's status and attempt."""

    execution_id: str
    status: Status
    attempt: int = 0


class PlanGenerationState(BaseModel):
    """The answer of the ``get_state`` query.

    Attributes:
        execution_id: the execution.
        status: ``pending`` until the activity is scheduled, ``running`` while it
            runs (and retries), then the final status.
        attempt: the execution attempt that ended it (0 while unknown).
        error: the failure message, once failed.
    """

    execution_id: str
    status: Status = "pending"
    attempt: int = 0
    error: str | None = None


@workflow.defn(name="PlanGenerationWorkflow")
class PlanGenerationWorkflow:
    """Runs the plan generation activity once to its end, retrying transient failures."""

    def __init__(self) -> None:
        self._state: PlanGenerationState | None = None

    @workflow.run
    async def run(self, data: PlanGenerationInput) -> PlanGenerationOutcome:
        """Run the activity and end the way the execution ended.

        Raises:
            ApplicationError: the plan generation failed (type ``PlanFailed``).
            CancelledError: it was cancelled.
        """
        state = PlanGenerationState(execution_id=data.execution_id, status="running")
        self._state = state
        policy = RetryPolicy(
            initial_interval=timedelta(seconds=data.retry_initial_interval),
            backoff_coefficient=data.retry_backoff,
            maximum_interval=timedelta(seconds=data.retry_max_interval),
            maximum_attempts=0,  # bounded by the activity: see max_attempts
            non_retryable_error_types=list(NON_RETRYABLE_TYPES),
        )
        try:
            result = await workflow.execute_activity(
                ACTIVITY_NAME,
                data,
                result_type=PlanGenerationOutcome,
                start_to_close_timeout=timedelta(seconds=data.start_to_close_timeout),
                heartbeat_timeout=timedelta(seconds=data.heartbeat_timeout),
                retry_policy=policy,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            cause = err.cause
            if is_cancelled_exception(err) or (
                isinstance(cause, ApplicationError) and cause.type == "PlanCancelled"
            ):
                state.status = "cancelled"
                raise CancelledError("plan generation cancelled") from err
            state.status = "failed"
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            state.error = message
            raise ApplicationError(message, type="PlanFailed", non_retryable=True) from err
        except asyncio.CancelledError:  # the cancel request reached this coroutine first
            state.status = "cancelled"
            raise
        outcome = cast(PlanGenerationOutcome, result)
        state.status = outcome.status
        state.attempt = outcome.attempt
        if outcome.status == "failed":
            state.error = "plan generation failed"
            raise ApplicationError(
                f"plan generation {data.execution_id} failed", type="PlanFailed", non_retryable=True
            )
        if outcome.status == "cancelled":
            raise CancelledError("plan generation cancelled")
        return outcome

    @workflow.query(name="get_state")
    def get_state(self) -> PlanGenerationState:
        """Return the workflow's view of the execution: its status so far."""
        if self._state is None:
            return PlanGenerationState(execution_id="", status="pending")
        return self._state
