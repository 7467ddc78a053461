"""The offline demo behind ``planner demo``: the real ``agno`` strategy, a scripted model.

:func:`demo_request` is the bundled sample request (three agents, a team, two
environments, three worker queues). :func:`scripted_model` starts a
:class:`~planner.testing.fake_anthropic.FakeAnthropic` on 127.0.0.1 that
answers the ``agno`` strategy's two steps as a model would: it looks an agent
up with a tool, returns its analysis, then a plan for the request. Nothing
leaves the machine and no API key is needed::

    from planner import Planner
    from planner.demo import demo_request, scripted_model

    request = demo_request()
    with scripted_model(request) as fake:
        async with Planner(api_key="demo", base_url=fake.base_url) as planner:
            response = await planner.generate(request)
            plan = await planner.wait(response.execution_id)
"""

from __future__ import annotations

from typing import Any

from planner.models import TaskPlanRequest
from planner.testing.fake_anthropic import (
    FakeAnthropic,
    FakeReply,
    Usage,
    json_reply,
    text,
    tool_use,
)
from planner.testing.samples import sample_request

__all__ = ["DEMO_DESCRIPTION", "demo_plan", "demo_request", "scripted_model"]

DEMO_DESCRIPTION = (
    "Rotate the production PostgreSQL credentials used by the payments service, "
    "without downtime, and revoke the old ones"
)
"""The task of the demo request."""


def demo_request(*, quick: bool = False) -> TaskPlanRequest:
    """Return the demo's request: the sample inventory, ``planning_strategy="agno"``.

    Args:
        quick: set ``quick_mode`` (one step, the fast model).
    """
    return sample_request(
        DEMO_DESCRIPTION, planning_strategy="agno", priority="high", quick_mode=quick
    )


def _analysis() -> dict[str, Any]:
    return {
        "task_summary": "Zero-downtime rotation of the payments service's PostgreSQL "
        "credentials in production, then revocation of the old ones",
        "required_capabilities": ["postgresql", "credentials", "kubernetes", "secrets"],
        "task_type": "operations",
        "complexity_estimate": "moderate",
        "story_points_estimate": 5,
        "needs_multi_agent": True,
        "reasoning": "The database side needs a DBA; rolling the secret into the running "
        "service needs the DevOps agent. A rollback path exists until the old role is revoked.",
        "selected_entity_type": "agent",
        "selected_entity_id": "agent-dba",
        "selected_entity_name": "Database Administrator",
        "selection_reasoning": "Owns the critical path (roles and grants); hands the secret "
        "update to the DevOps Engineer.",
        "selected_agent_model_id": "claude-sonnet-4-5",
        "selected_environment_id": "env-prod",
        "selected_environment_name": "production",
        "selected_worker_queue_id": "queue-prod-b",
        "selected_worker_queue_name": "prod-b",
        "estimated_cost_usd": 0.35,
        "estimated_time_hours": 1.25,
    }


def _task(
    id: int,
    title: str,
    description: str,
    details: str,
    test: str,
    agent: str,
    deps: list[int],
    skills: list[str],
    priority: str = "high",
) -> dict[str, Any]:
    return {
        "id": id,
        "title": title,
        "description": description,
        "details": details,
        "test_strategy": test,
        "priority": priority,
        "dependencies": deps,
        "agent_id": agent,
        "worker_queue_id": "queue-prod-b",
        "skills_to_use": skills,
        "secrets_to_use": ["payments-db-credentials"],
    }


