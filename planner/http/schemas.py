"""Bodies of the HTTP API beyond the seed's models (which live in :mod:`planner.models`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.execution import ErrorInfo, Execution, ExecutionStatus

__all__ = [
    "ErrorResponse",
    "ExecutionResponse",
    "HealthResponse",
    "PlanGenerationStatus",
    "RefineRequest",
]


class ErrorResponse(BaseModel):
    """An error: ``detail`` says what went wrong."""

    detail: str
    execution_id: str | None = None


class HealthResponse(BaseModel):
    """The service is up."""

    status: Literal["healthy"] = "healthy"
    service: str = "planner"
    version: str


class RefineRequest(BaseModel):
    """Refine a completed plan: the feedback, and optionally the conversation so far."""

    model_config = ConfigDict(extra="forbid")

    refinement_feedback: str = Field(description="What to change in the plan")
    conversation_context: str | None = Field(
        default=None, description="The conversation so far (default: the parent's plus this)"
    )


class ExecutionResponse(BaseModel):
    """An execution record as the API shows it (leases and idempotency keys stay inside)."""

    id: str
    execution_type: Literal["plan_generation"] = "plan_generation"
    status: ExecutionStatus
    workflow_id: str
    prompt: str = Field(description="The task description")
    response: str | None = Field(default=None, description="The plan's title, once completed")
    error_message: str | None = None
    error: ErrorInfo | None = None
    plan_json: dict[str, Any] | None = None
    request: dict[str, Any]
    execution_metadata: dict[str, Any]
    attempt: int
    parent_execution_id: str | None = None
    organization_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def of(cls, execution: Execution) -> ExecutionResponse:
        """Return the API view of an execution record."""
        title = (execution.plan_json or {}).get("title")
        return cls(
            id=execution.id,
            status=execution.status,
            workflow_id=execution.workflow_id,
            prompt=execution.request.description,
            response=title if isinstance(title, str) else None,
            error_message=execution.error.message if execution.error else None,
            error=execution.error,
            plan_json=execution.plan_json,
            request=execution.request.model_dump(mode="json"),
            execution_metadata=execution.metadata.model_dump(mode="json"),
            attempt=execution.attempt,
            parent_execution_id=execution.parent_execution_id,
            organization_id=execution.organization_id,
            created_at=execution.created_at,
            started_at=execution.started_at,
            completed_at=execution.completed_at,
            updated_at=execution.updated_at,
        )


class PlanGenerationStatus(BaseModel):
    """The reference's ``GET /api/v1/plans/generation/{execution_id}`` view."""

    execution_id: str
    status: ExecutionStatus
    description: str
    current_step: str | None = None
    error_message: str | None = None
    plan_json: dict[str, Any] | None = None
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    temporal_workflow_id: str

    @classmethod
    def of(cls, execution: Execution) -> PlanGenerationStatus:
        """Return the status view of an execution record."""
        return cls(
            execution_id=execution.id,
            status=execution.status,
            description=execution.request.description,
            current_step=execution.metadata.current_step,
            error_message=execution.error.message if execution.error else None,
            plan_json=execution.plan_json,
            metadata=execution.metadata.model_dump(mode="json"),
            created_at=execution.created_at,
            started_at=execution.started_at,
            completed_at=execution.completed_at,
            temporal_workflow_id=execution.workflow_id,
        )
