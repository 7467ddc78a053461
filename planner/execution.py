"""The execution record: one plan generation, from submit to its end.

Statuses and the moves between them::

    pending ──► running ──► completed
       │           │ ╰────► failed
       │           ╰──────► cancelled
       ├──────────────────► failed      (the submit failed)
       ╰──────────────────► cancelled   (cancelled before it started)
    running ──► running                 (a lost attempt reclaimed: attempt + 1)

``completed``, ``failed`` and ``cancelled`` are final. Records are immutable
snapshots: a store returns a new one for every change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planner.errors import ExecutionFinishedError, InvalidTransitionError
from planner.models import TaskPlanRequest

__all__ = [
    "TRANSITIONS",
    "ErrorInfo",
    "Execution",
    "ExecutionMetadata",
    "ExecutionStatus",
    "TokenUsage",
    "check_transition",
    "utcnow",
]


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class ExecutionStatus(StrEnum):
    """Where an execution is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the status is final."""
        return self in _FINAL


_FINAL = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})

TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {ExecutionStatus.RUNNING, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
    ),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        }
    ),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}
"""The allowed moves: ``TRANSITIONS[current]`` is the set of next statuses."""


def check_transition(current: ExecutionStatus, new: ExecutionStatus, execution_id: str) -> None:
    """Raise unless an execution may move from ``current`` to ``new``.

    Raises:
        planner.errors.ExecutionFinishedError: ``current`` is final.
        planner.errors.InvalidTransitionError: the move is not allowed.
    """
    if new in TRANSITIONS[current]:
        return
    if current.terminal:
        raise ExecutionFinishedError(execution_id, current)
    raise InvalidTransitionError(execution_id, current, new)


class TokenUsage(BaseModel):
    """Tokens a generation used, and what they cost."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        # Usage is immutable: adding nothing gives the same value back, without a new object.
        if not _counts(other):
            return self
        if not _counts(self):
            return other
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


def _counts(usage: TokenUsage) -> bool:
    return bool(
        usage.input_tokens
        or usage.output_tokens
        or usage.cache_creation_input_tokens
        or usage.cache_read_input_tokens
        or usage.cost_usd
    )


_NO_USAGE = TokenUsage()
"""Zero usage: one shared (immutable) instance for records and runs that used no model."""


def _no_usage() -> TokenUsage:
    return _NO_USAGE


class ErrorInfo(BaseModel):
    """Why an execution failed: a type name, a message, optional details."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    details: Any = None


class ExecutionMetadata(BaseModel):
    """What was asked and what was used: the reference's ``execution_metadata`` and more."""

    model_config = ConfigDict(frozen=True, extra="allow")

    quick_mode: bool = False
    priority: str = "medium"
    planning_strategy: str
    models: list[str] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=_no_usage)
    current_step: str | None = None
    total_tasks: int | None = None
    generated_at: datetime | None = None


class Execution(BaseModel):
    """One plan generation: its request, status, plan and history.

    Attributes:
        id: the execution id (a UUID string).
        workflow_id: the executor's id for the run (``plan-generation-{id}``).
        status: see :class:`ExecutionStatus`.
        request: the validated request.
        plan_json: the plan (``TaskPlan`` as JSON data) once completed.
        error: why it failed, once failed.
        metadata: strategy, quick mode, priority, models used, token usage.
        created_at, started_at, completed_at, updated_at: UTC timestamps.
        attempt: how many times a run was started (a recovered run counts again).
        parent_execution_id: the execution this one refines.
        idempotency_key: the caller's key; the same key gives the same execution.
        organization_id: the tenant the execution belongs to, if any.
        executor: the kind of executor that runs it (recovery looks at this).
        cancel_requested: a cancel was asked for and not yet carried out.
        lease_owner, lease_expires_at: who runs it, and until when without renewal.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    workflow_id: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    request: TaskPlanRequest
    plan_json: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    metadata: ExecutionMetadata
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    attempt: int = 0
    parent_execution_id: str | None = None
    idempotency_key: str | None = None
    organization_id: str | None = None
    executor: str = "inprocess"
    cancel_requested: bool = False
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the execution has ended."""
        return self.status.terminal

    def _repr_html_(self) -> str:
        from planner.render import execution_html

        return execution_html(self)

    def _repr_markdown_(self) -> str:
        from planner.render import execution_markdown

        return execution_markdown(self)
