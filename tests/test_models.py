"""The wire models equal the seed's OpenAPI components, field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from planner import (
    AgentInfo,
    EnvironmentInfo,
    HTTPValidationError,
    InvalidRequestError,
    PlanGenerationResponse,
    TaskPlanRequest,
    TeamInfo,
    WorkerQueueInfo,
)
from planner.models import SEED_STRATEGIES
from planner.models import ValidationError as ValidationErrorModel

SPEC = Path(__file__).parent.parent / "docs" / "spec" / "plans-generate.openapi.yaml"
SEED: dict[str, Any] = yaml.safe_load(SPEC.read_text())["components"]["schemas"]

COMPONENTS: dict[str, type[BaseModel]] = {
    "TaskPlanRequest": TaskPlanRequest,
    "AgentInfo": AgentInfo,
    "TeamInfo": TeamInfo,
    "EnvironmentInfo": EnvironmentInfo,
    "WorkerQueueInfo": WorkerQueueInfo,
    "PlanGenerationResponse": PlanGenerationResponse,
    "HTTPValidationError": HTTPValidationError,
    "ValidationError": ValidationErrorModel,
}


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


def test_the_copied_spec_is_the_seed() -> None:
    seed_copy = Path(__file__).parent.parent.parent / "shared" / "spec" / SPEC.name
    if not seed_copy.exists():
        pytest.skip("shared/spec is not beside this checkout")
    assert yaml.safe_load(seed_copy.read_text()) == yaml.safe_load(SPEC.read_text())


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_envelope_matches_the_seed(name: str) -> None:
    ours, seed = schema_of(COMPONENTS[name]), SEED[name]
    for key in ("title", "description", "type", "required"):
        assert ours.get(key) == seed.get(key), key
    assert list(ours["properties"]) == list(seed["properties"])


@pytest.mark.parametrize(
    ("name", "field"),
    [(name, field) for name in sorted(COMPONENTS) for field in SEED[name]["properties"]],
)
def test_component_field_matches_the_seed(name: str, field: str) -> None:
    assert schema_of(COMPONENTS[name])["properties"][field] == SEED[name]["properties"][field]


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_schema_equals_the_seed(name: str) -> None:
    assert schema_of(COMPONENTS[name]) == SEED[name]


def test_defaults_are_the_seeds() -> None:
    request = TaskPlanRequest(description="x")
    assert request.priority == "medium"
    assert request.iteration == 1
    assert request.planning_strategy == "claude_code_sdk"
    assert request.quick_mode is False
    assert request.agents == [] and request.previous_plan is None
    assert WorkerQueueInfo(id="q", name="q", environment_id="e").active_workers == 0
    assert AgentInfo(id="a", name="a", model_id="m").status == "active"


def errors_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        TaskPlanRequest.model_validate(data)
    return [{k: e[k] for k in ("loc", "msg", "type")} for e in info.value.errors()]


def test_missing_description_error_is_fastapis() -> None:
    assert errors_of({}) == [{"loc": ("description",), "msg": "Field required", "type": "missing"}]


def test_bad_enum_errors_are_fastapis() -> None:
    assert errors_of({"description": "x", "priority": "urgent"}) == [
        {
            "loc": ("priority",),
            "msg": "Input should be 'low', 'medium', 'high' or 'critical'",
            "type": "literal_error",
        }
    ]
    assert errors_of({"description": "x", "planning_strategy": "langchain"}) == [
        {
            "loc": ("planning_strategy",),
            "msg": "Input should be 'claude_code_sdk' or 'agno'",
            "type": "literal_error",
        }
    ]


def test_nested_errors_carry_the_full_location() -> None:
    errors = errors_of(
        {"description": "x", "worker_queues": [{"id": "q", "name": "q", "active_workers": "many"}]}
    )
    assert errors == [
        {"loc": ("worker_queues", 0, "environment_id"), "msg": "Field required", "type": "missing"},
        {
            "loc": ("worker_queues", 0, "active_workers"),
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
    ]


def test_null_strategy_is_allowed_and_seed_names_are_accepted() -> None:
    assert TaskPlanRequest(description="x", planning_strategy=None).planning_strategy is None
    for name in SEED_STRATEGIES:
        assert TaskPlanRequest(description="x", planning_strategy=name).planning_strategy == name


def test_context_names_extend_the_accepted_strategies() -> None:
    request = TaskPlanRequest.model_validate(
        {"description": "x", "planning_strategy": "mine"}, context={"strategies": {"mine"}}
    )
    assert request.planning_strategy == "mine"


def test_invalid_request_error_has_exactly_loc_msg_type() -> None:
    with pytest.raises(ValidationError) as info:
        TaskPlanRequest.model_validate({"description": 3})
    error = InvalidRequestError(info.value.errors())
    assert error.errors == [
        {"loc": ["description"], "msg": "Input should be a valid string", "type": "string_type"}
    ]
    body = error.http_detail()
    assert body == {
        "detail": [
            {
                "loc": ["body", "description"],
                "msg": "Input should be a valid string",
                "type": "string_type",
            }
        ]
    }
    HTTPValidationError.model_validate(body)  # the seed's 422 body
    assert isinstance(error, ValueError)
    assert "description: Input should be a valid string" in str(error)
