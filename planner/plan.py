"""The plan model and the check of a plan against the request that asked for it.

:class:`TaskPlan` carries the field names of the reference service's
``TaskPlanResponse`` (``plan_json`` is ``TaskPlan.model_dump(mode="json")``), so
plans interoperate with tools built for the reference.

:func:`validate_plan` checks what the reference leaves to chance: every agent,
team, environment and worker-queue id the plan names is in the request, the
recommended worker queue belongs to the chosen environment and is the one with
the most active workers, and task dependencies point at tasks of the plan.
Violations come back as :class:`PlanViolation` data that a strategy can send
back to a model verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.models import TaskPlanRequest, WorkerQueueInfo

__all__ = [
    "AgentModelInfo",
    "ComplexityInfo",
    "CostBreakdownItem",
    "CostEstimate",
    "HumanResourceCost",
    "LLMCostItem",
    "PlanViolation",
    "RealizedSavings",
    "RecommendedExecution",
    "RuntimeCost",
    "TaskItem",
    "TaskPlan",
    "TeamBreakdownItem",
    "ToolCostCategory",
    "ToolUsageInfo",
    "iter_tasks",
    "validate_plan",
]


class _PlanModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ComplexityInfo(_PlanModel):
    """How big the work is: story points (1 to 21), confidence and why."""

    story_points: int = Field(ge=1, le=21, description="Fibonacci-like size, 1 to 21")
    confidence: Literal["low", "medium", "high"] = "medium"
    reasoning: str


class AgentModelInfo(_PlanModel):
    """The model an agent runs on and what it is expected to cost."""

    model_id: str
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    cost_per_1k_input_tokens: float = 0.0
    cost_per_1k_output_tokens: float = 0.0
    total_model_cost: float = 0.0


class ToolUsageInfo(_PlanModel):
    """A tool an agent is expected to call, how often, and at what cost."""

    tool_name: str
    estimated_calls: int = 0
    cost_per_call: float = 0.0
    total_tool_cost: float = 0.0


class TaskItem(_PlanModel):
    """One task of the plan, assigned to an agent, possibly with subtasks."""

    id: int
    title: str
    description: str
    details: str
    test_strategy: str
    priority: Literal["high", "medium", "low"] = "medium"
    dependencies: list[int] = Field(default_factory=list)
    status: Literal["pending", "in_progress", "done"] = "pending"
    subtasks: list[TaskItem] = Field(default_factory=list)
    agent_id: str
    worker_queue_id: str | None = None
    skills_to_use: list[str] | None = None
    env_vars_to_use: list[str] | None = None
    secrets_to_use: list[str] | None = None
    knowledge_references: list[str] | None = None


class TeamBreakdownItem(_PlanModel):
    """The share of the work one team or agent takes, with its tasks."""

    team_id: str | None = None
    team_name: str
    agent_id: str | None = None
    agent_name: str | None = None
    responsibilities: list[str] = Field(default_factory=list)
    estimated_time_hours: float = 0.0
    model_info: AgentModelInfo | None = None
    expected_tools: list[ToolUsageInfo] = Field(default_factory=list)
    agent_cost: float = 0.0
    tasks: list[TaskItem] = Field(min_length=1)


class RecommendedExecution(_PlanModel):
    """Who should run the plan, and where."""

    entity_type: Literal["agent", "team"]
    entity_id: str
    entity_name: str
    reasoning: str
    recommended_environment_id: str | None = None
    recommended_environment_name: str | None = None
    recommended_worker_queue_id: str | None = None
    recommended_worker_queue_name: str | None = None
    execution_reasoning: str | None = None


class CostBreakdownItem(_PlanModel):
    """One line of the cost estimate."""

    item: str
    cost: float


class LLMCostItem(_PlanModel):
    """Model usage and its cost, for the plan itself or for running it."""

    model_id: str
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    cost_per_1k_input_tokens: float = 0.0
    cost_per_1k_output_tokens: float = 0.0
    total_cost: float = 0.0


class ToolCostCategory(_PlanModel):
    """Tool costs grouped under a category."""

    category: str
    tools: list[ToolUsageInfo] = Field(default_factory=list)
    category_total: float = 0.0


class RuntimeCost(_PlanModel):
    """The cost of worker time."""

    worker_execution_hours: float = 0.0
    cost_per_hour: float = 0.0
    total_cost: float = 0.0


class CostEstimate(_PlanModel):
    """What running the plan is expected to cost, in USD."""

    estimated_cost_usd: float
    breakdown: list[CostBreakdownItem] = Field(default_factory=list)
    llm_costs: list[LLMCostItem] = Field(default_factory=list)
    tool_costs: list[ToolCostCategory] = Field(default_factory=list)
    runtime_cost: RuntimeCost | None = None


class HumanResourceCost(_PlanModel):
    """A role the work would need without automation."""

    role: str
    hourly_rate: float
    estimated_hours: float
    total_cost: float


class RealizedSavings(_PlanModel):
    """What automation saves against doing the work by hand."""

    without_kubiya_cost: float
    without_kubiya_hours: float
    without_kubiya_resources: list[HumanResourceCost] = Field(default_factory=list)
    with_kubiya_cost: float
    with_kubiya_hours: float
    money_saved: float
    time_saved_hours: float
    time_saved_percentage: int
    savings_summary: str


class TaskPlan(_PlanModel):
    """A structured, executable plan: the reference's ``TaskPlanResponse``."""

    title: str
    summary: str
    complexity: ComplexityInfo
    team_breakdown: list[TeamBreakdownItem]
    recommended_execution: RecommendedExecution
    cost_estimate: CostEstimate
    realized_savings: RealizedSavings
    risks: list[str] = Field(default_factory=list)
    prerequisites: list[str] = Field(default_factory=list)
    success_criteria: list[str] = Field(default_factory=list)
    has_questions: bool = False
    questions: str | None = None
    execution_prompt: str | None = Field(default=None, max_length=10000)
    selected_environment_id: str | None = None
    selected_environment_name: str | None = None
    selected_agent_runtime: str | None = None
    selected_agent_model_id: str | None = None

    @property
    def total_tasks(self) -> int:
        """The number of tasks in the plan, subtasks included."""
        return sum(1 for _ in iter_tasks(self))

    def to_mermaid(self, direction: str = "TD") -> str:
        """Return the task dependency graph as Mermaid flowchart text.

        See :func:`planner.render.plan_mermaid` for the layout and ``direction``.
        """
        from planner.render import plan_mermaid

        return plan_mermaid(self, direction=direction)

    def _repr_html_(self) -> str:
        from planner.render import plan_html

        return plan_html(self)

    def _repr_markdown_(self) -> str:
        from planner.render import plan_markdown

        return plan_markdown(self)


