"""Plans and executions render as HTML, Markdown and Mermaid; display() follows progress.

Plans come from a model: every string in them is hostile here, and must come
out as text.
"""

from __future__ import annotations

import html
import io
import re
import subprocess
import sys
from typing import Any

import pytest

from planner import Execution, Planner, TaskPlan, TaskPlanRequest, display
from planner.context import RunContext
from planner.demo import demo_plan
from planner.events import Event
from planner.render import (
    ProgressView,
    _kernel_shell,
    event_line,
    execution_html,
    execution_markdown,
    plan_html,
    plan_markdown,
    plan_mermaid,
)
from planner.testing import FunctionStrategy, sample_plan, sample_request

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
LINK = "[click](javascript:alert(1)) | *bold* `code` # not a heading"


def demo() -> TaskPlan:
    return TaskPlan.model_validate(demo_plan())


def hostile_plan() -> TaskPlan:
    data: dict[str, Any] = demo_plan()
    data["title"] = f"Title {EVIL}"
    data["summary"] = f"Summary {EVIL}\n\n# {LINK}"
    data["complexity"]["reasoning"] = EVIL
    data["recommended_execution"]["entity_name"] = EVIL
    data["recommended_execution"]["reasoning"] = LINK
    data["recommended_execution"]["recommended_worker_queue_name"] = EVIL
    data["cost_estimate"]["breakdown"][0]["item"] = EVIL
    data["realized_savings"]["savings_summary"] = EVIL
    data["risks"] = [EVIL, f"- {LINK}", "1. numbered"]
    data["prerequisites"] = [EVIL]
    data["success_criteria"] = [LINK]
    data["has_questions"] = True
    data["questions"] = EVIL
    first = data["team_breakdown"][0]
    first["agent_name"] = EVIL
    first["tasks"][0]["title"] = f"Task {EVIL}"
    first["tasks"][0]["description"] = f"{LINK}\n| cell | cell |"
    first["tasks"][0]["agent_id"] = 'agent"><script>x</script>'
    first["tasks"][0]["worker_queue_id"] = EVIL
    first["tasks"][0]["priority"] = "high"
    return TaskPlan.model_validate(data)


# -- HTML ---------------------------------------------------------------------------------------


def test_plan_html_shows_every_section() -> None:
    plan = demo()
    out = plan._repr_html_()
    assert out == plan_html(plan)
    for text in (
        "Zero-downtime rotation of the payments database credentials",
        "The Database Administrator creates a new login role",
        "5 story points, high confidence",
        "team <b>Platform Team</b> (team-platform)",
        "environment <b>production</b> (env-prod)",
        "worker queue <b>prod-b</b> (queue-prod-b)",
        "Two agents of the Platform Team share the work.",
        "Revoke the old credentials",
        "Database Administrator (agent-dba)",
        "$0.35",
        "$499.65",
        "Long-lived connections may keep using the old role until they reconnect",
        "Write access to the secrets manager",
        "The old role can no longer log in",
    ):
        assert (
            html.escape(text, quote=True).replace("&lt;b&gt;", "<b>").replace("&lt;/b&gt;", "</b>")
            in out
        ), text
    # The dependency column: task 5 depends on task 4, task 1 on nothing.
    rows = re.findall(r"<tr><td>(\d+)</td>.*?</td><td>(\w+)</td><td>([^<]*)</td>", out)
    assert [(r[0], r[2]) for r in rows] == [
        ("1", "&mdash;"),
        ("2", "1"),
        ("5", "4"),
        ("3", "2"),
        ("4", "3"),
    ]


def test_plan_html_escapes_every_model_string() -> None:
    out = plan_html(hostile_plan())
    assert "<script" not in out and "<img" not in out and "onerror=alert(1)>" not in out
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in out
    assert '"><script>' not in out
    assert "Questions:" in out  # has_questions shows the (escaped) questions


