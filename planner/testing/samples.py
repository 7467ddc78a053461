"""Sample inventories and plans that pass :func:`planner.validate_plan`."""

from __future__ import annotations

from typing import Any

from planner.models import (
    AgentInfo,
    EnvironmentInfo,
    TaskPlanRequest,
    TeamInfo,
    WorkerQueueInfo,
)
from planner.plan import TaskPlan

__all__ = ["sample_analysis", "sample_plan", "sample_request"]


def sample_request(
    description: str = "Rotate the production database credentials", **fields: Any
) -> TaskPlanRequest:
    """Return a request with a small inventory: 3 agents, a team, 2 environments, 3 queues.

    Args:
        description: the task.
        fields: other request fields (``planning_strategy``, ``quick_mode`` ...).
    """
    data: dict[str, Any] = {
        "description": description,
        "agents": [
            AgentInfo(
                id="agent-devops",
                name="DevOps Engineer",
                model_id="claude-sonnet-4-5",
                description="Infrastructure, CI/CD and cloud operations",
                capabilities=["kubernetes", "terraform", "aws", "secrets"],
            ),
            AgentInfo(
                id="agent-dba",
                name="Database Administrator",
                model_id="claude-sonnet-4-5",
                description="PostgreSQL and MySQL operations",
                capabilities=["postgresql", "backups", "credentials"],
            ),
            AgentInfo(
                id="agent-sec",
                name="Security Analyst",
                model_id="claude-haiku-4-5",
                capabilities=["audit", "compliance"],
                status="active",
            ),
        ],
        "teams": [
            TeamInfo(
                id="team-platform",
                name="Platform Team",
                agent_count=2,
                description="Owns the production platform",
            )
        ],
        "environments": [
            EnvironmentInfo(id="env-prod", name="production", display_name="Production"),
            EnvironmentInfo(id="env-staging", name="staging", display_name="Staging"),
        ],
        "worker_queues": [
            WorkerQueueInfo(
                id="queue-prod-a", name="prod-a", environment_id="env-prod", active_workers=1
            ),
            WorkerQueueInfo(
                id="queue-prod-b", name="prod-b", environment_id="env-prod", active_workers=3
            ),
            WorkerQueueInfo(
                id="queue-staging", name="staging", environment_id="env-staging", active_workers=0
            ),
        ],
    }
    data.update(fields)
    return TaskPlanRequest.model_validate(
        data, context={"strategies": {data.get("planning_strategy") or ""}}
    )


def sample_plan(request: TaskPlanRequest, *, tasks: int = 3, title: str | None = None) -> TaskPlan:
    """Return a valid plan for the request: its first agent, first environment, best queue.

    Args:
        request: a request with at least one agent.
        tasks: how many tasks, each depending on the one before (3 tasks make a ~3 KB plan).
        title: the plan's title (default: from the description).

    Raises:
        ValueError: the request lists no agents.
    """
    if not request.agents:
        raise ValueError("sample_plan needs a request with at least one agent")
    agent = request.agents[0]
    env = request.environments[0] if request.environments else None
    queues = [q for q in request.worker_queues if env is not None and q.environment_id == env.id]
    best = max(queues, key=lambda q: q.active_workers, default=None)
    if best is not None and best.active_workers == 0:
        best = None
    task_list = [
        {
            "id": i,
            "title": f"Step {i}: {request.description[:60]}",
            "description": f"Carry out part {i} of the task: {request.description}",
            "details": "Check the current state, apply the change, and record what was done.",
            "test_strategy": "Verify the change in the target environment; roll back on failure.",
            "priority": "high" if i == 1 else "medium",
            "dependencies": [i - 1] if i > 1 else [],
            "agent_id": agent.id,
            "worker_queue_id": best.id if best else None,
            "skills_to_use": agent.capabilities[:2] or None,
        }
        for i in range(1, tasks + 1)
    ]
    hours = round(0.25 * 3 * tasks, 2)
    return TaskPlan.model_validate(
        {
            "title": title or f"Plan: {request.description[:80]}",
            "summary": f"{agent.name} carries out '{request.description}' in {tasks} steps.",
            "complexity": {
                "story_points": 3,
                "confidence": "medium",
                "reasoning": "A routine change with a clear rollback.",
            },
            "team_breakdown": [
                {
                    "team_name": agent.name,
                    "agent_id": agent.id,
                    "agent_name": agent.name,
                    "responsibilities": ["Execute the plan", "Report the outcome"],
                    "estimated_time_hours": hours,
                    "tasks": task_list,
                }
            ],
            "recommended_execution": {
                "entity_type": "agent",
                "entity_id": agent.id,
                "entity_name": agent.name,
                "reasoning": f"{agent.name} has the needed capabilities.",
                "recommended_environment_id": env.id if env else None,
                "recommended_environment_name": env.name if env else None,
                "recommended_worker_queue_id": best.id if best else None,
                "recommended_worker_queue_name": best.name if best else None,
            },
            "cost_estimate": {
                "estimated_cost_usd": 0.25,
                "breakdown": [{"item": "Model usage", "cost": 0.25}],
            },
            "realized_savings": {
                "without_kubiya_cost": 125.0 * hours * 4,
                "without_kubiya_hours": hours * 4,
                "with_kubiya_cost": 0.25,
                "with_kubiya_hours": hours,
                "money_saved": 125.0 * hours * 4 - 0.25,
                "time_saved_hours": hours * 3,
                "time_saved_percentage": 75,
                "savings_summary": "Automation saves about three quarters of the time.",
            },
            "risks": ["Credentials in use by running services"],
            "prerequisites": ["Access to the secrets manager"],
            "success_criteria": ["All services use the new credentials"],
            "selected_environment_id": env.id if env else None,
            "selected_environment_name": env.name if env else None,
            "selected_agent_model_id": agent.model_id,
        }
    )


def sample_analysis(**changes: Any) -> dict[str, Any]:
    """Return a valid step-1 answer of the ``agno`` pipeline for :func:`sample_request`.

    The analysis and resource selection (``AnalysisAndSelectionOutput`` of the
    reference) picks the DBA agent, the production environment and its queue with
    the most active workers; ``changes`` override fields (e.g. an unknown
    ``selected_entity_id`` to exercise the repair loop).
    """
    data: dict[str, Any] = {
        "task_summary": "Rotate the production database credentials",
        "required_capabilities": ["postgresql", "credentials"],
        "task_type": "operations",
        "complexity_estimate": "moderate",
        "story_points_estimate": 3,
        "needs_multi_agent": False,
        "reasoning": "One database, one rotation, a rollback path.",
        "selected_entity_type": "agent",
        "selected_entity_id": "agent-dba",
        "selected_entity_name": "Database Administrator",
        "selection_reasoning": "Has the postgresql and credentials capabilities.",
        "selected_environment_id": "env-prod",
        "selected_environment_name": "production",
        "selected_worker_queue_id": "queue-prod-b",
        "selected_worker_queue_name": "prod-b",
        "estimated_cost_usd": 0.3,
        "estimated_time_hours": 0.75,
    }
    data.update(changes)
    return data
