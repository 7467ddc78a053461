"""Progress events: one envelope, typed payloads, a per-execution ``seq``.

Every execution's log is ``seq`` 1..n without gaps. The vocabulary follows the
reference service::

    status            the execution's status changed (pending, running, ...)
    progress          a stage and a message, optionally a percentage
    step_started      a named step began
    step_completed    a named step ended, with its output
    thinking          model reasoning text (long text arrives in chunks)
    tool_call         the model called a tool
    tool_result       the tool answered
    validation_error  a plan failed validation; the strategy may retry
    complete          the plan (terminal: success)
    error             what went wrong (terminal: failure)
    cancelled         why it stopped (terminal: cancellation)
    done              the last event of every stream

A stream holds exactly one terminal event (``complete``, ``error`` or
``cancelled``), and ``done`` follows it as the last event. Strategies emit the
non-terminal types; the runner writes the terminal ones. Third-party types are
allowed (``[a-z][a-z0-9_.-]*``) and carry free-form data.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EVENT_TYPES",
    "RESERVED_TYPES",
    "TERMINAL_TYPES",
    "CancelledData",
    "CompleteData",
    "DoneData",
    "ErrorData",
    "Event",
    "EventData",
    "ProgressData",
    "StatusData",
    "StepCompletedData",
    "StepStartedData",
    "ThinkingData",
    "ToolCallData",
    "ToolResultData",
    "ValidationErrorData",
    "payload_model",
]


class EventData(BaseModel):
    """Base of the typed payloads; extra keys are kept."""

    model_config = ConfigDict(extra="allow")


class StatusData(EventData):
    """The execution's status changed."""

    status: str
    current_step: str | None = None
    error_message: str | None = None
    attempt: int | None = None


class ProgressData(EventData):
    """A stage of the work and a message for people."""

    stage: str | None = None
    message: str
    progress: float | None = Field(default=None, ge=0, le=100)


class StepStartedData(EventData):
    """A named step began."""

    step: int | str
    step_name: str
    step_description: str | None = None
    progress: float | None = Field(default=None, ge=0, le=100)


class StepCompletedData(EventData):
    """A named step ended."""

    step: int | str
    step_name: str
    output: Any = None
    progress: float | None = Field(default=None, ge=0, le=100)
    duration_seconds: float | None = None


class ThinkingData(EventData):
    """Reasoning text from the model; long text is split into chunks."""

    content: str
    step: int | str | None = None
    step_name: str | None = None
    is_chunk: bool = False
    chunk_index: int | None = None
    is_final_chunk: bool | None = None


class ToolCallData(EventData):
    """The model called a tool."""

    tool_id: str
    tool_name: str
    arguments: Any = None
    step: int | str | None = None


class ToolResultData(EventData):
    """A tool answered (or failed)."""

    tool_id: str
    tool_name: str
    status: Literal["success", "error", "blocked"] = "success"
    result: Any = None
    error: str | None = None
    duration: float | None = None
    step: int | str | None = None


class ValidationErrorData(EventData):
    """A plan failed validation; ``retrying`` says whether another attempt follows."""

    step: int | str | None = None
    attempt: int
    error: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
    retrying: bool


class CompleteData(EventData):
    """The finished plan (``plan_json``)."""

    plan: dict[str, Any]
    progress: float = 100
    message: str = "Plan generated"


class ErrorData(EventData):
    """Why the execution failed: a type name, a message, optional details."""

    error: str
    message: str
    details: Any = None


class CancelledData(EventData):
    """Why the execution was cancelled."""

    reason: str
    message: str


class DoneData(EventData):
    """The stream's last event."""

    message: str
    execution_id: str
    status: str


_PAYLOADS: dict[str, type[EventData]] = {
    "status": StatusData,
    "progress": ProgressData,
    "step_started": StepStartedData,
    "step_completed": StepCompletedData,
    "thinking": ThinkingData,
    "tool_call": ToolCallData,
    "tool_result": ToolResultData,
    "validation_error": ValidationErrorData,
    "complete": CompleteData,
    "error": ErrorData,
    "cancelled": CancelledData,
    "done": DoneData,
}

EVENT_TYPES: frozenset[str] = frozenset(_PAYLOADS)
"""The built-in vocabulary."""

TERMINAL_TYPES: frozenset[str] = frozenset({"complete", "error", "cancelled"})
"""Exactly one of these is in every finished stream, right before ``done``."""

