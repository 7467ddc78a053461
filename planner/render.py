"""Plans, executions, diffs and live progress for people: HTML, Markdown, Mermaid, text.

Jupyter shows a :class:`~planner.TaskPlan` or an :class:`~planner.Execution`
through their ``_repr_html_`` / ``_repr_markdown_`` methods, which call the
functions here. Every string that came from a model (titles, descriptions,
reasoning, ids, risks ...) is escaped: a plan is untrusted input, and a
``<script>`` in a task title must stay text.

:func:`display` follows an execution live: in a Jupyter kernel one output that
is updated in place, elsewhere one plain line per event. IPython is imported
only when it is already loaded (that is, inside IPython).
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from pydantic import ValidationError

from planner.events import Event
from planner.execution import Execution
from planner.plan import TaskItem, TaskPlan, TeamBreakdownItem

if TYPE_CHECKING:
    from planner.plan_diff import FieldChange, PlanDiff
    from planner.planner import Planner

__all__ = [
    "ProgressView",
    "diff_html",
    "diff_text",
    "display",
    "display_sync",
    "event_line",
    "event_text",
    "execution_html",
    "execution_markdown",
    "plan_html",
    "plan_markdown",
    "plan_mermaid",
]

# -- escaping ----------------------------------------------------------------------------------


def _flat(value: object) -> str:
    return " ".join(str(value).split())


def _h(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")
_MD_BLOCK_START = re.compile(r"^(\s*\d*)([#>+=.)-])")


def _md(value: object) -> str:
    """Escape for one line of Markdown: no HTML, no emphasis, links, table cells or blocks."""
    text = html.escape(_flat(value), quote=False)
    text = _MD_INLINE.sub(r"\\\1", text)
    return _MD_BLOCK_START.sub(lambda m: m[1] + "\\" + m[2], text)


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


# -- plans -------------------------------------------------------------------------------------


def _task_rows(plan: TaskPlan) -> Iterator[tuple[int, TaskItem, TeamBreakdownItem]]:
    def walk(
        tasks: list[TaskItem], depth: int, item: TeamBreakdownItem
    ) -> Iterator[tuple[int, TaskItem, TeamBreakdownItem]]:
        for task in tasks:
            yield depth, task, item
            yield from walk(task.subtasks, depth + 1, item)

    for item in plan.team_breakdown:
        yield from walk(item.tasks, 0, item)


def _agent_names(plan: TaskPlan) -> dict[str, str]:
    return {
        item.agent_id: item.agent_name
        for item in plan.team_breakdown
        if item.agent_id and item.agent_name
    }


def _recommendation(plan: TaskPlan) -> list[tuple[str, str, str | None]]:
    """(label, name, id) rows of the recommended execution."""
    rec = plan.recommended_execution
    rows: list[tuple[str, str, str | None]] = [(rec.entity_type, rec.entity_name, rec.entity_id)]
    env_name = rec.recommended_environment_name or plan.selected_environment_name
    env_id = rec.recommended_environment_id or plan.selected_environment_id
    if env_name or env_id:
        rows.append(("environment", env_name or env_id or "", env_id))
    if rec.recommended_worker_queue_id or rec.recommended_worker_queue_name:
        rows.append(
            (
                "worker queue",
                rec.recommended_worker_queue_name or rec.recommended_worker_queue_id or "",
                rec.recommended_worker_queue_id,
            )
        )
    if plan.selected_agent_model_id:
        rows.append(("model", plan.selected_agent_model_id, None))
    return rows


def _named_html(name: str, id_: str | None, *, bold: bool = False) -> str:
    """The name, and the id in parentheses when it says something more."""
    shown = f"<b>{_h(name)}</b>" if bold else _h(name)
    return shown + (f" ({_h(id_)})" if id_ and id_ != name else "")


def _named_md(name: str, id_: str | None, *, bold: bool = False) -> str:
    shown = f"**{_md(name)}**" if bold else _md(name)
    return shown + (f" ({_md(id_)})" if id_ and id_ != name else "")


def plan_html(plan: TaskPlan) -> str:
    """Render a plan as an HTML fragment for notebooks (every plan string escaped).

    Args:
        plan: the plan.

    Returns:
        A ``<div>`` with the title, summary, complexity, recommended execution,
        a task table (agent, priority, dependencies, queue), costs, savings,
        risks, prerequisites, success criteria and open questions.
    """
    names = _agent_names(plan)
    c = plan.complexity
    out = [
        '<div class="planner-plan">',
        f"<h3>{_h(plan.title)}</h3>",
        f"<p>{_h(plan.summary)}</p>",
        f"<p><b>Complexity:</b> {c.story_points} story points, {_h(c.confidence)} confidence"
        f" &mdash; {_h(c.reasoning)}</p>",
        "<p><b>Recommended:</b> "
        + ", ".join(
            f"{_h(label)} {_named_html(name, id_, bold=True)}"
            for label, name, id_ in _recommendation(plan)
        )
        + f" &mdash; {_h(plan.recommended_execution.reasoning)}</p>",
        "<table><thead><tr><th>#</th><th>Task</th><th>Agent</th><th>Priority</th>"
        "<th>Depends on</th><th>Queue</th></tr></thead><tbody>",
    ]
    for depth, task, _item in _task_rows(plan):
        agent = _named_html(names.get(task.agent_id, task.agent_id), task.agent_id)
        indent = "&nbsp;&nbsp;" * depth + ("&#8627; " if depth else "")
        deps = ", ".join(str(d) for d in task.dependencies) or "&mdash;"
        out.append(
            f"<tr><td>{task.id}</td>"
            f'<td style="text-align:left">{indent}<b>{_h(task.title)}</b><br>'
            f"<small>{_h(task.description)}</small></td>"
            f"<td>{agent}</td>"
            f"<td>{_h(task.priority)}</td><td>{deps}</td>"
            f"<td>{_h(task.worker_queue_id or '')}</td></tr>"
        )
    out.append("</tbody></table>")
    cost = plan.cost_estimate
    out.append(f"<p><b>Estimated cost:</b> {_money(cost.estimated_cost_usd)}")
    if cost.breakdown:
        out.append(
            " ("
            + "; ".join(f"{_h(line.item)}: {_money(line.cost)}" for line in cost.breakdown)
            + ")"
        )
    out.append("</p>")
    s = plan.realized_savings
    out.append(
        f"<p><b>Savings:</b> {_money(s.money_saved)} and {s.time_saved_hours:g} h"
        f" ({s.time_saved_percentage}%) against doing it by hand &mdash;"
        f" {_h(s.savings_summary)}</p>"
    )
    for heading, items in (
        ("Risks", plan.risks),
        ("Prerequisites", plan.prerequisites),
        ("Success criteria", plan.success_criteria),
    ):
        if items:
            out.append(f"<p><b>{heading}</b></p><ul>")
            out.extend(f"<li>{_h(item)}</li>" for item in items)
            out.append("</ul>")
    if plan.has_questions and plan.questions:
        out.append(f"<p><b>Questions:</b> {_h(plan.questions)}</p>")
    out.append("</div>")
    return "".join(out)


def plan_markdown(plan: TaskPlan) -> str:
    """Render a plan as Markdown (every plan string escaped, no raw HTML).

    Args:
        plan: the plan.

    Returns:
        The same sections as :func:`plan_html`, as Markdown text.
    """
    names = _agent_names(plan)
    c = plan.complexity
    rec = ", ".join(
        f"{_md(label)} {_named_md(name, id_, bold=True)}"
        for label, name, id_ in _recommendation(plan)
    )
    lines = [
        f"### {_md(plan.title)}",
        "",
        _md(plan.summary),
        "",
        f"**Complexity:** {c.story_points} story points, {_md(c.confidence)} confidence"
        f" - {_md(c.reasoning)}",
        "",
        f"**Recommended:** {rec} - {_md(plan.recommended_execution.reasoning)}",
        "",
        "| # | Task | Agent | Priority | Depends on | Queue |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for depth, task, _item in _task_rows(plan):
        agent = _named_md(names.get(task.agent_id, task.agent_id), task.agent_id)
        indent = "&nbsp;&nbsp;" * depth + ("&#8627; " if depth else "")
        deps = ", ".join(str(d) for d in task.dependencies) or "-"
        lines.append(
            f"| {task.id} | {indent}{_md(task.title)} | {agent} "
            f"| {_md(task.priority)} | {deps} | {_md(task.worker_queue_id or '')} |"
        )
    cost = plan.cost_estimate
    breakdown = "; ".join(f"{_md(line.item)}: {_money(line.cost)}" for line in cost.breakdown)
    s = plan.realized_savings
    lines += [
        "",
        f"**Estimated cost:** {_money(cost.estimated_cost_usd)}"
        + (f" ({breakdown})" if breakdown else ""),
        "",
        f"**Savings:** {_money(s.money_saved)} and {s.time_saved_hours:g} h"
        f" ({s.time_saved_percentage}%) against doing it by hand - {_md(s.savings_summary)}",
    ]
    for heading, items in (
        ("Risks", plan.risks),
        ("Prerequisites", plan.prerequisites),
        ("Success criteria", plan.success_criteria),
    ):
        if items:
            lines += ["", f"**{heading}**", ""]
            lines.extend(f"- {_md(item)}" for item in items)
    if plan.has_questions and plan.questions:
        lines += ["", f"**Questions:** {_md(plan.questions)}"]
    return "\n".join(lines) + "\n"


def _mermaid_label(value: object) -> str:
    # Mermaid's entity codes: '#' first, so the codes added after stay intact.
    text = _flat(value).replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("`", "#96;")):
        text = text.replace(char, code)
    return text


def plan_mermaid(plan: TaskPlan, *, direction: str = "TD") -> str:
    """Return the plan's task dependency graph as a Mermaid flowchart.

    One node per task (subtasks included), grouped in one subgraph per
    team-breakdown entry; ``A --> B`` means B depends on A; a dotted arrow leads
    from a task to its subtasks. Labels are escaped with Mermaid entity codes.
    Dependencies on tasks that are not in the plan are left out.

    Args:
        plan: the plan.
        direction: the flowchart direction: ``TD``, ``LR``, ``BT`` or ``RL``.

    Returns:
        Mermaid source text, e.g. for a fenced ``mermaid`` block.

    Raises:
        ValueError: an unknown direction.
    """
    if direction not in ("TD", "TB", "LR", "BT", "RL"):
        raise ValueError(f"direction must be one of TD, TB, LR, BT, RL; got {direction!r}")
    names = _agent_names(plan)
    lines = [f"flowchart {direction}"]
    ids: set[int] = set()
    edges: list[str] = []
    for g, item in enumerate(plan.team_breakdown):
        title = item.agent_name or names.get(item.agent_id or "", "") or item.team_name
        lines.append(f'    subgraph g{g}["{_mermaid_label(title)}"]')
        for _depth, task, _item in _task_rows_of(item):
            if task.id not in ids:
                ids.add(task.id)
                lines.append(f'        t{task.id}["{task.id}. {_mermaid_label(task.title)}"]')
            edges.extend(f"    t{task.id} -.-> t{sub.id}" for sub in task.subtasks)
        lines.append("    end")
    for _depth, task, _item in _task_rows(plan):
        edges.extend(f"    t{dep} --> t{task.id}" for dep in task.dependencies if dep in ids)
    lines.extend(dict.fromkeys(edges))  # each edge once, in order
    return "\n".join(lines) + "\n"


def _task_rows_of(item: TeamBreakdownItem) -> Iterator[tuple[int, TaskItem, TeamBreakdownItem]]:
    stack = [(0, task) for task in reversed(item.tasks)]
    while stack:
        depth, task = stack.pop()
        yield depth, task, item
        stack.extend((depth + 1, sub) for sub in reversed(task.subtasks))


# -- executions --------------------------------------------------------------------------------


def _plan_of(execution: Execution) -> TaskPlan | None:
    if execution.plan_json is None:
        return None
    try:
        return TaskPlan.model_validate(execution.plan_json)
    except ValidationError:
        return None


def _execution_facts(execution: Execution) -> list[tuple[str, str]]:
    meta = execution.metadata
    facts = [
        ("status", execution.status.value),
        ("strategy", meta.planning_strategy + (" (quick mode)" if meta.quick_mode else "")),
        ("created", execution.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    if execution.started_at and execution.completed_at:
        seconds = (execution.completed_at - execution.started_at).total_seconds()
        facts.append(("took", f"{seconds:.1f} s"))
    if meta.current_step and not execution.terminal:
        facts.append(("step", meta.current_step))
    if meta.models:
        facts.append(("models", ", ".join(meta.models)))
    usage = meta.usage
    if usage.input_tokens or usage.output_tokens:
        facts.append(
            (
                "usage",
                f"{usage.input_tokens} input + {usage.output_tokens} output tokens, "
                f"about {_money(usage.cost_usd)}",
            )
        )
    if execution.attempt > 1:
        facts.append(("attempts", str(execution.attempt)))
    if execution.parent_execution_id:
        facts.append(("refines", execution.parent_execution_id))
    if execution.cancel_requested and not execution.terminal:
        facts.append(("cancel", "requested"))
    return facts


def execution_html(execution: Execution) -> str:
    """Render an execution record as an HTML fragment: its facts, its error, its plan.

    Args:
        execution: the record.

    Returns:
        A ``<div>``: the task asked, status, strategy, timing, usage, the
        error of a failed run, and the plan (see :func:`plan_html`) of a
        completed one.
    """
    out = [
        '<div class="planner-execution">',
        f"<p><b>Execution</b> <code>{_h(execution.id)}</code>: "
        f"{_h(execution.request.description)}</p>",
        "<table><tbody>",
    ]
    out.extend(
        f'<tr><th style="text-align:left">{_h(k)}</th><td style="text-align:left">{_h(v)}</td></tr>'
        for k, v in _execution_facts(execution)
    )
    out.append("</tbody></table>")
    if execution.error is not None:
        out.append(
            f"<p><b>Error</b> <code>{_h(execution.error.type)}</code>: "
            f"{_h(execution.error.message)}</p>"
        )
    plan = _plan_of(execution)
    if plan is not None:
        out.append(plan_html(plan))
    elif execution.plan_json is not None:
        out.append("<p><i>The stored plan is not a valid TaskPlan.</i></p>")
    out.append("</div>")
    return "".join(out)


def execution_markdown(execution: Execution) -> str:
    """Render an execution record as Markdown: the sections of :func:`execution_html`.

    Args:
        execution: the record.

    Returns:
        Markdown text.
    """
    lines = [
        f"**Execution** `{execution.id}`: {_md(execution.request.description)}",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines.extend(f"| {_md(k)} | {_md(v)} |" for k, v in _execution_facts(execution))
    if execution.error is not None:
        lines += [
            "",
            f"**Error** {_md(execution.error.type)}: {_md(execution.error.message)}",
        ]
    plan = _plan_of(execution)
    if plan is not None:
        lines += ["", plan_markdown(plan)]
    elif execution.plan_json is not None:
        lines += ["", "*The stored plan is not a valid TaskPlan.*"]
    return "\n".join(lines).rstrip("\n") + "\n"


# -- diffs -------------------------------------------------------------------------------------


def _short(value: Any, width: int = 80) -> str:
    if value is None:
        return "(none)"
    text = _flat(value if isinstance(value, str) else repr(value))
    return text if len(text) <= width else text[: width - 3] + "..."


def _list_edits(change: FieldChange) -> tuple[list[Any], list[Any]] | None:
    """Items removed and added, when both sides are lists (``risks``, ``dependencies``)."""
    if not isinstance(change.before, list | type(None)) or not isinstance(
        change.after, list | type(None)
    ):
        return None
    if change.before is None and change.after is None:
        return None
    before, after = change.before or [], change.after or []
    return [x for x in before if x not in after], [x for x in after if x not in before]


def _change_text(change: FieldChange) -> list[str]:
    edits = _list_edits(change)
    if edits is not None and (edits[0] or edits[1]):
        return [
            f"{change.field}:",
            *(f"  - {_short(x)}" for x in edits[0]),
            *(f"  + {_short(x)}" for x in edits[1]),
        ]
    return [f"{change.field}: {_short(change.before)} -> {_short(change.after)}"]


def diff_text(diff: PlanDiff) -> str:
    """Render a plan diff for a terminal: ``+`` added, ``-`` removed, ``~`` changed.

    Args:
        diff: the diff (see :func:`planner.diff`).

    Returns:
        Plain text lines; ``"no changes"`` for equal plans.
    """
    title = (
        f"plan: {_short(diff.before_title)}"
        if diff.before_title == diff.after_title
        else f"plan: {_short(diff.before_title)} -> {_short(diff.after_title)}"
    )
    lines = [title]
    if not diff:
        return title + "\nno changes\n"
    if diff.tasks_changed:
        lines.append(
            f"tasks: {len(diff.added)} added, {len(diff.removed)} removed, "
            f"{len(diff.changed)} changed"
        )
        lines.extend(f"  + {t.id}. {_short(t.title)} ({t.agent_id})" for t in diff.added)
        lines.extend(f"  - {t.id}. {_short(t.title)}" for t in diff.removed)
        for task in diff.changed:
            lines.append(f"  ~ {task.id}. {_short(task.title)}: {', '.join(task.fields)}")
            lines.extend(f"      {line}" for c in task.changes for line in _change_text(c))
    if diff.recommendation:
        lines.append("recommendation changed:")
        lines.extend(f"  {line}" for c in diff.recommendation for line in _change_text(c))
    if diff.fields:
        lines.append("other fields changed:")
        lines.extend(f"  {line}" for c in diff.fields for line in _change_text(c))
    return "\n".join(lines) + "\n"


def _change_html(change: FieldChange) -> str:
    edits = _list_edits(change)
    if edits is not None and (edits[0] or edits[1]):
        items = [f'<li style="color:#b00">&minus; {_h(_short(x, 200))}</li>' for x in edits[0]]
        items += [f'<li style="color:#070">+ {_h(_short(x, 200))}</li>' for x in edits[1]]
        return f"<code>{_h(change.field)}</code><ul>{''.join(items)}</ul>"
    return (
        f"<code>{_h(change.field)}</code>: <del>{_h(_short(change.before, 200))}</del>"
        f" &rarr; <ins>{_h(_short(change.after, 200))}</ins>"
    )


def diff_html(diff: PlanDiff) -> str:
    """Render a plan diff as an HTML fragment for notebooks (every plan string escaped).

    Args:
        diff: the diff (see :func:`planner.diff`).

    Returns:
        A ``<div>`` with the added, removed and changed tasks and the other changes.
    """
    out = ['<div class="planner-diff">']
    if diff.before_title == diff.after_title:
        out.append(f"<p><b>Plan:</b> {_h(diff.after_title)}</p>")
    else:
        out.append(
            f"<p><b>Plan:</b> <del>{_h(diff.before_title)}</del> &rarr; "
            f"<ins>{_h(diff.after_title)}</ins></p>"
        )
    if not diff:
        out.append("<p>No changes.</p></div>")
        return "".join(out)
    if diff.tasks_changed:
        out.append(
            f"<p><b>Tasks:</b> {len(diff.added)} added, {len(diff.removed)} removed, "
            f"{len(diff.changed)} changed</p><ul>"
        )
        out.extend(
            f'<li style="color:#070">+ {t.id}. {_h(t.title)} <small>({_h(t.agent_id)})</small></li>'
            for t in diff.added
        )
        out.extend(
            f'<li style="color:#b00">&minus; {t.id}. <del>{_h(t.title)}</del></li>'
            for t in diff.removed
        )
        for task in diff.changed:
            inner = "".join(f"<li>{_change_html(c)}</li>" for c in task.changes)
            out.append(f"<li>~ {task.id}. {_h(task.title)}<ul>{inner}</ul></li>")
        out.append("</ul>")
    for heading, changes in (
        ("Recommendation changed", diff.recommendation),
        ("Other fields changed", diff.fields),
    ):
        if changes:
            out.append(f"<p><b>{heading}:</b></p><ul>")
            out.extend(f"<li>{_change_html(c)}</li>" for c in changes)
            out.append("</ul>")
    out.append("</div>")
    return "".join(out)


# -- live progress -----------------------------------------------------------------------------

_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "status": ("status", "current_step", "error_message"),
    "progress": ("message",),
    "step_started": ("step_name", "step_description"),
    "step_completed": ("step_name",),
    "thinking": ("content",),
    "tool_call": ("tool_name",),
    "tool_result": ("tool_name", "status", "error"),
    "validation_error": ("error",),
    "error": ("error", "message"),
}
_DEFAULT_FIELDS = ("message", "step_name", "tool_name", "content")


def event_text(event: Event, width: int = 120) -> str:
    """Return what an event is about, on one line of at most ``width`` characters."""
    data = event.data
    parts = [
        _flat(data[f])
        for f in _EVENT_FIELDS.get(event.type, _DEFAULT_FIELDS)
        if data.get(f) not in (None, "")
    ]
    if event.type == "validation_error":
        parts.insert(0, f"attempt {data.get('attempt')}")
        if data.get("retrying"):
            parts.append("retrying")
    progress = data.get("progress")
    if isinstance(progress, int | float) and event.type != "complete":
        parts.append(f"{progress:g}%")
    duration = data.get("duration_seconds")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.1f} s")
    text = (": " if event.type == "error" else " - ").join(parts)
    if not parts and data:  # a third-party event with fields of its own
        text = _flat(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return text if len(text) <= width else text[: width - 3] + "..."


def event_line(event: Event, width: int = 120) -> str:
    """Return one plain line for an event: its ``seq``, type and what it is about."""
    return f"{event.seq:>4}  {event.type:<16} {event_text(event, width)}".rstrip()


class ProgressView:
    """What :func:`display` shows: an execution's latest events, then its record.

    It renders as HTML (``_repr_html_``) and as text (``repr``); ``max_lines``
    events are shown, the earlier ones counted.

    Attributes:
        execution_id: the execution followed.
        events: every event seen so far.
        execution: the final record, once the stream has ended.
    """

    def __init__(self, execution_id: str, *, max_lines: int = 12) -> None:
        self.execution_id = execution_id
        self.events: list[Event] = []
        self.execution: Execution | None = None
        self.max_lines = max_lines

    @property
    def status(self) -> str:
        """The latest status seen: from the final record, else from the events."""
        if self.execution is not None:
            return self.execution.status.value
        for event in reversed(self.events):
            if event.type == "status" and isinstance(event.data.get("status"), str):
                return str(event.data["status"])
        return "pending"

    def _shown(self) -> tuple[int, list[Event]]:
        hidden = max(0, len(self.events) - self.max_lines)
        return hidden, self.events[hidden:]

    def __repr__(self) -> str:
        hidden, shown = self._shown()
        lines = [f"execution {self.execution_id}: {self.status}"]
        if hidden:
            lines.append(f"   ... {hidden} earlier events")
        lines.extend(event_line(e) for e in shown)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if self.execution is not None and self.execution.terminal:
            log = "".join(f"{_h(event_line(e))}\n" for e in self.events)
            return (
                f"{execution_html(self.execution)}<details><summary>{len(self.events)} events"
                f"</summary><pre>{log}</pre></details>"
            )
        hidden, shown = self._shown()
        rows = "".join(
            f"<tr><td>{e.seq}</td><td><code>{_h(e.type)}</code></td>"
            f'<td style="text-align:left">{_h(event_text(e))}</td></tr>'
            for e in shown
        )
        more = f"<p><small>{hidden} earlier events</small></p>" if hidden else ""
        return (
            f'<div class="planner-progress"><p><b>Execution</b> '
            f"<code>{_h(self.execution_id)}</code>: {_h(self.status)}</p>{more}"
            f"<table><tbody>{rows}</tbody></table></div>"
        )


class _Sink(Protocol):
    def add(self, event: Event) -> None: ...
    def finish(self, execution: Execution) -> None: ...


def _ipython_shell() -> Any:
    """The running IPython shell, or ``None``; IPython is not imported here."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _kernel_shell() -> Any:
    """The IPython shell of a Jupyter kernel, or ``None``."""
    shell = _ipython_shell()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