class PlanViolation(BaseModel):
    """One way a plan disagrees with its request, as data a model can act on.

    Attributes:
        code: machine-readable kind, e.g. ``unknown_agent``, ``queue_not_preferred``.
        loc: where in the plan, as a path of keys and list indexes.
        message: one sentence for a person or a model.
        value: the offending value.
        allowed: the values that would be accepted (ids from the request).
    """

    model_config = ConfigDict(frozen=True)

    code: str
    loc: tuple[str | int, ...]
    message: str
    value: Any = None
    allowed: list[Any] = Field(default_factory=list)


def iter_tasks(plan: TaskPlan) -> Iterator[TaskItem]:
    """Yield every task of the plan, depth first, subtasks after their parent."""
    stack: list[TaskItem] = [
        t for item in reversed(plan.team_breakdown) for t in reversed(item.tasks)
    ]
    while stack:
        task = stack.pop()
        yield task
        stack.extend(reversed(task.subtasks))


def _best_queues(queues: Sequence[WorkerQueueInfo]) -> list[WorkerQueueInfo]:
    active = [q for q in queues if q.active_workers > 0]
    if not active:
        return []
    most = max(q.active_workers for q in active)
    return [q for q in active if q.active_workers == most]


def validate_plan(plan: TaskPlan, request: TaskPlanRequest) -> list[PlanViolation]:
    """Check a plan against the inventory of the request that asked for it.

    Every agent, team, environment and worker-queue id the plan names must be
    in the request (a request that lists none of a kind accepts none of it);
    the recommended worker queue must belong to the chosen environment and
    have the most active workers there (a queue with none is never preferred
    while one with workers exists); task ids must be unique and dependencies
    must name tasks of the plan without cycles.

    Args:
        plan: the plan to check.
        request: the request whose inventory bounds the plan.

    Returns:
        The violations, in plan order; empty when the plan is valid.
    """
    agents = {a.id for a in request.agents}
    teams = {t.id for t in request.teams}
    envs = {e.id for e in request.environments}
    queues = {q.id: q for q in request.worker_queues}
    found: list[PlanViolation] = []

    # Each check tests membership first and builds the violation (and its loc)
    # only when the value is unknown: a valid plan costs no more than lookups.
    def unknown(
        kind: str, value: str, ids: set[str] | dict[str, Any], loc: tuple[str | int, ...]
    ) -> None:
        allowed = sorted(ids)
        listing = ", ".join(allowed) if allowed else f"none: the request lists no {kind}s"
        found.append(
            PlanViolation(
                code=f"unknown_{kind.replace(' ', '_')}",
                loc=loc,
                message=f"{kind} id {value!r} is not in the request (allowed: {listing})",
                value=value,
                allowed=allowed,
            )
        )

    rec = plan.recommended_execution
    entity_ids = agents if rec.entity_type == "agent" else teams
    value: str | None = rec.entity_id
    if value is not None and value not in entity_ids:
        unknown(rec.entity_type, value, entity_ids, ("recommended_execution", "entity_id"))
    value = rec.recommended_environment_id
    if value is not None and value not in envs:
        unknown("environment", value, envs, ("recommended_execution", "recommended_environment_id"))
    value = rec.recommended_worker_queue_id
    if value is not None and value not in queues:
        unknown(
            "worker queue", value, queues, ("recommended_execution", "recommended_worker_queue_id")
        )
    value = plan.selected_environment_id
    if value is not None and value not in envs:
        unknown("environment", value, envs, ("selected_environment_id",))

    for i, item in enumerate(plan.team_breakdown):
        if item.team_id is not None and item.team_id not in teams:
            unknown("team", item.team_id, teams, ("team_breakdown", i, "team_id"))
        if item.agent_id is not None and item.agent_id not in agents:
            unknown("agent", item.agent_id, agents, ("team_breakdown", i, "agent_id"))

    tasks = list(_tasks_with_paths(plan))
    task_ids: set[int] = set()
    graph: dict[int, list[int]] = {}
    for path, task in tasks:
        if task.agent_id is not None and task.agent_id not in agents:
            unknown("agent", task.agent_id, agents, (*path, "agent_id"))
        if task.worker_queue_id is not None and task.worker_queue_id not in queues:
            unknown("worker queue", task.worker_queue_id, queues, (*path, "worker_queue_id"))
        if task.id in task_ids:
            found.append(
                PlanViolation(
                    code="duplicate_task_id",
                    loc=(*path, "id"),
                    message=f"task id {task.id} is used more than once",
                    value=task.id,
                )
            )
        task_ids.add(task.id)
        graph.setdefault(task.id, []).extend(task.dependencies)
    for path, task in tasks:
        for j, dep in enumerate(task.dependencies):
            if dep not in task_ids:
                found.append(
                    PlanViolation(
                        code="unknown_dependency",
                        loc=(*path, "dependencies", j),
                        message=f"task {task.id} depends on task {dep}, which is not in the plan",
                        value=dep,
                        allowed=sorted(task_ids),
                    )
                )
            elif dep == task.id:
                found.append(
                    PlanViolation(
                        code="dependency_cycle",
                        loc=(*path, "dependencies", j),
                        message=f"task {task.id} depends on itself",
                        value=dep,
                    )
                )
    cycle = _find_cycle(graph)
    if cycle and len(cycle) > 2:
        found.append(
            PlanViolation(
                code="dependency_cycle",
                loc=("team_breakdown",),
                message="task dependencies form a cycle: " + " -> ".join(map(str, cycle)),
                value=cycle,
            )
        )

    found.extend(_check_queue_choice(plan, request))
    return found


