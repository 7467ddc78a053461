"""Wire models of the seed's ``POST /api/v1/plans/generate`` endpoint.

Field names, titles, descriptions, defaults and enums are those of the seed's
OpenAPI document (``docs/spec/plans-generate.openapi.yaml``); the test suite
compares each model's JSON Schema with the seed's component, field by field.

``planning_strategy`` keeps the seed's enum (``claude_code_sdk``, ``agno``) in
a default install.  A strategy registered by an installed plugin (entry point
group ``planner``) is accepted too, and appears in the schema's enum; a
strategy handed to one ``Planner`` only is accepted when the request is
validated through that Planner (``planner.generate({...})`` with a mapping, or
:meth:`TaskPlanRequest.model_validate` with ``context={"strategies": names}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "SEED_STRATEGIES",
    "AgentInfo",
    "EnvironmentInfo",
    "HTTPValidationError",
    "PlanGenerationResponse",
    "Priority",
    "TaskPlanRequest",
    "TeamInfo",
    "ValidationError",
    "WorkerQueueInfo",
]

SEED_STRATEGIES: tuple[str, ...] = ("claude_code_sdk", "agno")
"""The ``planning_strategy`` values of the seed's enum, in the seed's order."""

Priority = Literal["low", "medium", "high", "critical"]
"""A task's priority, as the seed's enum."""


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    # The seed (FastAPI's output) lists optional nullable fields without
    # ``default: null``; pydantic writes it.  Drop it so the schemas are equal.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def _drop_description(schema: dict[str, Any]) -> None:
    # Seed components without a description; our docstring is for Python readers.
    _drop_null_defaults(schema)
    schema.pop("description", None)


class _SeedModel(BaseModel):
    model_config = ConfigDict(json_schema_extra=_drop_null_defaults)


class _StrategyName:
    """``planning_strategy``: a string validated against the known strategy names.

    Validation accepts the seed's names, the names registered by entry-point
    plugins, and the names passed in the validation context under
    ``"strategies"``.  The JSON Schema shows the seed's enum plus the names of
    installed plugins.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(
            cls._validate, core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": list(known_strategy_names())}

    @staticmethod
    def _validate(value: str, info: ValidationInfo) -> str:
        if value in SEED_STRATEGIES:
            return value
        context = info.context if isinstance(info.context, dict) else {}
        extra: Iterable[str] = context.get("strategies", ())
        if value in extra:
            return value
        names = known_strategy_names(extra)
        if value in names:
            return value
        expected = " or ".join(
            [", ".join(repr(n) for n in names[:-1]), repr(names[-1])]
            if len(names) > 1
            else [repr(names[0])]
        )
        raise PydanticCustomError(
            "literal_error",
            "Input should be {expected}",
            {"expected": expected},
        )


_plugin_names_hook: Callable[[], Iterable[str]] | None = None


def known_strategy_names(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the strategy names ``planning_strategy`` accepts.

    Args:
        extra: more names to accept (those of one Planner's own strategies).

    Returns:
        The seed's names first, then plugin-registered and ``extra`` names, sorted.
    """
    names = list(SEED_STRATEGIES)
    more: set[str] = set(extra)
    if _plugin_names_hook is not None:
        more.update(_plugin_names_hook())
    names.extend(sorted(more - set(SEED_STRATEGIES)))
    return tuple(names)


StrategyName = Annotated[str, _StrategyName]


class AgentInfo(_SeedModel):
    """Lightweight agent info from CLI"""

    id: str = Field(title="Id")
    name: str = Field(title="Name")
    model_id: str = Field(title="Model Id")
    description: str | None = Field(default=None, title="Description")
    capabilities: list[str] = Field(
        default_factory=list, title="Capabilities", description="Agent capabilities"
    )
    status: str = Field(default="active", title="Status", description="Agent status")


class TeamInfo(_SeedModel):
    """Lightweight team info from CLI"""

    id: str = Field(title="Id")
    name: str = Field(title="Name")
    description: str | None = Field(default=None, title="Description")
    agent_count: int = Field(default=0, title="Agent Count", description="Number of agents in team")
    status: str = Field(default="active", title="Status", description="Team status")


class EnvironmentInfo(_SeedModel):
    """Environment info from CLI"""

    id: str = Field(title="Id")
    name: str = Field(title="Name")
    display_name: str | None = Field(
        default=None, title="Display Name", description="Display name for environment"
    )
    status: str = Field(default="active", title="Status", description="Environment status")


class WorkerQueueInfo(_SeedModel):
    """Worker queue info from CLI"""

    id: str = Field(title="Id")
    name: str = Field(title="Name")
    environment_id: str = Field(title="Environment Id", description="Associated environment ID")
    status: str = Field(default="active", title="Status", description="Worker queue status")
    active_workers: int = Field(
        default=0,
        title="Active Workers",
        description="Number of active workers (key for queue selection!)",
    )


class TaskPlanRequest(_SeedModel):
    """Request to plan a task"""

    description: str = Field(title="Description", description="Task description")
    priority: Priority = Field(default="medium", title="Priority", description="Task priority")
    project_id: str | None = Field(
        default=None, title="Project Id", description="Associated project ID"
    )
    agents: list[AgentInfo] = Field(
        default_factory=list,
        title="Agents",
        description="Available agents (outer context from CLI)",
    )
    teams: list[TeamInfo] = Field(
        default_factory=list,
        title="Teams",
        description="Available teams (outer context from CLI)",
    )
    environments: list[EnvironmentInfo] = Field(
        default_factory=list,
        title="Environments",
        description="Available execution environments",
    )
    worker_queues: list[WorkerQueueInfo] = Field(
        default_factory=list, title="Worker Queues", description="Available worker queues"
    )
    refinement_feedback: str | None = Field(
        default=None,
        title="Refinement Feedback",
        description="User feedback for plan refinement",
    )
    conversation_context: str | None = Field(
        default=None,
        title="Conversation Context",
        description="Conversation history for context",
    )
    previous_plan: dict[str, Any] | None = Field(
        default=None, title="Previous Plan", description="Previous plan for refinement"
    )
    iteration: int = Field(default=1, title="Iteration", description="Planning iteration number")
    planning_strategy: StrategyName | None = Field(
        default="claude_code_sdk",
        title="Planning Strategy",
        description="Planning strategy to use (claude_code_sdk or agno)",
    )
    quick_mode: bool = Field(
        default=False,
        title="Quick Mode",
        description="Use fast planning for --local mode (Haiku vs Sonnet)",
    )


class PlanGenerationResponse(_SeedModel):
    """Response model for async plan generation"""

    execution_id: str = Field(title="Execution Id", description="Unique execution identifier")
    workflow_id: str = Field(title="Workflow Id", description="Temporal workflow identifier")
    status: str = Field(title="Status", description="Current execution status")
    message: str = Field(title="Message", description="Human-readable status message")


class ValidationError(_SeedModel):
    """One entry of a validation error: where, what, and its machine-readable type."""

    model_config = ConfigDict(json_schema_extra=_drop_description)

    loc: list[str | int] = Field(title="Location")
    msg: str = Field(title="Message")
    type: str = Field(title="Error Type")


class HTTPValidationError(_SeedModel):
    """The body of a 422 answer: the list of validation errors."""

    model_config = ConfigDict(title="HTTPValidationError", json_schema_extra=_drop_description)

    detail: list[ValidationError] = Field(default_factory=list, title="Detail")
