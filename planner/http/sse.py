"""Server-Sent Events: an execution's log as a resumable ``text/event-stream``.

Each event is one frame: ``id:`` its ``seq``, ``event:`` its type, ``data:`` its
payload as one line of JSON.  A comment line (``: keepalive``) goes out when
nothing happened for a while, so proxies keep the connection open.  The stream ends
after ``done``.

Two frames are not part of the log and carry no ``id:``, so a client's
``Last-Event-ID`` stays the last real ``seq`` it saw and resuming is unaffected:

- ``history_complete``, once, when the stream has sent every event already in the
  log (the replay) and the execution is still going: live events follow.  As in the
  reference service; a stream whose replay reaches ``done`` just ends with ``done``.
- ``shutdown``, last, when the server shuts down while the stream is open.

A ``HEAD`` request gets the stream's status and headers at once, without a body.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from planner.events import Event
from planner.interfaces import Store

__all__ = [
    "HISTORY_COMPLETE_EVENT",
    "SHUTDOWN_EVENT",
    "EventStream",
    "StreamRegistry",
    "format_event",
    "format_frame",
]

SHUTDOWN_EVENT = "shutdown"
"""The type of the frame an open stream gets when the server shuts down."""
HISTORY_COMPLETE_EVENT = "history_complete"
"""The type of the frame that follows the replay of the events already logged."""

# A comment line alone, without the blank line that ends a frame: some clients
# (httpx-sse) turn a blank line after a known id into an empty event.
KEEPALIVE = b": keepalive\n"
RETRY_MS = 2000


def format_frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """Return one SSE frame: optional ``id:``, ``event:`` and ``data:`` (compact JSON)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


def format_event(event: Event) -> bytes:
    """Return the SSE frame of a logged event (``id:`` = ``seq``)."""
    return format_frame(event.type, event.data, event.seq)


class StreamRegistry:
    """The open streams of an app, so a shutdown can end them with a final frame."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._scopes)

    def add(self, scope: anyio.CancelScope) -> None:
        """Track a stream's cancel scope (cancelled at once if already closing)."""
        self._scopes.add(scope)
        if self.closing:
            scope.cancel()

    def discard(self, scope: anyio.CancelScope) -> None:
        """Stop tracking a stream."""
        self._scopes.discard(scope)

    def close_all(self) -> None:
        """End every open stream (each sends its ``shutdown`` frame); call from the event loop."""
        self.closing = True
        for scope in list(self._scopes):
            scope.cancel()


class EventStream(Response):
    """An ASGI response that streams an execution's events after a cursor.

    Args:
        store: where the log lives.
        execution_id: the execution.
        after: the last ``seq`` the client has seen (0: from the start).
        registry: the app's open streams.
        keepalive: seconds of silence before a keep-alive comment.
    """

    def __init__(
        self,
        store: Store,
        execution_id: str,
        after: int,
        registry: StreamRegistry,
        keepalive: float,
    ) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.store = store
        self.execution_id = execution_id
        self.cursor = after
        self.registry = registry
        self.keepalive = keepalive
        self._first = True
        self._replayed = 0
        self._caught_up = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream until ``done``, a disconnect or a shutdown (``HEAD``: headers only)."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as tg:

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_disconnect)
            try:
                await self._body(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client went away mid-write
            tg.cancel_scope.cancel()

    async def _chunk(self, send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _frame(self, send: Send, frame: bytes) -> None:
        if self._first:  # a lone ``retry:`` frame would be an empty event to some clients
            frame = f"retry: {RETRY_MS}\n".encode() + frame
            self._first = False
        await self._chunk(send, frame)

    async def _body(self, send: Send) -> None:
        with anyio.CancelScope() as cancel:
            self.registry.add(cancel)
            try:
                await self._events(send)
            finally:
                self.registry.discard(cancel)
        if cancel.cancelled_caught:  # the server is shutting down
            await self._chunk(
                send,
                format_frame(
                    SHUTDOWN_EVENT,
                    {
                        "message": "The server is shutting down; reconnect with Last-Event-ID "
                        "to resume",
                        "execution_id": self.execution_id,
                        "last_event_id": self.cursor,
                    },
                ),
            )

    async def _events(self, send: Send) -> None:
        store, execution_id = self.store, self.execution_id
        while True:
            batch = await store.read(execution_id, self.cursor)
            for event in batch:
                await self._frame(send, format_event(event))
                self.cursor = event.seq
                if not self._caught_up:
                    self._replayed += 1
                if event.type == "done":
                    return
            if batch:
                continue
            if (await store.get(execution_id)).terminal:
                # The final status and ``done`` commit together: a final record with
                # nothing after the cursor means the client has already seen ``done``.
                if not await store.read(execution_id, self.cursor, limit=1):
                    return
                continue
            if not self._caught_up:  # the replay is over; live events follow
                self._caught_up = True
                await self._frame(
                    send,
                    format_frame(
                        HISTORY_COMPLETE_EVENT,
                        {
                            "execution_id": execution_id,
                            "last_event_id": self.cursor,
                            "replayed": self._replayed,
                        },
                    ),
                )
            if not await store.wait(execution_id, self.cursor, self.keepalive):
                await self._chunk(send, KEEPALIVE)
