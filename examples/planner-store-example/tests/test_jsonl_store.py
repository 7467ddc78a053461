"""The JSON-lines store passes planner's store conformance suite, and keeps its file.

Run with ``python -m pytest`` after ``pip install -e ".[test]"`` in this directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from planner_jsonl_store import JsonlStore

from planner import NewEvent, Planner, Store
from planner.plugins import default_registry
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts import StoreContract, make_execution


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


class TestJsonlStoreContract(StoreContract):
    """Every check of :class:`planner.testing.contracts.StoreContract`, on a fresh file."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        """A set-up store on a new, empty file: the one fixture the suite needs."""
        async with JsonlStore(f"jsonl://{tmp_path / 'plans.jsonl'}") as store:
            yield store


def test_the_entry_point_registers_the_scheme() -> None:
    """Installed, the plugin is found through its entry point, under its name."""
    registry = default_registry()
    assert "jsonl" in registry.names("store")
    assert registry.registration("store", "jsonl").plugin == "jsonl"


def test_other_urls_are_refused() -> None:
    """A URL of another scheme, or without a path, is a ValueError."""
    with pytest.raises(ValueError, match="jsonl"):
        JsonlStore("memory://")
    with pytest.raises(ValueError, match="jsonl"):
        JsonlStore("jsonl://")


@pytest.mark.anyio
async def test_a_new_store_on_the_same_file_sees_everything(tmp_path: Path) -> None:
    """Records, events and idempotency keys survive closing the store."""
    url = f"jsonl://{tmp_path / 'plans.jsonl'}"
    first, second = make_execution(), make_execution(idempotency_key="k")
    async with JsonlStore(url) as store:
        await store.create(first, [NewEvent("status", {"status": "pending"})])
        await store.create(second)
        await store.append(first.id, [NewEvent("progress", {"message": "half way"})])
        changed = await store.update(second.id, metadata=second.metadata, attempt=3)

    async with JsonlStore(url) as store:
        assert [e.id for e in await store.list()] == [second.id, first.id]
        assert await store.get(first.id) == first
        assert await store.get(second.id) == changed
        events = await store.read(first.id)
        assert [(e.seq, e.type) for e in events] == [(1, "status"), (2, "progress")]
        assert (await store.create(make_execution(idempotency_key="k"))) == (changed, False)


@pytest.mark.anyio
async def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    """A half-written last line (a crash mid-write) does not stop the store from opening."""
    path = tmp_path / "plans.jsonl"
    execution = make_execution()
    async with JsonlStore(f"jsonl://{path}") as store:
        await store.create(execution)
    with path.open("a", encoding="utf-8") as file:
        file.write('{"id": "half-writ')

    async with JsonlStore(f"jsonl://{path}") as store:
        assert [e.id for e in await store.list()] == [execution.id]


@pytest.mark.anyio
async def test_a_planner_generates_through_the_registered_store(tmp_path: Path) -> None:
    """A Planner builds the store from its URL and a whole generation is kept in the file."""
    url = f"jsonl://{tmp_path / 'plans.jsonl'}"
    strategy = FunctionStrategy(lambda request, ctx: sample_plan(request))
    request = sample_request(planning_strategy="agno")
    async with Planner(store=url, strategies={"agno": strategy}) as planner:
        assert isinstance(planner.store, JsonlStore)
        response = await planner.generate(request)
        plan = await planner.wait(response.execution_id)

    async with Planner(store=url, strategies={"agno": strategy}) as planner:
        execution = await planner.get(response.execution_id)
        assert execution.status.value == "completed"
        assert execution.plan_json == plan.model_dump(mode="json")
        events = await planner.events(response.execution_id)
        assert events[-1].type == "done"