def _check_queue_choice(plan: TaskPlan, request: TaskPlanRequest) -> list[PlanViolation]:
    rec = plan.recommended_execution
    env_id = rec.recommended_environment_id or plan.selected_environment_id
    loc = ("recommended_execution", "recommended_worker_queue_id")
    queue_id = rec.recommended_worker_queue_id
    by_id = {q.id: q for q in request.worker_queues}
    if queue_id is not None and queue_id not in by_id:
        return []  # already reported as unknown
    chosen = by_id.get(queue_id) if queue_id is not None else None
    if env_id is None:
        if chosen is None:
            return []
        env_id = chosen.environment_id
    in_env = [q for q in request.worker_queues if q.environment_id == env_id]
    best = _best_queues(in_env)
    best_ids = [q.id for q in best]
    if chosen is not None and chosen.environment_id != env_id:
        return [
            PlanViolation(
                code="queue_environment_mismatch",
                loc=loc,
                message=(
                    f"worker queue {chosen.id!r} belongs to environment {chosen.environment_id!r},"
                    f" not to the chosen environment {env_id!r}"
                ),
                value=chosen.id,
                allowed=best_ids or [q.id for q in in_env],
            )
        ]
    if not best:
        return []
    if chosen is None:
        return [
            PlanViolation(
                code="missing_worker_queue",
                loc=loc,
                message=(
                    f"environment {env_id!r} has worker queues with active workers;"
                    f" recommend one of them ({', '.join(best_ids)})"
                ),
                value=None,
                allowed=best_ids,
            )
        ]
    if chosen.id not in best_ids:
        return [
            PlanViolation(
                code="queue_not_preferred",
                loc=loc,
                message=(
                    f"worker queue {chosen.id!r} has {chosen.active_workers} active workers;"
                    f" prefer the queue with the most active workers ({', '.join(best_ids)}"
                    f" with {best[0].active_workers})"
                ),
                value=chosen.id,
                allowed=best_ids,
            )
        ]
    return []


def _tasks_with_paths(plan: TaskPlan) -> Iterator[tuple[tuple[str | int, ...], TaskItem]]:
    def walk(
        tasks: list[TaskItem], prefix: tuple[str | int, ...]
    ) -> Iterator[tuple[tuple[str | int, ...], TaskItem]]:
        for k, task in enumerate(tasks):
            path = (*prefix, k)
            yield path, task
            yield from walk(task.subtasks, (*path, "subtasks"))

    for i, item in enumerate(plan.team_breakdown):
        yield from walk(item.tasks, ("team_breakdown", i, "tasks"))


def _find_cycle(graph: dict[int, list[int]]) -> list[int] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for root in graph:
        if color[root] != white:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(graph[root]))]
        path = [root]
        color[root] = grey
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in color:
                    continue
                if color[child] == grey:
                    return [*path[path.index(child) :], child]
                if color[child] == white:
                    color[child] = grey
                    stack.append((child, iter(graph[child])))
                    path.append(child)
                    break
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None