def demo_plan() -> dict[str, Any]:
    """Return the plan the scripted model answers with (valid for :func:`demo_request`)."""
    dba_tasks = [
        _task(
            1,
            "Snapshot roles and grants",
            "Record the payments role's grants and take a logical backup of the role setup.",
            "pg_dumpall --roles-only; save the grants of role payments_app to the runbook.",
            "The dump restores cleanly into a scratch instance.",
            "agent-dba",
            [],
            ["postgresql", "backups"],
        ),
        _task(
            2,
            "Create the new login role",
            "Create payments_app_v2 with the same grants and a generated password.",
            "CREATE ROLE ... LOGIN; GRANT payments_app TO payments_app_v2; store the password "
            "in the secrets manager as a new version.",
            "Connect as payments_app_v2 and run the service's health query.",
            "agent-dba",
            [1],
            ["postgresql", "credentials"],
        ),
        _task(
            5,
            "Revoke the old credentials",
            "Once no session uses payments_app, disable its login and drop it a day later.",
            "Check pg_stat_activity for the old role; ALTER ROLE payments_app NOLOGIN.",
            "No connection errors in the service logs for 30 minutes after revocation.",
            "agent-dba",
            [4],
            ["postgresql", "credentials"],
            "medium",
        ),
    ]
    devops_tasks = [
        _task(
            3,
            "Roll the secret into the payments service",
            "Update the Kubernetes secret and restart the deployment one pod at a time.",
            "kubectl rollout restart deployment/payments with maxUnavailable=0.",
            "Every pod reports ready and uses the new role (pg_stat_activity).",
            "agent-devops",
            [2],
            ["kubernetes", "secrets"],
        ),
        _task(
            4,
            "Verify and watch",
            "Run the payments smoke tests and watch error rates for 30 minutes.",
            "Smoke suite against production; alert thresholds unchanged.",
            "Smoke tests pass; error rate stays at its baseline.",
            "agent-devops",
            [3],
            ["kubernetes"],
            "medium",
        ),
    ]
    return {
        "title": "Zero-downtime rotation of the payments database credentials",
        "summary": "The Database Administrator creates a new login role with the same grants, "
        "the DevOps Engineer rolls it into the payments service pod by pod, and the old role "
        "is revoked once no session uses it.",
        "complexity": {
            "story_points": 5,
            "confidence": "high",
            "reasoning": "Well-known procedure; the risk is in the rollout, which is reversible "
            "until the last task.",
        },
        "team_breakdown": [
            {
                "team_id": "team-platform",
                "team_name": "Platform Team",
                "agent_id": "agent-dba",
                "agent_name": "Database Administrator",
                "responsibilities": ["Roles and grants", "Revocation"],
                "estimated_time_hours": 0.75,
                "tasks": dba_tasks,
            },
            {
                "team_id": "team-platform",
                "team_name": "Platform Team",
                "agent_id": "agent-devops",
                "agent_name": "DevOps Engineer",
                "responsibilities": ["Secret rollout", "Verification"],
                "estimated_time_hours": 0.5,
                "tasks": devops_tasks,
            },
        ],
        "recommended_execution": {
            "entity_type": "team",
            "entity_id": "team-platform",
            "entity_name": "Platform Team",
            "reasoning": "Two agents of the Platform Team share the work.",
            "recommended_environment_id": "env-prod",
            "recommended_environment_name": "production",
            "recommended_worker_queue_id": "queue-prod-b",
            "recommended_worker_queue_name": "prod-b",
            "execution_reasoning": "prod-b has the most active workers (3) in production.",
        },
        "cost_estimate": {
            "estimated_cost_usd": 0.35,
            "breakdown": [
                {"item": "Database Administrator model usage", "cost": 0.2},
                {"item": "DevOps Engineer model usage", "cost": 0.15},
            ],
        },
        "realized_savings": {
            "without_kubiya_cost": 500.0,
            "without_kubiya_hours": 4.0,
            "without_kubiya_resources": [
                {"role": "DBA", "hourly_rate": 125.0, "estimated_hours": 2.0, "total_cost": 250.0},
                {
                    "role": "DevOps engineer",
                    "hourly_rate": 125.0,
                    "estimated_hours": 2.0,
                    "total_cost": 250.0,
                },
            ],
            "with_kubiya_cost": 0.35,
            "with_kubiya_hours": 1.25,
            "money_saved": 499.65,
            "time_saved_hours": 2.75,
            "time_saved_percentage": 69,
            "savings_summary": "About 2.75 hours and $500 of engineer time saved.",
        },
        "risks": [
            "Long-lived connections may keep using the old role until they reconnect",
            "A failed rollout must be reverted before the old role is revoked",
        ],
        "prerequisites": [
            "Write access to the secrets manager",
            "A maintenance window is not needed, but on-call must be informed",
        ],
        "success_criteria": [
            "The payments service runs on payments_app_v2 only",
            "The old role can no longer log in",
        ],
        "execution_prompt": "Rotate the payments service's PostgreSQL credentials in "
        "production following the five tasks in order; stop and report if a smoke test fails.",
        "selected_environment_id": "env-prod",
        "selected_environment_name": "production",
        "selected_agent_model_id": "claude-sonnet-4-5",
    }


def scripted_model(request: TaskPlanRequest | None = None, *, delay: float = 0.3) -> FakeAnthropic:
    """Return a (not yet started) scripted Messages API that plans the demo request.

    Use it as a context manager; point the Planner at its ``base_url``. Two
    steps (a tool call, the analysis, the plan) unless the request is in quick
    mode (the plan only).

    Args:
        request: the request to answer (default: :func:`demo_request`).
        delay: seconds each answer takes, so that progress shows as it happens.
    """
    quick = request.quick_mode if request is not None else False
    usage = Usage(input_tokens=2400, output_tokens=1900, cache_creation_input_tokens=3100)
    plan = FakeReply([json_reply(demo_plan())], delay=delay, usage=usage)
    if quick:
        return FakeAnthropic([plan])
    return FakeAnthropic(
        [
            FakeReply(
                [
                    text(
                        "The task needs PostgreSQL role changes and a Kubernetes secret "
                        "rollout. Let me find the agents with those capabilities."
                    ),
                    tool_use("search_agents_by_capability", {"capability": "postgresql"}),
                ],
                delay=delay,
                usage=Usage(input_tokens=1500, output_tokens=60),
            ),
            FakeReply(
                [
                    text("Now the production worker queues."),
                    tool_use("list_worker_queues", {"environment_id": "env-prod"}),
                ],
                delay=delay,
                usage=Usage(input_tokens=1700, output_tokens=50),
            ),
            FakeReply(
                [json_reply(_analysis())],
                delay=delay,
                usage=Usage(input_tokens=1900, output_tokens=400),
            ),
            plan,
        ]
    )
