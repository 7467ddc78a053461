"""Exceptions raised by planner.

The tree::

    PlannerError
    ├── InvalidRequestError (ValueError)        a request failed validation; nothing was written
    ├── PluginError
    │   ├── UnknownPluginError (LookupError)    no store/executor/strategy of that name
    │   └── MissingExtraError (ImportError)     the plugin needs ``pip install "planner[extra]"``
    ├── ExecutionNotFoundError (LookupError)    no execution with that id
    ├── ExecutionStateError
    │   ├── InvalidTransitionError              a status change the state machine forbids
    │   ├── ExecutionFinishedError              the execution has already ended
    │   └── LeaseLostError                      another owner runs the execution now
    ├── SubmitError                             the executor refused the run; the record is failed
    ├── SchemaVersionError (RuntimeError)       a store's schema is not the version the code needs
    ├── StrategyError                           a strategy could not produce a plan
    │   └── PlanValidationError                 the plan disagrees with its request
    └── GenerationError                         ``wait()`` on an execution that did not complete
        ├── PlanGenerationFailedError           it failed; ``.error`` says why
        └── ExecutionCancelledError             it was cancelled

``wait(timeout=...)`` raises the built-in ``TimeoutError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.execution import ErrorInfo, ExecutionStatus
    from planner.plan import PlanViolation

__all__ = [
    "ExecutionCancelledError",
    "ExecutionFinishedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "GenerationError",
    "InvalidRequestError",
    "InvalidTransitionError",
    "LeaseLostError",
    "MissingExtraError",
    "PlanGenerationFailedError",
    "PlanValidationError",
    "PlannerError",
    "PluginError",
    "SchemaVersionError",
    "StrategyError",
    "SubmitError",
    "UnknownPluginError",
]


class PlannerError(Exception):
    """Base of every exception planner raises on purpose."""


class InvalidRequestError(PlannerError, ValueError):
    """A request failed validation; nothing was written to the store.

    Attributes:
        errors: entries with exactly ``loc``, ``msg`` and ``type``, as the seed's
            ``ValidationError`` component (``loc`` without the ``"body"`` prefix).
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        self.errors: list[dict[str, Any]] = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors
        ]
        lines = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(request)'}: {e['msg']}" for e in self.errors
        )
        super().__init__(f"invalid plan request: {lines}")

    def http_detail(self) -> dict[str, Any]:
        """Return the seed's ``HTTPValidationError`` body (``loc`` starts with ``"body"``)."""
        return {"detail": [{**e, "loc": ["body", *e["loc"]]} for e in self.errors]}


class PluginError(PlannerError):
    """A store, executor or strategy could not be found or loaded."""


class UnknownPluginError(PluginError, LookupError):
    """No plugin of that kind is registered under that name.

    Attributes:
        kind: ``"store"``, ``"executor"`` or ``"strategy"``.
        name: the name asked for.
        available: the registered names.
    """

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        message = f"unknown {kind} {name!r}; available: {', '.join(self.available) or 'none'}"
        close = difflib.get_close_matches(name, self.available, n=1)
        if close:
            message += f". Did you mean {close[0]!r}?"
        super().__init__(message)


class MissingExtraError(PluginError, ImportError):
    """A plugin's packages are not installed.

    Attributes:
        extra: the extra that installs them.
    """

    def __init__(self, what: str, extra: str, missing: str) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the package {missing!r}, which is not installed: "
            f'pip install "planner[{extra}]"',
            name=missing,
        )


class ExecutionNotFoundError(PlannerError, LookupError):
    """No execution has that id (or it belongs to another tenant).

    Attributes:
        execution_id: the id asked for.
    """

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution with id {execution_id!r}")


class ExecutionStateError(PlannerError):
    """The execution's status does not allow what was asked."""


class InvalidTransitionError(ExecutionStateError):
    """A status change that the state machine forbids.

    Attributes:
        execution_id, current, new: the execution and the refused move.
    """

    def __init__(self, execution_id: str, current: ExecutionStatus, new: ExecutionStatus) -> None:
        self.execution_id = execution_id
        self.current = current
        self.new = new
        super().__init__(
            f"execution {execution_id!r} cannot move from {current.value!r} to {new.value!r}"
        )


class ExecutionFinishedError(ExecutionStateError):
    """The execution has already ended (completed, failed or cancelled).

    Attributes:
        execution_id, status: the execution and its final status.
    """

    def __init__(self, execution_id: str, status: ExecutionStatus) -> None:
        self.execution_id = execution_id
        self.status = status
        super().__init__(f"execution {execution_id!r} has already ended ({status.value})")


class LeaseLostError(ExecutionStateError):
    """The caller no longer holds the execution's lease (it expired and was reclaimed).

    Attributes:
        execution_id, owner: the execution and the owner that lost it.
    """

    def __init__(self, execution_id: str, owner: str) -> None:
        self.execution_id = execution_id
        self.owner = owner
        super().__init__(f"{owner!r} no longer holds the lease of execution {execution_id!r}")


class SchemaVersionError(PlannerError, RuntimeError):
    """A store's database schema is not at the version this code needs.

    Raised when a store set up without migrating finds missing migrations, and
    by any store whose database was written by a newer planner.

    Attributes:
        found: the schema version in the database (0 when it has none).
        expected: the version this code needs.
    """

    def __init__(self, where: str, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        hint = (
            "run its migrations (or set the store up with migrations on)"
            if found < expected
            else "upgrade planner"
        )
        super().__init__(
            f"{where} has schema version {found}, this planner needs {expected}: {hint}"
        )


class SubmitError(PlannerError):
    """The executor could not take the run; the execution was marked failed.

    Attributes:
        execution_id: the execution that was created and then failed.
    """

    def __init__(self, execution_id: str, message: str) -> None:
        self.execution_id = execution_id
        super().__init__(message)


class StrategyError(PlannerError):
    """A strategy could not produce a plan.

    Strategies raise it (or a subclass) for failures they understand;
    ``retryable`` tells an executor whether another attempt may succeed.

    Attributes:
        retryable: whether the failure is transient.
        details: structured data for the ``error`` event.
    """

    def __init__(self, message: str, *, retryable: bool = False, details: Any = None) -> None:
        self.retryable = retryable
        self.details = details
        super().__init__(message)


class PlanValidationError(StrategyError):
    """The plan does not fit the request (unknown ids, wrong queue, bad dependencies).

    Attributes:
        violations: what is wrong, as structured data.
    """

    def __init__(self, violations: Sequence[PlanViolation]) -> None:
        self.violations = list(violations)
        summary = "; ".join(v.message for v in self.violations[:5])
        more = len(self.violations) - 5
        if more > 0:
            summary += f"; and {more} more"
        super().__init__(
            f"the plan does not fit the request: {summary}",
            details=[v.model_dump(mode="json") for v in self.violations],
        )


class GenerationError(PlannerError):
    """The execution ended without a plan.

    Attributes:
        execution_id: the execution.
    """

    def __init__(self, execution_id: str, message: str) -> None:
        self.execution_id = execution_id
        super().__init__(message)


class PlanGenerationFailedError(GenerationError):
    """The execution failed.

    Attributes:
        error: the recorded :class:`~planner.execution.ErrorInfo`.
    """

    def __init__(self, execution_id: str, error: ErrorInfo) -> None:
        self.error = error
        super().__init__(
            execution_id, f"plan generation {execution_id} failed: {error.type}: {error.message}"
        )


class ExecutionCancelledError(GenerationError):
    """The execution was cancelled."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(execution_id, f"plan generation {execution_id} was cancelled")
