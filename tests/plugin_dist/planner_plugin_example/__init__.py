"""An example planner plugin: a strategy and a store, registered through the hooks."""

from __future__ import annotations

from typing import Any

import planner
from planner.backends.stores.memory import MemoryStore
from planner.plan import TaskPlan


class ExampleStrategy:
    """Plans any request as one task for its first agent."""

    async def plan(self, request: planner.TaskPlanRequest, ctx: planner.RunContext) -> TaskPlan:
        """Return a one-task plan; the runner then checks it against the request's inventory."""
        if not request.agents:
            raise planner.StrategyError("example_strategy needs at least one agent")
        agent = request.agents[0]
        await ctx.emit("progress", stage="planning", message=f"Assigning {agent.name}")
        task = {
            "id": 1,
            "title": request.description,
            "description": request.description,
            "details": "Do the work.",
            "test_strategy": "Check the result.",
            "agent_id": agent.id,  # every id in a plan must come from the request
        }
        return TaskPlan.model_validate(
            {
                "title": f"Example plan: {request.description}",
                "summary": f"{agent.name} does it in one task.",
                "complexity": {"story_points": 1, "reasoning": "One task."},
                "team_breakdown": [
                    {"team_name": agent.name, "agent_id": agent.id, "tasks": [task]}
                ],
                "recommended_execution": {
                    "entity_type": "agent",
                    "entity_id": agent.id,
                    "entity_name": agent.name,
                    "reasoning": "The first agent of the request.",
                },
                "cost_estimate": {"estimated_cost_usd": 0.0},
                "realized_savings": {
                    "without_kubiya_cost": 0.0,
                    "without_kubiya_hours": 0.0,
                    "with_kubiya_cost": 0.0,
                    "with_kubiya_hours": 0.0,
                    "money_saved": 0.0,
                    "time_saved_hours": 0.0,
                    "time_saved_percentage": 0,
                    "savings_summary": "None: this is an example.",
                },
            }
        )


class ExampleStore(MemoryStore):
    """The memory store under its own URL scheme, ``examplemem://``."""

    def __init__(self, url: str = "examplemem://", *, label: str = "example") -> None:
        if not url.startswith("examplemem://"):
            raise ValueError(f"not an examplemem URL: {url!r}")
        super().__init__("memory://")
        self.url = url
        self.label = label  # Planner(store_options={"label": ...}) arrives here


@planner.hookimpl
def register_strategies(register: Any) -> None:
    """Register ``example_strategy``: the registry calls ``factory()`` for a Strategy."""
    register("example_strategy", ExampleStrategy)


@planner.hookimpl
def register_stores(register: Any) -> None:
    """Register the scheme ``examplemem``: the registry calls ``factory(url, **options)``."""
    register("examplemem", ExampleStore)
