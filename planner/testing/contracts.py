"""Conformance suites: every store and every executor must pass these.

Subclass a contract in your own test module and provide the fixture it
names; pytest collects the inherited tests::

    import pytest
    from planner.testing.contracts import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            async with MyStore("my://test") as store:
                yield store

Async tests run on anyio (the ``anyio`` marker is applied by the class).
A store that does not support pruning raises ``NotImplementedError`` from
``prune`` and the pruning tests are skipped.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio
import pytest

from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    InvalidTransitionError,
    LeaseLostError,
)
from planner.execution import (
    ErrorInfo,
    Execution,
    ExecutionMetadata,
    ExecutionStatus,
    TokenUsage,
    utcnow,
)
from planner.interfaces import NewEvent, Store
from planner.testing.samples import sample_plan, sample_request

__all__ = ["StoreContract", "make_execution"]


def make_execution(**fields: Any) -> Execution:
    """Return a new pending execution record with a sample request; ``fields`` override."""
    now = utcnow()
    execution_id = fields.pop("id", None) or str(uuid.uuid4())
    request = fields.pop("request", None) or sample_request(planning_strategy="agno")
    data: dict[str, Any] = {
        "id": execution_id,
        "workflow_id": f"plan-generation-{execution_id}",
        "request": request,
        "metadata": ExecutionMetadata(planning_strategy="agno", priority=request.priority),
        "created_at": now,
        "updated_at": now,
    }
    data.update(fields)
    return Execution(**data)


def _progress(message: str) -> NewEvent:
    return NewEvent("progress", {"message": message})


_DONE = NewEvent("done", {"message": "done", "execution_id": "x", "status": "completed"})


@pytest.mark.anyio
class StoreContract:
    """The behaviour every :class:`~planner.interfaces.Store` must have.

    Provide an async fixture ``store`` yielding a set-up, empty store.
    """

    # -- records ---------------------------------------------------------------

    async def test_create_then_get_round_trips_every_field(self, store: Store) -> None:
        execution = make_execution(
            idempotency_key="key-1",
            organization_id="org-1",
            parent_execution_id=str(uuid.uuid4()),
            lease_owner="owner-a",
            lease_expires_at=utcnow() + timedelta(seconds=30),
        )
        created, is_new = await store.create(execution, [NewEvent("status", {"status": "pending"})])
        assert is_new
        assert created == execution
        assert await store.get(execution.id) == execution

    async def test_get_unknown_raises_not_found(self, store: Store) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await store.get(str(uuid.uuid4()))

    async def test_create_with_an_existing_id_is_refused(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        with pytest.raises(ValueError):
            await store.create(execution)

    async def test_idempotency_key_returns_the_existing_execution(self, store: Store) -> None:
        first = make_execution(idempotency_key="same", organization_id="org")
        await store.create(first, [_progress("first")])
        again, is_new = await store.create(
            make_execution(idempotency_key="same", organization_id="org"), [_progress("again")]
        )
        assert not is_new
        assert again.id == first.id
        assert [e.data["message"] for e in await store.read(first.id)] == ["first"]
        other_tenant, is_new = await store.create(
            make_execution(idempotency_key="same", organization_id="other")
        )
        assert is_new and other_tenant.id != first.id

    async def test_list_is_newest_first_filtered_and_paged(self, store: Store) -> None:
        made = []
        for i in range(5):
            ex = make_execution(organization_id="org-a" if i % 2 == 0 else "org-b")
            await store.create(ex)
            made.append(ex)
            await anyio.sleep(0.002)  # distinct creation times
        await store.update(made[1].id, status=ExecutionStatus.RUNNING)
        newest_first = [e.id for e in reversed(made)]
        assert [e.id for e in await store.list()] == newest_first
        assert [e.id for e in await store.list(limit=2)] == newest_first[:2]
        page2 = await store.list(limit=2, before=newest_first[1])
        assert [e.id for e in page2] == newest_first[2:4]
        assert [e.id for e in await store.list(status=ExecutionStatus.RUNNING)] == [made[1].id]
        assert [e.id for e in await store.list(organization_id="org-b")] == [
            made[3].id,
            made[1].id,
        ]
        with pytest.raises(ExecutionNotFoundError):
            await store.list(before=str(uuid.uuid4()))

    # -- updates and transitions -------------------------------------------------

    async def test_update_changes_fields_and_appends_events_together(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        plan = sample_plan(execution.request).model_dump(mode="json")
        await store.update(execution.id, status=ExecutionStatus.RUNNING, started_at=utcnow())
        done = await store.update(
            execution.id,
            status=ExecutionStatus.COMPLETED,
            plan_json=plan,
            completed_at=utcnow(),
            metadata=execution.metadata.model_copy(
                update={"usage": TokenUsage(input_tokens=10, output_tokens=5, cost_usd=0.01)}
            ),
            events=[NewEvent("complete", {"plan": plan}), _DONE],
        )
        assert done.status is ExecutionStatus.COMPLETED
        assert done.updated_at >= execution.updated_at
        stored = await store.get(execution.id)
        assert stored == done
        assert stored.plan_json == plan
        assert stored.metadata.usage.output_tokens == 5
        assert [(e.seq, e.type) for e in await store.read(execution.id)] == [
            (1, "status"),
            (2, "complete"),
            (3, "done"),
        ]

    async def test_transitions_are_checked(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        with pytest.raises(InvalidTransitionError):
            await store.update(execution.id, status=ExecutionStatus.COMPLETED)
        await store.update(execution.id, status=ExecutionStatus.RUNNING)
        await store.update(
            execution.id,
            status=ExecutionStatus.FAILED,
            error=ErrorInfo(type="boom", message="it broke", details={"n": 1}),
        )
        for status in ExecutionStatus:
            with pytest.raises(ExecutionFinishedError):
                await store.update(execution.id, status=status)
        with pytest.raises(ExecutionFinishedError):
            await store.update(execution.id, plan_json={"x": 1})
        stored = await store.get(execution.id)
        assert stored.status is ExecutionStatus.FAILED
        assert stored.error == ErrorInfo(type="boom", message="it broke", details={"n": 1})

    async def test_update_with_owner_requires_the_lease(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.claim(execution.id, "owner-a", 30)
        with pytest.raises(LeaseLostError):
            await store.update(execution.id, status=ExecutionStatus.COMPLETED, owner="owner-b")
        assert (await store.get(execution.id)).status is ExecutionStatus.RUNNING
        await store.update(execution.id, status=ExecutionStatus.CANCELLED, owner="owner-a")

    async def test_update_unknown_raises_not_found(self, store: Store) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await store.update(str(uuid.uuid4()), status=ExecutionStatus.RUNNING)

    # -- the event log -----------------------------------------------------------

    async def test_append_numbers_events_consecutively(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        first = await store.append(execution.id, [_progress("a"), _progress("b")])
        second = await store.append(execution.id, [_progress("c")])
        assert [e.seq for e in first + second] == [2, 3, 4]
        events = await store.read(execution.id)
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert all(e.execution_id == execution.id for e in events)
        assert all(e.timestamp.utcoffset() == timedelta(0) for e in events)

    async def test_read_after_and_limit(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.append(execution.id, [_progress(str(i)) for i in range(10)])
        assert [e.seq for e in await store.read(execution.id, after=7)] == [8, 9, 10]
        assert [e.seq for e in await store.read(execution.id, after=2, limit=3)] == [3, 4, 5]
        assert await store.read(execution.id, after=10) == []

    async def test_event_data_round_trips(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        data = {
            "message": "Ünïcødé ✓ 计划 \u2028 'quotes' \"double\" \\ back",
            "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}]},
            "big": "x" * 100_000,
        }
        await store.append(execution.id, [NewEvent("progress", data)])
        (event,) = await store.read(execution.id)
        assert event.data == data
        assert event.type == "progress"

    async def test_log_is_closed_after_done(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.append(execution.id, [_progress("last"), _DONE])
        with pytest.raises(ExecutionFinishedError):
            await store.append(execution.id, [_progress("too late")])
        assert len(await store.read(execution.id)) == 2

    async def test_append_and_read_unknown_raise_not_found(self, store: Store) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await store.append(str(uuid.uuid4()), [_progress("x")])
        with pytest.raises(ExecutionNotFoundError):
            await store.read(str(uuid.uuid4()))

    async def test_concurrent_appends_are_gap_free(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)

        async def writer(w: int) -> None:
            for i in range(10):
                await store.append(execution.id, [_progress(f"{w}-{i}")])

        async with anyio.create_task_group() as tg:
            for w in range(20):
                tg.start_soon(writer, w)
        events = await store.read(execution.id)
        assert [e.seq for e in events] == list(range(1, 201))
        assert len({e.data["message"] for e in events}) == 200

    async def test_wait_returns_at_once_when_events_exist(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [_progress("there")])
        with anyio.fail_after(5):
            assert await store.wait(execution.id, 0, timeout=30)

    async def test_wait_wakes_on_append(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        woke: list[bool] = []

        async def waiter() -> None:
            woke.append(await store.wait(execution.id, 0, timeout=30))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.05)
                await store.append(execution.id, [_progress("wake up")])
        assert woke == [True]

    async def test_wait_times_out_without_events(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [_progress("old")])
        with anyio.fail_after(10):
            assert not await store.wait(execution.id, 1, timeout=0.1)

    # -- leases ------------------------------------------------------------------

    async def test_claim_starts_an_attempt(self, store: Store) -> None:
        execution = make_execution(lease_owner="owner-a")
        await store.create(execution)
        claimed = await store.claim(execution.id, "owner-a", 30)
        assert claimed is not None
        assert claimed.status is ExecutionStatus.RUNNING
        assert claimed.attempt == 1
        assert claimed.started_at is not None
        assert claimed.lease_owner == "owner-a"
        assert claimed.lease_expires_at is not None and claimed.lease_expires_at > utcnow()
        assert await store.get(execution.id) == claimed
        (event,) = await store.read(execution.id)
        assert event.type == "status" and event.data["status"] == "running"
        assert await store.claim(execution.id, "owner-a", 30) is None  # not twice
        assert await store.claim(execution.id, "owner-b", 30) is None  # lease is live

    async def test_expired_lease_is_reclaimed_as_a_new_attempt(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.claim(execution.id, "owner-a", 0.05)
        await anyio.sleep(0.1)
        reclaimable = await store.reclaimable(["inprocess"])
        assert [e.id for e in reclaimable] == [execution.id]
        assert await store.reclaimable(["temporal"]) == []
        again = await store.claim(execution.id, "owner-b", 30)
        assert again is not None
        assert again.attempt == 2 and again.lease_owner == "owner-b"
        types = [e.type for e in await store.read(execution.id)]
        assert types == ["status", "status", "progress"]
        assert await store.renew(execution.id, "owner-a", 30) is None  # the old owner lost it
        assert await store.reclaimable(["inprocess"]) == []

    async def test_renew_extends_the_lease_and_shows_cancel_requests(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        claimed = await store.claim(execution.id, "owner-a", 1)
        assert claimed is not None and claimed.lease_expires_at is not None
        renewed = await store.renew(execution.id, "owner-a", 60)
        assert renewed is not None and renewed.lease_expires_at is not None
        assert renewed.lease_expires_at > claimed.lease_expires_at
        assert not renewed.cancel_requested
        await store.update(execution.id, cancel_requested=True)
        renewed = await store.renew(execution.id, "owner-a", 60)
        assert renewed is not None and renewed.cancel_requested
        assert await store.renew(execution.id, "owner-b", 60) is None

    async def test_final_executions_are_not_claimed_or_renewed(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.update(execution.id, status=ExecutionStatus.CANCELLED)
        assert await store.claim(execution.id, "owner-a", 30) is None
        assert await store.renew(execution.id, "owner-a", 30) is None
        assert await store.reclaimable(["inprocess"]) == []

    async def test_pending_without_a_lease_is_reclaimable(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        assert [e.id for e in await store.reclaimable(["inprocess"])] == [execution.id]

    # -- retention ---------------------------------------------------------------

    async def _finished(self, store: Store, count: int) -> list[Execution]:
        made = []
        for _ in range(count):
            ex = make_execution()
            await store.create(ex, [_progress("x")])
            await store.update(ex.id, status=ExecutionStatus.CANCELLED, events=[_DONE])
            made.append(ex)
            await anyio.sleep(0.002)
        return made

    async def test_prune_keeps_the_newest(self, store: Store) -> None:
        made = await self._finished(store, 5)
        running = make_execution()
        await store.create(running)
        try:
            deleted = await store.prune(keep=2)
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not support prune")
        assert deleted == 3
        remaining = {e.id for e in await store.list()}
        assert remaining == {made[3].id, made[4].id, running.id}
        with pytest.raises(ExecutionNotFoundError):
            await store.read(made[0].id)

    async def test_prune_by_age_spares_unfinished(self, store: Store) -> None:
        made = await self._finished(store, 2)
        running = make_execution()
        await store.create(running)
        await anyio.sleep(0.05)
        try:
            deleted = await store.prune(older_than=timedelta(seconds=0.02))
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not support prune")
        assert deleted == len(made)
        assert [e.id for e in await store.list()] == [running.id]
