"""Event payloads are typed; the runner alone writes terminal events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from planner import Event, ProgressData
from planner.errors import ExecutionFinishedError, InvalidTransitionError
from planner.events import EVENT_TYPES, RESERVED_TYPES, TERMINAL_TYPES, make_data, payload_model
from planner.execution import TRANSITIONS, ExecutionStatus, check_transition, utcnow


def test_the_vocabulary_is_the_references() -> None:
    assert EVENT_TYPES == {
        "status", "progress", "step_started", "step_completed", "thinking", "tool_call",
        "tool_result", "validation_error", "complete", "error", "cancelled", "done",
    }  # fmt: skip
    assert TERMINAL_TYPES == {"complete", "error", "cancelled"}
    assert {"done", "status"} < RESERVED_TYPES


def test_make_data_validates_against_the_type() -> None:
    assert make_data("progress", message="hi", progress=50) == {"message": "hi", "progress": 50.0}
    assert make_data("progress", ProgressData(message="x", stage="s")) == {
        "message": "x",
        "stage": "s",
    }
    with pytest.raises(ValidationError):
        make_data("progress", progress=50)  # no message
    with pytest.raises(ValidationError):
        make_data("progress", message="x", progress=150)
    with pytest.raises(ValidationError):
        make_data("tool_result", tool_id="t", tool_name="Bash", status="exploded")


def test_third_party_types_are_allowed_with_free_data() -> None:
    assert make_data("todo_update", todos=[1, 2]) == {"todos": [1, 2]}
    with pytest.raises(ValueError, match="invalid event type"):
        payload_model("Not A Type!")


def test_event_payload_parses_the_data() -> None:
    event = Event(
        execution_id="e", seq=1, type="tool_call", data={"tool_id": "t1", "tool_name": "search",
                                                          "arguments": {"q": "db"}},
        timestamp=utcnow(),
    )  # fmt: skip
    payload = event.payload()
    assert payload.model_dump()["tool_name"] == "search"
    assert not event.terminal
    with pytest.raises(ValidationError):
        Event(execution_id="e", seq=0, type="progress", timestamp=utcnow())


def test_transitions() -> None:
    S = ExecutionStatus
    check_transition(S.PENDING, S.RUNNING, "e")
    check_transition(S.RUNNING, S.RUNNING, "e")  # a recovered attempt
    with pytest.raises(InvalidTransitionError):
        check_transition(S.PENDING, S.COMPLETED, "e")
    for final in (S.COMPLETED, S.FAILED, S.CANCELLED):
        assert final.terminal and TRANSITIONS[final] == frozenset()
        with pytest.raises(ExecutionFinishedError):
            check_transition(final, S.RUNNING, "e")
