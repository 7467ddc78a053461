"""Server-Sent Events: an execution's log as a resumable ``text/event-stream``.

Each event is one frame: ``id:`` its ``seq``, ``event:`` its type, ``data:`` its
payload as one line of JSON.  A comment line (``: keepalive``) goes out when
nothing happened for a while, so proxies keep the connection open.  The stream ends
after ``done``.  When the server shuts down, open streams get a last
``shutdown`` frame without an ``id:`` (it is not part of the log), so a client
resumes with the last real ``seq`` it saw.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from planner.events import Event
from planner.interfaces import Store

__all__ = ["SHUTDOWN_EVENT", "EventStream", "StreamRegistry", "format_event", "format_frame"]

SHUTDOWN_EVENT = "shutdown"
"""The type of the frame an open stream gets when the server shuts down."""

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream until ``done``, a disconnect or a shutdown."""
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
                frame = format_event(event)
                if self._first:  # a lone ``retry:`` frame would be an empty event to some clients
                    frame = f"retry: {RETRY_MS}\n".encode() + frame
                    self._first = False
                await self._chunk(send, frame)
                self.cursor = event.seq
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
            if not await store.wait(execution_id, self.cursor, self.keepalive):
                await self._chunk(send, KEEPALIVE)
