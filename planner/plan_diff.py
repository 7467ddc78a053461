"""What a refinement changed: :func:`diff` compares two plans field by field.

Tasks are matched by ``id`` (the key that dependencies use), subtasks
included; a task whose id is in one plan only is added or removed, a task in
both whose fields differ is changed, with the fields named. The recommended
execution and every other top-level field are compared leaf by leaf, with
dotted paths (``complexity.story_points``); team-breakdown entries are matched
by agent, team or name (``team_breakdown[agent-dba].estimated_time_hours``).

``str(diff)`` is a terminal rendering, ``diff._repr_html_()`` a notebook one,
``diff.model_dump(mode="json")`` the data for scripts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planner.errors import ExecutionStateError
from planner.execution import Execution
from planner.plan import TaskItem, TaskPlan

__all__ = ["FieldChange", "PlanDiff", "TaskChange", "diff"]

_MISSING: Any = None


class FieldChange(BaseModel):
    """One field that differs: its dotted path and the values before and after.

    Attributes:
        field: the path, e.g. ``title``, ``complexity.story_points`` or
            ``recommended_worker_queue_id``.
        before: the old value (``None`` when the field was absent).
        after: the new value (``None`` when the field is gone).
    """

    model_config = ConfigDict(frozen=True)

    field: str
    before: Any = None
    after: Any = None


class TaskChange(BaseModel):
    """A task present in both plans whose fields differ.

    Attributes:
        id: the task id.
        title: the task's title in the new plan.
        changes: the fields that differ (``subtasks`` is never one: subtasks are
            compared as tasks of their own; ``parent`` is the id of the task a
            subtask moved under).
    """

    model_config = ConfigDict(frozen=True)

    id: int
    title: str
    changes: tuple[FieldChange, ...]

    @property
    def fields(self) -> list[str]:
        """The names of the fields that changed."""
        return [c.field for c in self.changes]


class PlanDiff(BaseModel):
    """The difference between two plans, as data, text and HTML.

    Attributes:
        before_title, after_title: the two plans' titles.
        added: tasks only in the new plan, in plan order.
        removed: tasks only in the old plan, in plan order.
        changed: tasks in both whose fields differ, in the new plan's order.
        recommendation: the fields of ``recommended_execution`` that differ.
        fields: every other top-level field that differs (dotted paths).
    """

    model_config = ConfigDict(frozen=True)

    before_title: str
    after_title: str
    added: tuple[TaskItem, ...] = Field(default_factory=tuple)
    removed: tuple[TaskItem, ...] = Field(default_factory=tuple)
    changed: tuple[TaskChange, ...] = Field(default_factory=tuple)
    recommendation: tuple[FieldChange, ...] = Field(default_factory=tuple)
    fields: tuple[FieldChange, ...] = Field(default_factory=tuple)

    @property
    def recommendation_changed(self) -> bool:
        """Whether the recommended agent or team, environment or queue changed."""
        return bool(self.recommendation)

    @property
    def tasks_changed(self) -> bool:
        """Whether any task was added, removed or changed."""
        return bool(self.added or self.removed or self.changed)

    def __bool__(self) -> bool:
        return bool(self.tasks_changed or self.recommendation or self.fields)

    def __str__(self) -> str:
        from planner.render import diff_text

        return diff_text(self)

    def _repr_html_(self) -> str:
        from planner.render import diff_html

        return diff_html(self)


PlanLike = TaskPlan | Mapping[str, Any] | Execution


def _as_plan(value: PlanLike, which: str) -> TaskPlan:
    if isinstance(value, TaskPlan):
        return value
    if isinstance(value, Execution):
        if value.plan_json is None:
            raise ExecutionStateError(
                f"execution {value.id!r} has no plan to compare (status {value.status.value})"
            )
        return TaskPlan.model_validate(value.plan_json)
    if isinstance(value, Mapping):
        return TaskPlan.model_validate(value)
    raise TypeError(
        f"diff() compares TaskPlan objects, plan_json mappings or Execution records; "
        f"{which} is a {type(value).__name__}"
    )


def _tasks_with_parents(plan: TaskPlan) -> Iterator[tuple[TaskItem, int | None]]:
    def walk(tasks: list[TaskItem], parent: int | None) -> Iterator[tuple[TaskItem, int | None]]:
        for task in tasks:
            yield task, parent
            yield from walk(task.subtasks, task.id)

    for item in plan.team_breakdown:
        yield from walk(item.tasks, None)


def _keyed_tasks(plan: TaskPlan) -> dict[tuple[int, int], tuple[TaskItem, int | None]]:
    # A (malformed) plan may reuse an id: the n-th task with an id matches the n-th.
    seen: dict[int, int] = {}
    keyed: dict[tuple[int, int], tuple[TaskItem, int | None]] = {}
    for task, parent in _tasks_with_parents(plan):
        n = seen.get(task.id, 0)
        seen[task.id] = n + 1
        keyed[(task.id, n)] = (task, parent)
    return keyed


def _leaf_changes(path: str, before: Any, after: Any) -> list[FieldChange]:
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[FieldChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            found.extend(_leaf_changes(sub, before.get(key, _MISSING), after.get(key, _MISSING)))
        return found
    if before == after:
        return []
    return [FieldChange(field=path, before=before, after=after)]


def _task_changes(
    old: tuple[TaskItem, int | None], new: tuple[TaskItem, int | None]
) -> list[FieldChange]:
    before = old[0].model_dump(mode="json", exclude={"subtasks"})
    after = new[0].model_dump(mode="json", exclude={"subtasks"})
    changes = _leaf_changes("", before, after)
    if old[1] != new[1]:
        changes.append(FieldChange(field="parent", before=old[1], after=new[1]))
    return changes


def _breakdown_key(entry: Mapping[str, Any]) -> str:
    return str(entry.get("agent_id") or entry.get("team_id") or entry.get("team_name"))


def _breakdown_changes(before: TaskPlan, after: TaskPlan) -> list[FieldChange]:
    def entries(plan: TaskPlan) -> dict[str, dict[str, Any]]:
        keyed: dict[str, dict[str, Any]] = {}
        for item in plan.team_breakdown:
            data = item.model_dump(mode="json", exclude={"tasks"})
            key = _breakdown_key(data)
            n = 2
            while key in keyed:  # the same agent twice: number the later entries
                key = f"{_breakdown_key(data)}#{n}"
                n += 1
            keyed[key] = data
        return keyed

    old, new = entries(before), entries(after)
    found: list[FieldChange] = []
    for key in [*old, *(k for k in new if k not in old)]:
        path = f"team_breakdown[{key}]"
        if key not in old or key not in new:
            found.append(FieldChange(field=path, before=old.get(key), after=new.get(key)))
        else:
            found.extend(_leaf_changes(path, old[key], new[key]))
    return found


def diff(plan_a: PlanLike, plan_b: PlanLike) -> PlanDiff:
    """Compare two plans: what changed from ``plan_a`` (before) to ``plan_b`` (after).

    Args:
        plan_a: the earlier plan (a refinement's parent): a :class:`~planner.TaskPlan`,
            its ``plan_json``, or a completed :class:`~planner.Execution`.
        plan_b: the later plan, in the same forms.

    Returns:
        A :class:`PlanDiff`; it is falsy when the plans are equal.

    Raises:
        ExecutionStateError: an execution has no plan (it did not complete).
        pydantic.ValidationError: a mapping is not a valid plan.
        TypeError: a value is none of the accepted forms.
    """
    before = _as_plan(plan_a, "plan_a")
    after = _as_plan(plan_b, "plan_b")
    old_tasks = _keyed_tasks(before)
    new_tasks = _keyed_tasks(after)
    changed: list[TaskChange] = []
    for key, new in new_tasks.items():
        old = old_tasks.get(key)
        if old is not None and (changes := _task_changes(old, new)):
            changed.append(TaskChange(id=new[0].id, title=new[0].title, changes=tuple(changes)))
    top_before = before.model_dump(mode="json", exclude={"team_breakdown", "recommended_execution"})
    top_after = after.model_dump(mode="json", exclude={"team_breakdown", "recommended_execution"})
    return PlanDiff(
        before_title=before.title,
        after_title=after.title,
        added=tuple(t for k, (t, _) in new_tasks.items() if k not in old_tasks),
        removed=tuple(t for k, (t, _) in old_tasks.items() if k not in new_tasks),
        changed=tuple(changed),
        recommendation=tuple(
            _leaf_changes(
                "",
                before.recommended_execution.model_dump(mode="json"),
                after.recommended_execution.model_dump(mode="json"),
            )
        ),
        fields=tuple(
            [*_leaf_changes("", top_before, top_after), *_breakdown_changes(before, after)]
        ),
    )