RESERVED_TYPES: frozenset[str] = TERMINAL_TYPES | {"done", "status"}
"""Types only the runner writes; a strategy that emits one gets ``ValueError``."""

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def payload_model(type_: str) -> type[EventData]:
    """Return the payload model for an event type (``EventData`` for third-party types).

    Raises:
        ValueError: the name is not a valid event type name.
    """
    model = _PAYLOADS.get(type_)
    if model is not None:
        return model
    if not _TYPE_NAME.fullmatch(type_):
        raise ValueError(
            f"invalid event type {type_!r}: use lower-case letters, digits, '_', '.', '-'"
        )
    return EventData


def make_data(
    type_: str, data: EventData | dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """Validate an event's payload against its type and return it as JSON-ready data.

    Args:
        type_: the event type.
        data: a payload model or mapping; ``fields`` are merged over it.

    Returns:
        The payload as a dict of JSON values, without keys whose value is None.

    Raises:
        ValueError: an invalid type name, or data that does not fit the type
            (``pydantic.ValidationError`` is a ``ValueError``).
    """
    model = _PAYLOADS.get(type_) or payload_model(type_)
    if data is not None and not fields and isinstance(data, model):
        payload = data
    else:
        # The model's own validator and serializer, called directly: the same
        # checks and output as ``model_validate``/``model_dump``, without the
        # wrappers' cost on the path of every event.
        if data is None:
            raw = fields  # a fresh dict of this call's keyword arguments
        else:
            raw = data.model_dump() if isinstance(data, BaseModel) else dict(data)
            raw.update(fields)
        payload = model.__pydantic_validator__.validate_python(raw)
    return payload.__pydantic_serializer__.to_python(payload, mode="json", exclude_none=True)  # type: ignore[no-any-return]


_RECURRING: dict[tuple[Any, ...], dict[str, Any]] = {}


def recurring_data(type_: str, **fields: str | int | None) -> dict[str, Any]:
    """Return ``make_data(type_, **fields)`` for a payload that recurs, validated once.

    For the runner's own payloads (``status`` events of every run), whose
    fields are plain strings, integers or None: the first call validates, later
    calls with the same fields return a fresh copy of that result.

    Raises:
        ValueError: as :func:`make_data`.
    """
    key = (type_, *fields.items())
    cached = _RECURRING.get(key)
    if cached is None:
        cached = make_data(type_, dict(fields))
        if len(_RECURRING) < 1024:
            _RECURRING[key] = cached
    return dict(cached)


_FIELDS_SET = ("execution_id", "seq", "type", "data", "timestamp")
_set_attr = object.__setattr__


def trusted_event(
    execution_id: str, seq: int, type_: str, data: dict[str, Any], timestamp: datetime
) -> Event:
    """Build an :class:`Event` from values a store produced, without validating them.

    For stores only: ``data`` must come from :func:`make_data` (or be read back
    from the store's own log), ``seq`` must be the next number of the log and
    ``timestamp`` an aware datetime.  The result is the same as ``Event(...)``
    (``model_construct`` with every field set), at a fraction of the cost.
    """
    event = Event.__new__(Event)
    _set_attr(
        event,
        "__dict__",
        {
            "execution_id": execution_id,
            "seq": seq,
            "type": type_,
            "data": data,
            "timestamp": timestamp,
        },
    )
    _set_attr(event, "__pydantic_fields_set__", set(_FIELDS_SET))
    _set_attr(event, "__pydantic_extra__", None)
    _set_attr(event, "__pydantic_private__", None)
    return event


class Event(BaseModel):
    """One entry of an execution's event log.

    Attributes:
        execution_id: the execution it belongs to.
        seq: its position, 1..n without gaps per execution.
        type: one of :data:`EVENT_TYPES` or a third-party type.
        data: the payload, JSON values; :meth:`payload` gives the typed model.
        timestamp: when it was appended (UTC).
    """

    model_config = ConfigDict(frozen=True)

    execution_id: str
    seq: int = Field(ge=1)
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime

    @property
    def terminal(self) -> bool:
        """Whether this event ends the execution (``complete``, ``error``, ``cancelled``)."""
        return self.type in TERMINAL_TYPES

    def payload(self) -> EventData:
        """Return ``data`` parsed into the type's payload model."""
        return payload_model(self.type).model_validate(self.data)