def test_plan_markdown_shows_the_sections_and_a_task_table() -> None:
    plan = demo()
    out = plan._repr_markdown_()
    assert out == plan_markdown(plan)
    assert out.startswith("### Zero-downtime rotation of the payments database credentials\n")
    assert "| # | Task | Agent | Priority | Depends on | Queue |" in out
    assert "| 5 | Revoke the old credentials | Database Administrator (agent-dba) " in out
    assert "| medium | 4 | queue-prod-b |" in out
    assert "**Recommended:** team **Platform Team** (team-platform)" in out
    assert "- Long-lived connections may keep using the old role until they reconnect" in out
    assert "payments\\_app\\_v2" in out  # underscores are not emphasis


def test_plan_markdown_escapes_html_and_markdown() -> None:
    out = plan_markdown(hostile_plan())
    assert "<" not in out  # no raw HTML at all: only entities
    assert "&lt;script&gt;" in out
    assert not re.search(r"(?<!\\)\]\(", out) and "\\[click\\]" in out  # no link
    table = [line for line in out.splitlines() if line.startswith("| ")]
    # Every row keeps its seven cell borders: a '|' in a model string is escaped.
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 7 for row in table), table
    lines = out.splitlines()
    assert not any(line.startswith(("#", "- -", "- 1.")) for line in lines[1:]), lines
    assert "- \\- \\[click\\]" in out and "- 1\\. numbered" in out


def test_a_subtask_is_indented_under_its_parent() -> None:
    data = demo_plan()
    data["team_breakdown"][0]["tasks"][0]["subtasks"] = [
        {**data["team_breakdown"][0]["tasks"][1], "id": 11, "title": "Dump the roles"}
    ]
    plan = TaskPlan.model_validate(data)
    assert "| 11 | &nbsp;&nbsp;&#8627; Dump the roles |" in plan_markdown(plan)
    assert "&nbsp;&nbsp;&#8627; <b>Dump the roles</b>" in plan_html(plan)


# -- Mermaid ------------------------------------------------------------------------------------


def test_mermaid_draws_tasks_by_agent_and_dependency_edges() -> None:
    out = demo().to_mermaid()
    assert out == plan_mermaid(demo())
    assert out.splitlines() == [
        "flowchart TD",
        '    subgraph g0["Database Administrator"]',
        '        t1["1. Snapshot roles and grants"]',
        '        t2["2. Create the new login role"]',
        '        t5["5. Revoke the old credentials"]',
        "    end",
        '    subgraph g1["DevOps Engineer"]',
        '        t3["3. Roll the secret into the payments service"]',
        '        t4["4. Verify and watch"]',
        "    end",
        "    t1 --> t2",
        "    t4 --> t5",
        "    t2 --> t3",
        "    t3 --> t4",
    ]


def test_mermaid_escapes_labels_links_subtasks_and_skips_unknown_dependencies() -> None:
    data = demo_plan()
    tasks = data["team_breakdown"][0]["tasks"]
    tasks[0]["title"] = 'Say "hi" <b>#1</b> `x`\nnext line'
    tasks[0]["subtasks"] = [{**tasks[1], "id": 11, "title": "Sub", "dependencies": [99]}]
    out = TaskPlan.model_validate(data).to_mermaid("LR")
    assert out.startswith("flowchart LR\n")
    assert 't1["1. Say #quot;hi#quot; #lt;b#gt;#35;1#lt;/b#gt; #96;x#96; next line"]' in out
    assert '        t11["11. Sub"]' in out and "    t1 -.-> t11" in out
    assert "t99" not in out
    with pytest.raises(ValueError, match="direction"):
        plan_mermaid(demo(), direction="sideways")


# -- executions ---------------------------------------------------------------------------------


async def plan_with(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message=f"Planning {EVIL}")
    return sample_plan(request)