class _RichSink:
    def __init__(self, view: ProgressView, handle: Any) -> None:
        self.view = view
        self.handle = handle

    def add(self, event: Event) -> None:
        self.view.events.append(event)
        self.handle.update(self.view)

    def finish(self, execution: Execution) -> None:
        self.view.execution = execution
        self.handle.update(self.view)


class _TextSink:
    def __init__(self, view: ProgressView, file: TextIO) -> None:
        self.view = view
        self.file = file

    def add(self, event: Event) -> None:
        self.view.events.append(event)
        print(event_line(event), file=self.file, flush=True)

    def finish(self, execution: Execution) -> None:
        self.view.execution = execution
        ending = f"execution {execution.id}: {execution.status.value}"
        if execution.error is not None:
            ending += f": {execution.error.type}: {execution.error.message}"
        plan = _plan_of(execution)
        if plan is not None:
            ending += f": {_flat(plan.title)} ({plan.total_tasks} tasks)"
        print(ending, file=self.file, flush=True)


def _sink(view: ProgressView, rich: bool | None, file: TextIO | None) -> _Sink:
    if rich is None:
        rich = file is None and _kernel_shell() is not None
    # Without an IPython shell there is no display to update: plain lines then.
    if rich and _ipython_shell() is not None:
        from IPython.display import display as ipy_display

        handle = ipy_display(view, display_id=True)  # type: ignore[no-untyped-call]
        if handle is not None:
            return _RichSink(view, handle)
    return _TextSink(view, file if file is not None else sys.stdout)


