"""planner: turn a task description and your inventory into an executable plan.

Quick use::

    from planner import Planner, TaskPlanRequest

    async with Planner(store="memory://", executor="inprocess") as planner:
        response = await planner.generate(TaskPlanRequest(description="..."))
        async for event in planner.stream(response.execution_id):
            print(event.seq, event.type, event.data)
        plan = await planner.wait(response.execution_id)

``import planner`` imports no store, executor or strategy backend and no model SDK.
"""

from __future__ import annotations

from planner.context import RunContext
from planner.errors import (
    ExecutionCancelledError,
    ExecutionFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    GenerationError,
    InvalidRequestError,
    InvalidTransitionError,
    LeaseLostError,
    MissingExtraError,
    PlanGenerationFailedError,
    PlannerError,
    PlanValidationError,
    PluginError,
    SchemaVersionError,
    StrategyError,
    SubmitError,
    UnknownPluginError,
)
from planner.events import (
    CancelledData,
    CompleteData,
    DoneData,
    ErrorData,
    Event,
    EventData,
    ProgressData,
    StatusData,
    StepCompletedData,
    StepStartedData,
    ThinkingData,
    ToolCallData,
    ToolResultData,
    ValidationErrorData,
)
from planner.execution import ErrorInfo, Execution, ExecutionMetadata, ExecutionStatus, TokenUsage
from planner.hookspecs import hookimpl
from planner.interfaces import Executor, NewEvent, Store, Strategy
from planner.models import (
    AgentInfo,
    EnvironmentInfo,
    HTTPValidationError,
    PlanGenerationResponse,
    TaskPlanRequest,
    TeamInfo,
    WorkerQueueInfo,
)
from planner.plan import PlanViolation, TaskPlan, validate_plan
from planner.plan_diff import PlanDiff, diff
from planner.planner import Planner
from planner.plugins import PluginRegistry
from planner.render import display
from planner.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AgentInfo",
    "CancelledData",
    "CompleteData",
    "DoneData",
    "EnvironmentInfo",
    "ErrorData",
    "ErrorInfo",
    "Event",
    "EventData",
    "Execution",
    "ExecutionCancelledError",
    "ExecutionFinishedError",
    "ExecutionMetadata",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "ExecutionStatus",
    "Executor",
    "GenerationError",
    "HTTPValidationError",
    "InvalidRequestError",
    "InvalidTransitionError",
    "LeaseLostError",
    "MissingExtraError",
    "NewEvent",
    "PlanDiff",
    "PlanGenerationFailedError",
    "PlanGenerationResponse",
    "PlanValidationError",
    "PlanViolation",
    "Planner",
    "PlannerError",
    "PluginError",
    "PluginRegistry",
    "ProgressData",
    "RunContext",
    "SchemaVersionError",
    "Settings",
    "StatusData",
    "StepCompletedData",
    "StepStartedData",
    "Store",
    "Strategy",
    "StrategyError",
    "SubmitError",
    "TaskPlan",
    "TaskPlanRequest",
    "TeamInfo",
    "ThinkingData",
    "TokenUsage",
    "ToolCallData",
    "ToolResultData",
    "UnknownPluginError",
    "ValidationErrorData",
    "WorkerQueueInfo",
    "__version__",
    "diff",
    "display",
    "hookimpl",
    "validate_plan",
]