async def fail(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    raise RuntimeError(f"model said {EVIL}")


async def run(fn: Any, description: str = "Rotate the DB credentials") -> tuple[Execution, str]:
    out = io.StringIO()
    async with Planner(strategies={"agno": FunctionStrategy(fn)}) as planner:
        response = await planner.generate(sample_request(description, planning_strategy="agno"))
        await display(planner, response.execution_id, file=out)
        return await planner.get(response.execution_id), out.getvalue()


async def test_a_completed_execution_renders_its_facts_and_its_plan() -> None:
    execution, _ = await run(plan_with, f"Rotate {EVIL}")
    out = execution._repr_html_()
    assert out == execution_html(execution)
    assert "<script" not in out and "&lt;script&gt;" in out
    assert f"<code>{execution.id}</code>" in out
    assert ">completed<" in out and ">agno<" in out and "took" in out
    assert 'class="planner-plan"' in out and "Step 3: Rotate" in out

    md = execution._repr_markdown_()
    assert md == execution_markdown(execution)
    assert f"**Execution** `{execution.id}`" in md and "| status | completed |" in md
    assert "<" not in md and "### Plan: Rotate &lt;script&gt;" in md


async def test_a_failed_execution_renders_its_error_without_a_plan() -> None:
    execution, printed = await run(fail)
    out = execution_html(execution)
    assert ">failed<" in out and "Error" in out and "model said &lt;script&gt;" in out
    assert "<script" not in out and "planner-plan" not in out
    assert "**Error** " in execution_markdown(execution)
    assert printed.splitlines()[-1].startswith(f"execution {execution.id}: failed: ")


async def test_display_prints_one_line_per_event_outside_a_notebook() -> None:
    execution, printed = await run(plan_with)
    lines = printed.splitlines()
    assert _kernel_shell() is None  # a test process is no Jupyter kernel
    kinds = [line.split()[1] for line in lines[:-1]]
    assert kinds[0] == "status" and kinds[-2:] == ["complete", "done"]
    assert "progress" in kinds
    assert f"Planning {EVIL}" in printed  # plain text stays as it was
    assert (
        lines[-1]
        == f"execution {execution.id}: completed: Plan: Rotate the DB credentials (3 tasks)"
    )


async def test_display_resumes_after_a_seq_and_writes_to_stdout_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Planner(strategies={"agno": FunctionStrategy(plan_with)}) as planner:
        response = await planner.generate(sample_request(planning_strategy="agno"))
        await planner.wait(response.execution_id)
        total = len(await planner.events(response.execution_id))
        await display(planner, response.execution_id, after=total - 2)
        # No IPython shell here: even rich=True falls back to the plain lines.
        await display(planner, response.execution_id, after=total - 1, rich=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [
        [str(total - 1), "complete"],
        [str(total), "done"],
    ]
    assert len(lines) == 5
    assert lines[3].split()[:2] == [str(total), "done"]
    assert lines[4] == lines[2]


def event(seq: int, type_: str, **data: Any) -> Event:
    return Event.model_validate(
        {
            "execution_id": "e1",
            "seq": seq,
            "type": type_,
            "data": data,
            "timestamp": "2026-01-01T00:00:00Z",
        }
    )


def test_the_progress_view_shows_the_latest_events_escaped() -> None:
    view = ProgressView("e1", max_lines=2)
    view.events += [
        event(1, "status", status="pending", current_step="submitted"),
        event(2, "status", status="running"),
        event(3, "progress", message=EVIL, progress=40),
    ]
    assert view.status == "running"
    out = view._repr_html_()
    assert "<script" not in out and "&lt;script&gt;" in out and "40%" in out
    assert "1 earlier events" in out and "submitted" not in out
    assert repr(view).splitlines() == [
        "execution e1: running",
        "   ... 1 earlier events",
        event_line(view.events[1]),
        event_line(view.events[2]),
    ]
    assert event_line(view.events[2]).startswith("   3  progress         <script>")


def test_import_planner_imports_no_notebook_package() -> None:
    code = "import planner, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('IPython', 'ipykernel', 'nbformat', 'nbclient', 'planner')))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = eval(proc.stdout)
    assert "planner.render" in loaded and "planner.plan_diff" in loaded  # the check sees modules
    assert not [m for m in loaded if not m.startswith("planner")]
    assert "planner.sync" not in loaded


@pytest.mark.parametrize("module_name", ["planner.render", "planner.plan_diff", "planner.sync"])
def test_every_public_name_is_documented(module_name: str) -> None:
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    assert module.__doc__
    for name in module.__all__:
        value = getattr(module, name)
        assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if not attr.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{module_name}.{name}.{attr}"