async def display(
    planner: Planner,
    execution_id: str,
    *,
    after: int = 0,
    rich: bool | None = None,
    file: TextIO | None = None,
    max_lines: int = 12,
) -> None:
    """Show an execution's progress live until it ends, then its record and plan.

    In a Jupyter kernel, one output shows the latest events and is updated in
    place as they arrive; when the execution ends it shows the record with its
    plan. Elsewhere (a script, a terminal, a test) one plain line per event is
    printed, then a last line with the outcome. Nothing is raised for a failed
    or cancelled execution: the view shows it.

    Args:
        planner: a started :class:`~planner.Planner`.
        execution_id: the execution to follow.
        after: start after this ``seq`` (0: from the beginning).
        rich: ``True`` for the notebook display (plain lines when there is no
            IPython shell to display in), ``False`` for plain lines, ``None``
            (default) to pick by where it runs: rich in a Jupyter kernel.
        file: where plain lines go (default ``sys.stdout``); giving one selects them.
        max_lines: how many events the notebook display shows at once.

    It returns nothing, so that ``await display(...)`` as a cell's last line
    does not show the record a second time; ``await planner.get(id)`` gives it.

    Raises:
        ExecutionNotFoundError: no such execution.
    """
    view = ProgressView(execution_id, max_lines=max_lines)
    sink = _sink(view, rich, file)
    events: AsyncIterator[Event] = planner.stream(execution_id, after)
    async for event in events:
        sink.add(event)
    sink.finish(await planner.get(execution_id))


def display_sync(
    events: Iterable[Event],
    final: Callable[[], Execution],
    execution_id: str,
    *,
    rich: bool | None = None,
    file: TextIO | None = None,
    max_lines: int = 12,
) -> None:
    """Show events from a plain iterator like :func:`display` does (the sync facade's display).

    Args:
        events: the execution's events, ending after ``done``.
        final: returns the execution record once the events have ended.
        execution_id: the execution followed.
        rich, file, max_lines: as for :func:`display`.
    """
    view = ProgressView(execution_id, max_lines=max_lines)
    sink = _sink(view, rich, file)
    for event in events:
        sink.add(event)
    sink.finish(final())
