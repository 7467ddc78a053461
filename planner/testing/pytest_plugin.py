"""Pytest fixtures for planner users, loaded through the ``pytest11`` entry point.

Fixtures:
    planner_request: a :class:`~planner.TaskPlanRequest` with a small inventory.
    memory_planner: a started ``Planner`` (memory store, in-process executor)
        whose ``agno`` and ``claude_code_sdk`` strategies return
        :func:`~planner.testing.sample_plan`; async tests only.
    fake_anthropic: a running :class:`~planner.testing.fake_anthropic.FakeAnthropic`.

Nothing here is autouse: installing planner changes no other project's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from planner.models import TaskPlanRequest

if TYPE_CHECKING:
    from planner.planner import Planner
    from planner.testing.fake_anthropic import FakeAnthropic


@pytest.fixture
def planner_request() -> TaskPlanRequest:
    """A request with three agents, a team, two environments and three worker queues."""
    from planner.testing.samples import sample_request

    return sample_request()


@pytest.fixture
async def memory_planner() -> AsyncIterator[Planner]:
    """A started Planner on the memory store whose strategies return a sample plan."""
    from planner.planner import Planner
    from planner.testing.function import FunctionStrategy
    from planner.testing.samples import sample_plan

    strategy = FunctionStrategy(lambda request, ctx: sample_plan(request), name="sample_plan")
    async with Planner(
        "memory://", "inprocess", {"agno": strategy, "claude_code_sdk": strategy}
    ) as planner:
        yield planner


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A scripted Anthropic Messages API on 127.0.0.1; script it with ``.add(...)``."""
    from planner.testing.fake_anthropic import FakeAnthropic

    with FakeAnthropic() as fake:
        yield fake
