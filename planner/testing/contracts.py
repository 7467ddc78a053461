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

Optional hooks of :class:`StoreContract`:

- a ``peer_store`` fixture: a second, set-up store object on the *same*
  database, as another process would open it.  When given, the tests of
  sharing (visibility, wake-ups, gap-free appends and single-winner claims
  across the two objects) run; otherwise they are skipped.
- ``roundtrip_examples``: how many generated examples the hypothesis
  round-trip property tries (a class attribute, default 25).  The property
  needs ``hypothesis`` (``pip install hypothesis``); without it it is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    InvalidTransitionError,
    LeaseLostError,
)
from planner.events import EVENT_TYPES, Event
from planner.execution import (
    ErrorInfo,
    Execution,
    ExecutionMetadata,
    ExecutionStatus,
    TokenUsage,
    utcnow,
)
from planner.interfaces import NewEvent, Store
from planner.plan import TaskPlan
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

    Provide an async fixture ``store`` yielding a set-up, empty store, and
    optionally ``peer_store`` (see the module's docstring).
    """

    roundtrip_examples: int = 25
    """How many generated examples the round-trip property tries."""

    @pytest.fixture
    def peer_store(self) -> Store:
        """A second store object on the same database; override to run the sharing tests."""
        pytest.skip("no peer_store fixture: the store is not shared between objects")

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

    async def test_wait_terminal_returns_the_final_record(self, store: Store) -> None:
        execution = await _finish_while_waiting(store, store, ExecutionStatus.FAILED)
        with anyio.fail_after(5):  # already final: at once
            final = await store.wait_terminal(execution.id, timeout=30)
        assert final.status is ExecutionStatus.FAILED

    async def test_wait_terminal_times_out_with_the_current_record(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [_progress("old")])
        await store.update(execution.id, status=ExecutionStatus.RUNNING)
        with anyio.fail_after(10):
            record = await store.wait_terminal(execution.id, timeout=0.1)
        assert record.status is ExecutionStatus.RUNNING

    async def test_wait_terminal_unknown_raises_not_found(self, store: Store) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await store.wait_terminal(str(uuid.uuid4()), timeout=0.1)

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

    async def test_prune_removes_events_and_frees_idempotency_keys(self, store: Store) -> None:
        old = make_execution(idempotency_key="again", organization_id="org")
        await store.create(old, [_progress("x")])
        await store.update(old.id, status=ExecutionStatus.CANCELLED, events=[_DONE])
        try:
            deleted = await store.prune(keep=0)
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not support prune")
        assert deleted == 1
        with pytest.raises(ExecutionNotFoundError):
            await store.get(old.id)
        new = make_execution(idempotency_key="again", organization_id="org")
        created, is_new = await store.create(new)
        assert is_new and created.id == new.id
        assert await store.prune(keep=0) == 0  # unfinished ones are never pruned

    # -- atomicity -----------------------------------------------------------------

    async def test_a_refused_update_writes_nothing(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        with pytest.raises(InvalidTransitionError):
            await store.update(
                execution.id, status=ExecutionStatus.COMPLETED, events=[_progress("no")]
            )
        await store.claim(execution.id, "owner-a", 30)
        before = await store.get(execution.id)
        with pytest.raises(LeaseLostError):
            await store.update(
                execution.id,
                status=ExecutionStatus.COMPLETED,
                owner="owner-b",
                events=[NewEvent("complete", {"plan": {}}), _DONE],
            )
        assert await store.get(execution.id) == before
        assert [e.type for e in await store.read(execution.id)] == ["status", "status"]

    async def test_status_change_and_its_event_are_seen_together(self, store: Store) -> None:
        executions = [make_execution() for _ in range(20)]
        for ex in executions:
            await store.create(ex, [NewEvent("status", {"status": "pending"})])
            await store.claim(ex.id, "owner-a", 30)
        finished = False
        checks = 0

        async def observe() -> None:
            nonlocal checks
            while not finished:
                for ex in executions:
                    record = await store.get(ex.id)
                    events = await store.read(ex.id)
                    if record.terminal:  # the final status is never seen before its events
                        assert events[-2:][0].type == "complete", events
                        assert events[-1].type == "done"
                    events = await store.read(ex.id)
                    record = await store.get(ex.id)
                    if events[-1].type == "done":  # and the events never before the status
                        assert record.status is ExecutionStatus.COMPLETED
                    checks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(observe)
            for ex in executions:
                await store.update(
                    ex.id,
                    status=ExecutionStatus.COMPLETED,
                    plan_json={"title": ex.id},
                    events=[NewEvent("complete", {"plan": {"title": ex.id}}), _DONE],
                )
                await anyio.lowlevel.checkpoint()
            finished = True
        assert checks > 0

    async def test_a_terminal_status_is_final_under_races(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        await store.claim(execution.id, "owner-a", 30)
        outcomes: list[ExecutionStatus | str] = []
        finals = [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED]

        async def finish(status: ExecutionStatus) -> None:
            terminal = {"completed": "complete", "failed": "error", "cancelled": "cancelled"}
            try:
                await store.update(
                    execution.id,
                    status=status,
                    owner="owner-a",
                    events=[NewEvent(terminal[status.value], {"by": status.value}), _DONE],
                )
            except ExecutionStateError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append(status)

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(finish, finals[i % 3])
        winners = [o for o in outcomes if isinstance(o, ExecutionStatus)]
        assert len(winners) == 1, outcomes
        assert outcomes.count("ExecutionFinishedError") == 11
        stored = await store.get(execution.id)
        assert stored.status is winners[0]
        events = await store.read(execution.id)
        assert sum(e.terminal for e in events) == 1
        assert [e.type for e in events][-1] == "done"
        assert events[-2].data == {"by": winners[0].value}

    async def test_concurrent_claims_have_one_winner(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution)
        won: list[Execution] = []

        async def claim(owner: str) -> None:
            claimed = await store.claim(execution.id, owner, 30)
            if claimed is not None:
                won.append(claimed)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(claim, f"owner-{i}")
        assert len(won) == 1
        assert won[0].attempt == 1
        assert await store.get(execution.id) == won[0]
        assert [e.type for e in await store.read(execution.id)] == ["status"]

    async def test_concurrent_updates_and_appends_are_gap_free(self, store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [NewEvent("status", {"status": "pending"})])
        await store.claim(execution.id, "owner-a", 30)

        async def appender(w: int) -> None:
            for i in range(5):
                await store.append(execution.id, [_progress(f"a{w}-{i}"), _progress(f"b{w}-{i}")])

        async def updater(w: int) -> None:
            for i in range(5):
                await store.update(
                    execution.id, owner="owner-a", events=[_progress(f"u{w}-{i}")], attempt=1
                )

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(appender, w)
                tg.start_soon(updater, w)
        events = await store.read(execution.id)
        assert [e.seq for e in events] == list(range(1, 2 + 8 * 5 * 3 + 1))
        messages = [e.data["message"] for e in events[2:]]
        assert len(set(messages)) == len(messages) == 120
        for w in range(8):  # each batch stays together and in order
            for i in range(5):
                a = messages.index(f"a{w}-{i}")
                assert messages[a + 1] == f"b{w}-{i}"

    async def test_wait_unknown_raises_not_found(self, store: Store) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await store.wait(str(uuid.uuid4()), 0, timeout=0.1)

    # -- two store objects on one database (``peer_store``) ------------------------

    async def test_peers_see_each_others_writes(self, store: Store, peer_store: Store) -> None:
        execution = make_execution()
        await store.create(execution, [_progress("from store")])
        assert await peer_store.get(execution.id) == execution
        await peer_store.claim(execution.id, "owner-b", 30)
        await peer_store.append(execution.id, [_progress("from peer")])
        claimed = await store.get(execution.id)
        assert claimed.lease_owner == "owner-b" and claimed.attempt == 1
        messages = [e.data.get("message") for e in await store.read(execution.id)]
        assert messages == ["from store", None, "from peer"]
        with pytest.raises(ValueError):
            await peer_store.create(execution)

    async def test_a_peer_wait_wakes_on_the_others_append(
        self, store: Store, peer_store: Store
    ) -> None:
        execution = make_execution()
        await store.create(execution)
        woke: list[bool] = []

        async def waiter() -> None:
            woke.append(await peer_store.wait(execution.id, 0, timeout=30))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.05)
                await store.append(execution.id, [_progress("wake up")])
        assert woke == [True]

    async def test_a_peer_wait_terminal_sees_the_others_final_update(
        self, store: Store, peer_store: Store
    ) -> None:
        await _finish_while_waiting(store, peer_store, ExecutionStatus.CANCELLED)

    async def test_peers_append_gap_free(self, store: Store, peer_store: Store) -> None:
        execution = make_execution()
        await store.create(execution)

        async def writer(target: Store, w: int) -> None:
            for i in range(10):
                await target.append(execution.id, [_progress(f"{w}-{i}")])

        async with anyio.create_task_group() as tg:
            for w in range(10):
                tg.start_soon(writer, store if w % 2 else peer_store, w)
        events = await peer_store.read(execution.id)
        assert [e.seq for e in events] == list(range(1, 101))
        assert len({e.data["message"] for e in events}) == 100

    async def test_peers_claim_with_one_winner(self, store: Store, peer_store: Store) -> None:
        executions = [make_execution() for _ in range(5)]
        for ex in executions:
            await store.create(ex)
        won: list[str] = []

        async def claim(target: Store, execution_id: str, owner: str) -> None:
            if await target.claim(execution_id, owner, 30) is not None:
                won.append(execution_id)

        async with anyio.create_task_group() as tg:
            for ex in executions:
                for i in range(3):
                    tg.start_soon(claim, store, ex.id, f"store-{i}")
                    tg.start_soon(claim, peer_store, ex.id, f"peer-{i}")
        assert sorted(won) == sorted(ex.id for ex in executions)
        for ex in executions:
            assert (await peer_store.get(ex.id)).attempt == 1
            assert len(await store.read(ex.id)) == 1

    # -- faithful round trip (hypothesis) -----------------------------------------

    async def test_every_field_round_trips(self, store: Store) -> None:
        await self._round_trip_property(store, None)

    async def test_every_field_round_trips_through_a_second_store(
        self, store: Store, peer_store: Store
    ) -> None:
        # A store may hand back the very objects it wrote; a second store object on
        # the same database can only answer from what was really stored.
        await self._round_trip_property(store, peer_store)

    async def _round_trip_property(self, store: Store, peer: Store | None) -> None:
        try:
            from hypothesis import HealthCheck, given, settings
        except ImportError:  # pragma: no cover - hypothesis is a test extra
            pytest.skip("the round-trip property needs hypothesis: pip install hypothesis")
        cases = _round_trip_cases()

        # Hypothesis drives a sync function: run it in a worker thread and
        # call back into this event loop (where the store lives) for each example.
        @settings(
            max_examples=self.roundtrip_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def check(case: tuple[Execution, list[NewEvent], dict[str, Any] | None]) -> None:
            anyio.from_thread.run(_check_round_trip, store, peer, *case)

        await anyio.to_thread.run_sync(check)


async def _check_round_trip(
    store: Store,
    peer: Store | None,
    execution: Execution,
    events: list[NewEvent],
    changes: dict[str, Any] | None,
) -> None:
    readers = [store] if peer is None else [store, peer]
    created, is_new = await store.create(execution, events)
    assert is_new
    assert created == execution
    for reader in readers:
        stored = await reader.get(execution.id)
        assert stored == execution
        assert stored.model_dump() == execution.model_dump()  # every field, nested extras too
        if execution.plan_json is not None:
            assert TaskPlan.model_validate(stored.plan_json) == TaskPlan.model_validate(
                execution.plan_json
            )
        logged = await reader.read(execution.id)
        _assert_events(logged, execution.id, events)
    if changes is not None and not execution.terminal:
        updated = await store.update(execution.id, **changes)
        for reader in readers:
            stored = await reader.get(execution.id)
            assert stored == updated
            assert stored.model_dump() == updated.model_dump()


async def _finish_while_waiting(writer: Store, waiting: Store, final: ExecutionStatus) -> Execution:
    """Finish a running execution through ``writer`` while ``waiting.wait_terminal`` waits."""
    execution = make_execution()
    await writer.create(execution)
    await writer.update(execution.id, status=ExecutionStatus.RUNNING)
    result: list[Execution] = []

    async def waiter() -> None:
        result.append(await waiting.wait_terminal(execution.id, timeout=30))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            for i in range(3):  # events that are not the end do not end the wait
                await writer.append(execution.id, [_progress(f"step {i}")])
                await anyio.sleep(0.01)
            assert not result
            await writer.update(execution.id, status=final, events=[_DONE])
    assert [r.status for r in result] == [final]
    return execution


def _assert_events(logged: list[Event], execution_id: str, events: list[NewEvent]) -> None:
    assert [e.seq for e in logged] == list(range(1, len(events) + 1))
    assert [(e.type, e.data) for e in logged] == [(e.type, e.data) for e in events]
    assert all(e.execution_id == execution_id for e in logged)
    assert all(e.timestamp.utcoffset() == timedelta(0) for e in logged)


def _round_trip_cases() -> Any:
    """Hypothesis strategy of ``(execution, events, changes)`` for the round-trip property.

    Strings are any unicode except NUL (which PostgreSQL's JSONB refuses) and
    lone surrogates (which are not text); numbers are JSON numbers.
    """
    from hypothesis import strategies as st

    chars = st.characters(codec="utf-8", exclude_characters="\x00")  # no lone surrogates
    text = st.text(chars)
    short = st.text(chars, max_size=30)
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(short, inner, max_size=5),
        max_leaves=15,
    )
    json_objects = st.dictionaries(short, json_values, max_size=6)
    moments = st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    )
    maybe = st.none().__or__

    @st.composite
    def cases(draw: Callable[..., Any]) -> tuple[Execution, list[NewEvent], dict[str, Any] | None]:
        request = sample_request(
            description=draw(short.filter(str.strip)) or "x",
            priority=draw(st.sampled_from(["low", "medium", "high", "critical"])),
            quick_mode=draw(st.booleans()),
            conversation_context=draw(maybe(text)),
            iteration=draw(st.integers(min_value=1, max_value=1000)),
            planning_strategy="agno",
        )
        # A few plans are large: hundreds of tasks, hundreds of kilobytes.
        tasks = draw(st.one_of(st.integers(1, 5), st.integers(100, 300)))
        plan = sample_plan(request, tasks=tasks, title=draw(maybe(short.filter(str.strip))))
        usage = TokenUsage(
            input_tokens=draw(st.integers(0, 2**53)),
            output_tokens=draw(st.integers(0, 2**53)),
            cache_creation_input_tokens=draw(st.integers(0, 2**31)),
            cache_read_input_tokens=draw(st.integers(0, 2**31)),
            cost_usd=draw(st.floats(min_value=0, max_value=1e9)),
        )
        metadata = ExecutionMetadata(
            quick_mode=request.quick_mode,
            priority=draw(short),
            planning_strategy=draw(short),
            models=draw(st.lists(short, max_size=3)),
            usage=usage,
            current_step=draw(maybe(short)),
            total_tasks=draw(maybe(st.integers(0, 10_000))),
            generated_at=draw(maybe(moments)),
            **{
                f"x_{k}": v
                for k, v in draw(st.dictionaries(short, json_values, max_size=3)).items()
            },
        )
        status = draw(st.sampled_from(ExecutionStatus))
        error = draw(maybe(st.builds(ErrorInfo, type=short, message=text, details=json_values)))
        execution = make_execution(
            request=request,
            status=status,
            plan_json=draw(maybe(st.just(plan.model_dump(mode="json")))),
            error=error,
            metadata=metadata,
            created_at=draw(moments),
            started_at=draw(maybe(moments)),
            completed_at=draw(maybe(moments)),
            updated_at=draw(moments),
            attempt=draw(st.integers(0, 10_000)),
            parent_execution_id=draw(maybe(st.uuids().map(str))),
            idempotency_key=draw(maybe(short.map(lambda k: f"{uuid.uuid4()}{k}"))),
            organization_id=draw(maybe(short)),
            executor=draw(st.sampled_from(["inprocess", "threads", "temporal", "ëxötic"])),
            cancel_requested=draw(st.booleans()),
            lease_owner=draw(maybe(short)),
            lease_expires_at=draw(maybe(moments)),
        )
        types = st.sampled_from(sorted(EVENT_TYPES - {"done"})) | st.from_regex(
            r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True
        ).filter(lambda t: t != "done")
        events = draw(st.lists(st.builds(NewEvent, types, json_objects), max_size=8))
        changes = draw(
            maybe(
                st.fixed_dictionaries(
                    {
                        "plan_json": st.just(plan.model_dump(mode="json")),
                        "error": maybe(st.builds(ErrorInfo, type=short, message=text)),
                        "metadata": st.just(metadata.model_copy(update={"current_step": "✓"})),
                        "cancel_requested": st.booleans(),
                    }
                )
            )
        )
        return execution, events, changes

    return cases()
