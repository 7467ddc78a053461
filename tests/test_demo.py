"""``planner demo``: the README's first quickstart command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner import Planner
from planner.demo import demo_plan, demo_request, scripted_model
from planner.plan import TaskPlan, validate_plan


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # No API key and no endpoint: the demo must need neither.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PLANNER_STORE")
    }
    return subprocess.run(
        [sys.executable, "-m", "planner", "demo", *args],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_demo_prints_progress_and_a_valid_plan(tmp_path: Path) -> None:
    proc = run_demo(cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    plan = TaskPlan.model_validate(json.loads(proc.stdout))  # stdout is the plan, nothing else
    assert validate_plan(plan, demo_request()) == []
    assert plan.recommended_execution.recommended_worker_queue_id == "queue-prod-b"
    assert plan.cost_estimate.llm_costs  # filled from the scripted model's usage
    lines = proc.stderr.splitlines()
    kinds = [line.split()[1] for line in lines if line[:4].strip().isdigit()]
    assert kinds[:2] == ["status", "status"]
    for kind in ("step_started", "tool_call", "tool_result", "thinking", "step_completed"):
        assert kind in kinds
    assert kinds[-2:] == ["complete", "done"]
    assert "search_agents_by_capability" in proc.stderr
    assert "offline demo" in proc.stderr and "plan stored in " in proc.stderr
    assert "WARNING" not in proc.stderr


def test_demo_stores_the_plan_for_show(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'plans.db'}"
    proc = run_demo("--quick", "--json-events", "--store", store, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events[-1]["type"] == "done"
    execution_id = events[-1]["execution_id"]
    shown = subprocess.run(
        [sys.executable, "-m", "planner", "show", execution_id, "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "completed"
    assert record["plan_json"] == json.loads(proc.stdout)
    assert record["metadata"]["quick_mode"] is True
    assert record["metadata"]["models"][0].startswith("claude-haiku")


async def test_the_scripted_model_drives_the_agno_strategy() -> None:
    request = demo_request()
    with scripted_model(request, delay=0) as fake:
        async with Planner(api_key="demo", base_url=fake.base_url) as planner:
            response = await planner.generate(request)
            plan = await planner.wait(response.execution_id, timeout=60)
        fake.assert_exhausted()
    assert plan.title == demo_plan()["title"]
    assert str(fake.messages_requests[-1].model).startswith("claude-sonnet")


@pytest.mark.parametrize("quick", [False, True])
def test_demo_plan_fits_the_demo_request(quick: bool) -> None:
    request = demo_request(quick=quick)
    assert request.quick_mode is quick and request.planning_strategy == "agno"
    assert validate_plan(TaskPlan.model_validate(demo_plan()), request) == []
