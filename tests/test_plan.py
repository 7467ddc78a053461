"""The plan model and the plan-versus-request validator."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from planner import PlanViolation, TaskPlan, TaskPlanRequest, validate_plan
from planner.plan import iter_tasks
from planner.testing import sample_plan, sample_request


@pytest.fixture
def request_() -> TaskPlanRequest:
    return sample_request()


def plan_data(request: TaskPlanRequest, **changes: Any) -> dict[str, Any]:
    data = sample_plan(request).model_dump(mode="json")
    data.update(changes)
    return data


def codes(violations: list[PlanViolation]) -> list[str]:
    return [v.code for v in violations]


def test_sample_plan_is_valid_and_about_3kb(request_: TaskPlanRequest) -> None:
    plan = sample_plan(request_)
    assert validate_plan(plan, request_) == []
    assert 2500 < len(plan.model_dump_json()) < 4500
    assert plan.total_tasks == 3


def test_plan_json_uses_the_reference_field_names(request_: TaskPlanRequest) -> None:
    data = sample_plan(request_).model_dump(mode="json")
    assert set(data) == {
        "title", "summary", "complexity", "team_breakdown", "recommended_execution",
        "cost_estimate", "realized_savings", "risks", "prerequisites", "success_criteria",
        "has_questions", "questions", "execution_prompt", "selected_environment_id",
        "selected_environment_name", "selected_agent_runtime", "selected_agent_model_id",
    }  # fmt: skip
    task = data["team_breakdown"][0]["tasks"][0]
    assert {"id", "title", "description", "details", "test_strategy", "priority", "dependencies",
            "status", "subtasks", "agent_id", "worker_queue_id", "skills_to_use",
            "env_vars_to_use", "secrets_to_use", "knowledge_references"} == set(task)  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("complexity", "story_points"), 0),
        (("complexity", "story_points"), 22),
        (("complexity", "confidence"), "certain"),
        (("recommended_execution", "entity_type"), "robot"),
        (("execution_prompt",), "x" * 10001),
    ],
)
def test_schema_limits(request_: TaskPlanRequest, path: tuple[str, ...], value: Any) -> None:
    data = plan_data(request_)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        TaskPlan.model_validate(data)


def test_a_team_needs_at_least_one_task(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    data["team_breakdown"][0]["tasks"] = []
    with pytest.raises(ValidationError) as info:
        TaskPlan.model_validate(data)
    assert info.value.errors()[0]["loc"] == ("team_breakdown", 0, "tasks")


def test_unknown_ids_are_reported_with_what_is_allowed(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    data["recommended_execution"]["entity_id"] = "agent-ghost"
    data["team_breakdown"][0]["agent_id"] = "agent-ghost"
    data["team_breakdown"][0]["team_id"] = "team-ghost"
    data["team_breakdown"][0]["tasks"][1]["agent_id"] = "agent-imaginary"
    data["selected_environment_id"] = "env-moon"
    violations = validate_plan(TaskPlan.model_validate(data), request_)
    assert codes(violations) == [
        "unknown_agent", "unknown_environment", "unknown_team", "unknown_agent", "unknown_agent",
    ]  # fmt: skip
    first = violations[0]
    assert first.loc == ("recommended_execution", "entity_id")
    assert first.value == "agent-ghost"
    assert first.allowed == ["agent-dba", "agent-devops", "agent-sec"]
    assert "agent-ghost" in first.message and "agent-devops" in first.message
    assert violations[3].loc == ("team_breakdown", 0, "agent_id")
    assert violations[4].loc == ("team_breakdown", 0, "tasks", 1, "agent_id")
    assert violations[0].model_dump(mode="json")["loc"] == ["recommended_execution", "entity_id"]


def test_team_entity_must_be_a_team_of_the_request(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    data["recommended_execution"].update(entity_type="team", entity_id="agent-devops")
    assert codes(validate_plan(TaskPlan.model_validate(data), request_)) == ["unknown_team"]
    data["recommended_execution"]["entity_id"] = "team-platform"
    assert validate_plan(TaskPlan.model_validate(data), request_) == []


def test_a_request_without_agents_accepts_no_agent_id() -> None:
    bare = TaskPlanRequest(description="x")
    plan = sample_plan(sample_request())
    violations = validate_plan(plan, bare)
    assert "unknown_agent" in codes(violations)
    assert "the request lists no agents" in violations[0].message


def set_queue(data: dict[str, Any], queue: str | None, env: str | None = "env-prod") -> None:
    data["recommended_execution"]["recommended_worker_queue_id"] = queue
    data["recommended_execution"]["recommended_environment_id"] = env
    data["selected_environment_id"] = env
    for task in data["team_breakdown"][0]["tasks"]:
        task["worker_queue_id"] = None


def test_queue_with_the_most_active_workers_is_preferred(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    set_queue(data, "queue-prod-a")  # 1 worker, while prod-b has 3
    (violation,) = validate_plan(TaskPlan.model_validate(data), request_)
    assert violation.code == "queue_not_preferred"
    assert violation.allowed == ["queue-prod-b"]
    set_queue(data, "queue-prod-b")
    assert validate_plan(TaskPlan.model_validate(data), request_) == []


def test_queue_must_belong_to_the_chosen_environment(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    set_queue(data, "queue-staging")
    (violation,) = validate_plan(TaskPlan.model_validate(data), request_)
    assert violation.code == "queue_environment_mismatch"
    assert violation.allowed == ["queue-prod-b"]


def test_missing_queue_when_one_has_workers(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    set_queue(data, None)
    (violation,) = validate_plan(TaskPlan.model_validate(data), request_)
    assert violation.code == "missing_worker_queue"
    assert violation.allowed == ["queue-prod-b"]


def test_no_queue_is_fine_when_none_has_workers(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    set_queue(data, None, env="env-staging")  # its only queue has 0 active workers
    assert validate_plan(TaskPlan.model_validate(data), request_) == []


def test_a_queue_without_an_environment_implies_its_own(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    set_queue(data, "queue-prod-a", env=None)
    assert codes(validate_plan(TaskPlan.model_validate(data), request_)) == ["queue_not_preferred"]


def test_task_dependencies_must_exist_and_not_cycle(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    tasks = data["team_breakdown"][0]["tasks"]
    tasks[0]["dependencies"] = [3]  # 1 -> 3 -> 2 -> 1
    tasks[2]["dependencies"] = [2, 99]
    violations = validate_plan(TaskPlan.model_validate(data), request_)
    assert codes(violations) == ["unknown_dependency", "dependency_cycle"]
    assert violations[0].value == 99 and violations[0].allowed == [1, 2, 3]
    assert "1 -> 3 -> 2 -> 1" in violations[1].message or "cycle" in violations[1].message


def test_self_dependency_and_duplicate_ids(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    tasks = data["team_breakdown"][0]["tasks"]
    tasks[0]["dependencies"] = [1]
    tasks[2]["id"] = 2
    tasks[2]["dependencies"] = []
    assert codes(validate_plan(TaskPlan.model_validate(data), request_)) == [
        "duplicate_task_id",
        "dependency_cycle",
    ]


def test_subtasks_are_checked_and_counted(request_: TaskPlanRequest) -> None:
    data = plan_data(request_)
    sub = dict(data["team_breakdown"][0]["tasks"][0], id=10, dependencies=[1], agent_id="nobody")
    data["team_breakdown"][0]["tasks"][0]["subtasks"] = [sub]
    plan = TaskPlan.model_validate(data)
    assert [t.id for t in iter_tasks(plan)] == [1, 10, 2, 3]
    assert plan.total_tasks == 4
    (violation,) = validate_plan(plan, request_)
    assert violation.loc == ("team_breakdown", 0, "tasks", 0, "subtasks", 0, "agent_id")
