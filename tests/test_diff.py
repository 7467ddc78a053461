"""planner.diff: what a refinement changed, as data, text and HTML; ``show --diff-parent``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

import planner
from planner import ExecutionStateError, PlanDiff, Planner, TaskPlan, TaskPlanRequest
from planner.cli import main
from planner.context import RunContext
from planner.demo import demo_plan
from planner.plan_diff import FieldChange
from planner.testing import FunctionStrategy, sample_plan, sample_request

ROLLBACK: dict[str, Any] = {
    "id": 6,
    "title": "Roll back if the smoke tests fail",
    "description": "Point the service back at the old role.",
    "details": "Restore the previous secret version.",
    "test_strategy": "Smoke tests pass on the old role.",
    "priority": "high",
    "dependencies": [4],
    "agent_id": "agent-devops",
}


def changed_plan() -> dict[str, Any]:
    data = demo_plan()
    dba, devops = data["team_breakdown"]
    devops["tasks"].append(ROLLBACK)  # added
    dba["tasks"] = [t for t in dba["tasks"] if t["id"] != 5]  # removed
    dba["tasks"][0]["priority"] = "medium"  # changed: one field
    devops["tasks"][0]["title"] = "Roll the new secret out"  # changed: two fields
    devops["tasks"][0]["dependencies"] = [1, 2]
    devops["estimated_time_hours"] = 0.75
    data["recommended_execution"]["recommended_worker_queue_id"] = "queue-prod-a"
    data["recommended_execution"]["recommended_worker_queue_name"] = "prod-a"
    data["complexity"]["story_points"] = 8
    data["risks"] = [data["risks"][0], "The rollback needs the old role"]
    return data


def test_equal_plans_have_no_changes() -> None:
    result = planner.diff(demo_plan(), TaskPlan.model_validate(demo_plan()))
    assert isinstance(result, PlanDiff)
    assert not result and not result.tasks_changed and not result.recommendation_changed
    assert str(result) == (
        "plan: Zero-downtime rotation of the payments database credentials\nno changes\n"
    )
    assert "No changes." in result._repr_html_()


def test_tasks_added_removed_and_changed_with_their_fields() -> None:
    result = planner.diff(demo_plan(), changed_plan())
    assert [t.id for t in result.added] == [6]
    assert result.added[0].title == "Roll back if the smoke tests fail"
    assert [(t.id, t.title) for t in result.removed] == [(5, "Revoke the old credentials")]
    assert [(t.id, t.fields) for t in result.changed] == [
        (1, ["priority"]),
        (3, ["title", "dependencies"]),
    ]
    assert result.changed[1].changes[1] == FieldChange(
        field="dependencies", before=[2], after=[1, 2]
    )
    assert result.recommendation_changed
    assert result.recommendation == (
        FieldChange(
            field="recommended_worker_queue_id", before="queue-prod-b", after="queue-prod-a"
        ),
        FieldChange(field="recommended_worker_queue_name", before="prod-b", after="prod-a"),
    )
    assert [(c.field, c.before, c.after) for c in result.fields] == [
        ("complexity.story_points", 5, 8),
        (
            "risks",
            demo_plan()["risks"],
            [demo_plan()["risks"][0], "The rollback needs the old role"],
        ),
        ("team_breakdown[agent-devops].estimated_time_hours", 0.5, 0.75),
    ]


def test_the_terminal_rendering() -> None:
    text = str(planner.diff(demo_plan(), changed_plan()))
    assert text.splitlines() == [
        "plan: Zero-downtime rotation of the payments database credentials",
        "tasks: 1 added, 1 removed, 2 changed",
        "  + 6. Roll back if the smoke tests fail (agent-devops)",
        "  - 5. Revoke the old credentials",
        "  ~ 1. Snapshot roles and grants: priority",
        "      priority: high -> medium",
        "  ~ 3. Roll the new secret out: title, dependencies",
        "      title: Roll the secret into the payments service -> Roll the new secret out",
        "      dependencies:",
        "        + 1",
        "recommendation changed:",
        "  recommended_worker_queue_id: queue-prod-b -> queue-prod-a",
        "  recommended_worker_queue_name: prod-b -> prod-a",
        "other fields changed:",
        "  complexity.story_points: 5 -> 8",
        "  risks:",
        "    - A failed rollout must be reverted before the old role is revoked",
        "    + The rollback needs the old role",
        "  team_breakdown[agent-devops].estimated_time_hours: 0.5 -> 0.75",
    ]


def test_the_html_rendering_escapes_model_strings() -> None:
    after = changed_plan()
    after["title"] = "<script>alert(1)</script>"
    after["team_breakdown"][1]["tasks"][-1]["title"] = "<img src=x onerror=alert(1)>"
    after["risks"].append("<b>bold</b>")
    out = planner.diff(demo_plan(), after)._repr_html_()
    assert "<script" not in out and "<img" not in out and "<b>bold" not in out
    assert "<ins>&lt;script&gt;alert(1)&lt;/script&gt;</ins>" in out
    assert "1 added, 1 removed, 2 changed" in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "&lt;b&gt;bold&lt;/b&gt;" in out


def test_subtasks_are_tasks_and_a_move_is_a_parent_change() -> None:
    before = demo_plan()
    before["team_breakdown"][0]["tasks"][0]["subtasks"] = [dict(ROLLBACK, id=11, dependencies=[])]
    after = copy.deepcopy(before)
    moved = after["team_breakdown"][0]["tasks"][0]["subtasks"].pop()
    after["team_breakdown"][0]["tasks"][1]["subtasks"] = [moved]
    after["team_breakdown"][0]["tasks"][1]["subtasks"].append(dict(ROLLBACK, id=12))
    result = planner.diff(before, after)
    assert [t.id for t in result.added] == [12]
    assert [(t.id, t.changes) for t in result.changed] == [
        (11, (FieldChange(field="parent", before=1, after=2),))
    ]


def test_a_new_team_breakdown_entry_is_one_change() -> None:
    after = demo_plan()
    after["team_breakdown"].append(
        {"team_name": "Security", "agent_id": "agent-sec", "tasks": [ROLLBACK]}
    )
    result = planner.diff(demo_plan(), after)
    assert [t.id for t in result.added] == [6]
    [entry] = result.fields
    assert entry.field == "team_breakdown[agent-sec]" and entry.before is None
    assert entry.after["team_name"] == "Security" and "tasks" not in entry.after


def test_the_diff_is_json_data() -> None:
    result = planner.diff(demo_plan(), changed_plan())
    data = json.loads(json.dumps(result.model_dump(mode="json")))
    assert data["added"][0]["id"] == 6
    assert data["changed"][0] == {
        "id": 1,
        "title": "Snapshot roles and grants",
        "changes": [{"field": "priority", "before": "high", "after": "medium"}],
    }
    assert PlanDiff.model_validate(data) == result


async def refine_strategy(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    # A refinement asks for a rollback step: one task more.
    return sample_plan(request, tasks=4 if request.refinement_feedback else 3)


async def test_executions_compare_by_their_plans() -> None:
    async with Planner(strategies={"agno": FunctionStrategy(refine_strategy)}) as p:
        first = await p.generate(sample_request(planning_strategy="agno"))
        await p.wait(first.execution_id)
        second = await p.refine(first.execution_id, "Add a rollback step")
        await p.wait(second.execution_id)
        parent, child = await p.get(first.execution_id), await p.get(second.execution_id)
    result = planner.diff(parent, child)
    assert [t.id for t in result.added] == [4] and not result.removed and not result.changed
    assert child.parent_execution_id == parent.id


async def test_an_execution_without_a_plan_cannot_be_compared() -> None:
    async def fail(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        raise RuntimeError("no plan")

    async with Planner(strategies={"agno": FunctionStrategy(fail)}) as p:
        response = await p.generate(sample_request(planning_strategy="agno"))
        with pytest.raises(planner.PlanGenerationFailedError):
            await p.wait(response.execution_id)
        failed = await p.get(response.execution_id)
    with pytest.raises(ExecutionStateError, match="has no plan to compare"):
        planner.diff(failed, demo_plan())


def test_bad_input_is_refused() -> None:
    with pytest.raises(TypeError, match="plan_b is a str"):
        planner.diff(demo_plan(), "plan.json")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        planner.diff({"title": "no plan"}, demo_plan())


# -- planner show ID --diff-parent ------------------------------------------------------------


def make_refinement(store: str) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        async with Planner(store, strategies={"agno": FunctionStrategy(refine_strategy)}) as p:
            first = await p.generate(sample_request(planning_strategy="agno"))
            await p.wait(first.execution_id)
            second = await p.refine(first.execution_id, "Add a rollback step")
            await p.wait(second.execution_id)
            return first.execution_id, second.execution_id

    return anyio.run(go)


def test_show_diff_parent_prints_what_the_refinement_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'plans.db'}"
    parent, child = make_refinement(store)

    assert main(["show", child, "--diff-parent", "--store", store]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "plan: Plan: Rotate the production database credentials",
        "tasks: 1 added, 0 removed, 0 changed",
        "  + 4. Step 4: Rotate the production database credentials (agent-devops)",
    ]

    assert main(["show", child, "--diff-parent", "--json", "--store", store]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in data["added"]] == [4] and data["removed"] == []

    assert main(["show", parent, "--diff-parent", "--store", store]) == 2
    err = capsys.readouterr().err
    assert f"execution {parent} has no parent: it is not a refinement" in err

    assert main(["show", child, "--diff-parent", "--events", "--store", store]) == 2
    assert "cannot be combined" in capsys.readouterr().err

    assert main(["show", "nope", "--diff-parent", "--store", store]) == 2
    assert "nope" in capsys.readouterr().err


def test_show_diff_parent_of_a_refinement_without_a_plan_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'plans.db'}"
    parent, _ = make_refinement(store)

    async def fail(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        raise RuntimeError("the model gave up")

    async def go() -> str:
        async with Planner(store, strategies={"agno": FunctionStrategy(fail)}) as p:
            request = sample_request(planning_strategy="agno")
            response = await p.generate(request, parent_execution_id=parent)
            with pytest.raises(planner.PlanGenerationFailedError):
                await p.wait(response.execution_id)
            return response.execution_id

    child = anyio.run(go)
    assert main(["show", child, "--diff-parent", "--store", store]) == 2
    assert f"execution {child} has no plan to compare (status failed)" in capsys.readouterr().err


def test_a_reused_task_id_matches_in_order() -> None:
    # validate_plan refuses duplicate ids, but a stored plan_json is compared as it is.
    before = demo_plan()
    before["team_breakdown"][1]["tasks"].append(dict(ROLLBACK, id=1))
    after = copy.deepcopy(before)
    after["team_breakdown"][1]["tasks"][-1]["title"] = "Roll back, carefully"
    after["team_breakdown"][1]["tasks"].append(dict(ROLLBACK, id=1, title="Third one"))
    result = planner.diff(before, after)
    assert [(t.id, t.title) for t in result.added] == [(1, "Third one")]
    assert [(t.id, t.title, t.fields) for t in result.changed] == [
        (1, "Roll back, carefully", ["title"])
    ]
