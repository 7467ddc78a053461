"""Rules every store applies the same way: who may claim, what a claim writes, what an update may.

Store authors call these so that leases, attempts and the restart events mean
the same thing in every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from planner.errors import ExecutionFinishedError, LeaseLostError
from planner.events import make_data, recurring_data
from planner.execution import Execution, ExecutionStatus, check_transition
from planner.interfaces import NewEvent

__all__ = ["claim_changes", "claim_events", "lease_claimable", "update_changes"]


def lease_claimable(execution: Execution, owner: str, now: datetime) -> bool:
    """Whether ``owner`` may claim the execution now.

    True when it is not final and its lease is unset, expired, or already ``owner``'s
    (but a run of ``owner``'s that is already running is not claimed twice).
    """
    if execution.terminal:
        return False
    if execution.lease_owner == owner:
        return execution.status is ExecutionStatus.PENDING
    return execution.lease_expires_at is None or execution.lease_expires_at <= now


def claim_changes(execution: Execution, owner: str, ttl: float, now: datetime) -> dict[str, Any]:
    """The field changes a successful claim makes."""
    return {
        "status": ExecutionStatus.RUNNING,
        "attempt": execution.attempt + 1,
        "started_at": execution.started_at or now,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=ttl),
        "updated_at": now,
    }


def claim_events(claimed: Execution) -> list[NewEvent]:
    """The events a claim appends, given the record after the claim."""
    events = [
        NewEvent(
            "status",
            recurring_data(
                "status", status="running", current_step="generating", attempt=claimed.attempt
            ),
        )
    ]
    if claimed.attempt > 1:
        events.append(
            NewEvent(
                "progress",
                make_data(
                    "progress",
                    stage="recovered",
                    message=(
                        f"Restarting plan generation (attempt {claimed.attempt}):"
                        " the previous attempt was lost"
                    ),
                ),
            )
        )
    return events


def update_changes(
    current: Execution,
    changes: dict[str, Any],
    *,
    status: ExecutionStatus | None,
    owner: str | None,
    closed: bool,
    events: Sequence[NewEvent],
    now: datetime,
) -> dict[str, Any]:
    """Check an :meth:`~planner.interfaces.Store.update` against the current record.

    Args:
        current: the record as stored.
        changes: the fields the update sets (besides ``status``).
        status, owner, events: the update's arguments.
        closed: whether the log already ends with ``done``.
        now: the update's time, its ``updated_at``.

    Returns:
        Every field the update sets: ``changes``, ``status`` if given, ``updated_at``.

    Raises:
        InvalidTransitionError: ``status`` may not follow the current one.
        ExecutionFinishedError: fields of a final record, or events after ``done``.
        LeaseLostError: ``owner`` does not hold the lease.
    """
    fields = dict(changes)
    if status is not None:
        check_transition(current.status, status, current.id)
        fields["status"] = status
    elif current.terminal and fields:
        raise ExecutionFinishedError(current.id, current.status)
    if owner is not None and current.lease_owner != owner:
        raise LeaseLostError(current.id, owner)
    if closed and events:
        raise ExecutionFinishedError(current.id, current.status)
    fields["updated_at"] = now
    return fields
