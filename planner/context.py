"""What a strategy gets besides the request: a way to report progress, and settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.from_thread

from planner.events import RESERVED_TYPES, EventData, make_data
from planner.execution import _NO_USAGE, Execution, TokenUsage
from planner.interfaces import NewEvent
from planner.models import TaskPlanRequest
from planner.settings import Settings

if TYPE_CHECKING:
    from planner.events import Event
    from planner.interfaces import Store

__all__ = ["RunContext"]

_TYPE_OF: dict[type[EventData], str] = {}


def _type_of(data: EventData) -> str:
    if not _TYPE_OF:
        from planner.events import _PAYLOADS

        _TYPE_OF.update({model: name for name, model in _PAYLOADS.items()})
    try:
        return _TYPE_OF[type(data)]
    except KeyError:
        raise ValueError(
            f"cannot tell the event type of {type(data).__name__}; pass the type name"
        ) from None


class RunContext:
    """The strategy's handle on its run.

    Attributes:
        execution_id: the execution being run.
        request: its request.
        attempt: 1 for the first run, more after a recovery or a retry.
        settings: the Planner's :class:`~planner.settings.Settings`.
        model: the configured model for the request's ``quick_mode`` (or None:
            the strategy's own default).
        usage: tokens and cost recorded so far with :meth:`record_usage`.
        models: the model ids recorded so far.
    """

    def __init__(self, store: Store, execution: Execution, settings: Settings) -> None:
        self._store = store
        self.execution_id = execution.id
        self.request: TaskPlanRequest = execution.request
        self.attempt = execution.attempt
        self.settings = settings
        self.model = settings.model_for(execution.request.quick_mode)
        self.usage = _NO_USAGE
        self.models: list[str] = []
        self.cancel_requested = False

    async def emit(
        self, event: str | EventData, data: EventData | dict[str, Any] | None = None, **fields: Any
    ) -> Event:
        """Append a progress event to the execution's log.

        Args:
            event: the event type (``"progress"``) or a payload model
                (``ProgressData(message=...)``), whose type is implied.
            data: the payload, when ``event`` is a type name.
            fields: payload fields, merged over ``data``.

        Returns:
            The appended event, with its ``seq``.

        Raises:
            ValueError: a reserved type (``complete``, ``error``, ``cancelled``,
                ``done``, ``status``: the runner writes those) or a payload that
                does not fit the type.
        """
        if type(event) is str:
            type_ = event
        elif isinstance(event, EventData):
            type_, data = _type_of(event), event
        else:
            type_ = event
        if type_ in RESERVED_TYPES:
            raise ValueError(f"strategies may not emit {type_!r} events; the runner writes them")
        payload = make_data(type_, data, **fields)
        (appended,) = await self._store.append(self.execution_id, [NewEvent(type_, payload)])
        return appended

    def emit_sync(
        self, event: str | EventData, data: EventData | dict[str, Any] | None = None, **fields: Any
    ) -> Event:
        """Like :meth:`emit`, for a sync strategy running in a worker thread."""
        return anyio.from_thread.run(lambda: self.emit(event, data, **fields))

    def record_usage(self, usage: TokenUsage, model: str | None = None) -> None:
        """Add a model call's token usage (and the model id) to the execution's record."""
        self.usage = self.usage + usage
        if model is not None and model not in self.models:
            self.models.append(model)
