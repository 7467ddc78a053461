"""A scripted, in-process fake of the Anthropic Messages API for tests.

:class:`FakeAnthropic` runs a tiny HTTP/1.1 server on ``127.0.0.1`` (a free
port, picked by binding to port 0) in a daemon background thread.  Real
clients talk to it over real sockets: the ``anthropic`` Python SDK (and so
``agno``'s ``Claude`` model, which wraps it) and the Claude Agent SDK's
bundled ``claude`` CLI.  Only the standard library is used, so importing this
module is free and it works the same from sync and async tests.

Routes:

* ``POST /v1/messages`` -- answered with the next scripted reply, as JSON or,
  when the request body has ``"stream": true``, as Server-Sent Events.  The
  query string is ignored (the CLI calls ``/v1/messages?beta=true``).
* ``POST /v1/messages/count_tokens`` -- answered with
  ``{"input_tokens": N}``, a rough estimate (request size // 4).  It never
  consumes a scripted reply.
* anything else -- ``404`` with an Anthropic-shaped JSON error body; ``HEAD``
  requests get a bodiless ``404`` (the CLI may probe ``HEAD /api/hello``).

Every request is recorded (:attr:`FakeAnthropic.requests`).  Both auth styles
are accepted (``Authorization: Bearer <key>`` and ``x-api-key: <key>``); with
``api_key=`` set, a wrong or missing key gets ``401 authentication_error``.

Scripting: replies are consumed in order from a queue
(:meth:`FakeAnthropic.add` / :meth:`FakeAnthropic.script`).  An entry may be a
:class:`FakeReply`, :class:`FakeError`, :class:`Malformed`, :class:`Drop`, a
bare content block (``text("hi")``), a list of blocks, a plain string (one
text block), or a callable ``(RecordedRequest) -> reply``.  Instead of a
queue, ``replies`` may itself be such a callable.  When nothing is left and no
``default`` is given (or a callable returns ``None``), the fake answers
``500`` with ``"FakeAnthropic: no scripted reply left for request #N"`` and
records the request in :attr:`FakeAnthropic.unexpected`.

Wire format, as the SDKs expect it:

* JSON answers use HTTP/1.1 keep-alive with an exact ``Content-Length``.
* SSE answers use ``Content-Type: text/event-stream`` with chunked transfer
  encoding (accepted by httpx and by the CLI's fetch); every frame has an
  ``event:`` line.  Sequence: ``message_start`` (content ``[]``, usage with
  ``output_tokens: 1``), ``ping``, then per block ``content_block_start`` /
  ``content_block_delta`` (``text_delta``, ``input_json_delta`` or
  ``thinking_delta`` + ``signature_delta``) / ``content_block_stop``, then
  ``message_delta`` (``stop_reason``, ``usage.output_tokens``) and
  ``message_stop``.
* Clients that drop keep-alive sockets or hang up mid-stream cause
  connection resets and broken pipes; these are swallowed silently (nothing
  is printed; other server-side exceptions land in
  :attr:`FakeAnthropic.errors`).

What the clients were seen doing (anthropic 2.16, agno 3.1 with its
``Claude`` model, claude-agent-sdk 0.2.189 with its bundled CLI 2.1.x):

* The ``anthropic`` SDK sends ``api_key`` as ``Authorization: Bearer <key>``
  (not ``x-api-key``) and uses keep-alive.  It maps ``429`` to
  ``RateLimitError``, ``500`` to ``InternalServerError``, ``529`` to
  ``OverloadedError`` (an ``InternalServerError`` subclass), ``401`` to
  ``AuthenticationError`` and a reset connection to ``APIConnectionError``.
  An unparseable ``200`` JSON body surfaces as a bare ``json.JSONDecodeError``
  (not wrapped in an SDK exception).
* ``agno``'s ``Claude`` is the same SDK underneath: pass
  ``client_params={"base_url": fake.base_url, "max_retries": 0}``.  It does
  not stream unless asked; tool results come back as ``tool_result`` blocks.
* The CLI always streams, calls ``/v1/messages?beta=true`` and sends
  ``x-api-key``.  With ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` a
  ``query()`` made exactly one request per turn (no ``HEAD`` probe, no
  ``count_tokens``).  Without it the CLI also fires a *session title*
  request (same model, thinking disabled, a system prompt about naming the
  session, ``output_config.format`` a JSON schema with only ``title``),
  concurrently with the first turn, so it could steal a scripted reply.  The
  default ``intercept=`` (:func:`claude_cli_side_reply`) answers it with
  ``{"title": ...}`` and marks it ``intercepted``; it never touches the
  queue.  ``output_format`` (``--json-schema``) becomes a tool named
  ``StructuredOutput``: answer with :func:`structured_output`; the CLI then
  ends the run itself (``ResultMessage.structured_output`` is the tool input)
  without asking for another turn.
* The CLI requests extended thinking and accepts thinking blocks streamed as
  ``thinking_delta`` + ``signature_delta``.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Block",
    "Drop",
    "FakeAnthropic",
    "FakeError",
    "FakeReply",
    "Malformed",
    "RecordedRequest",
    "ReplyLike",
    "Usage",
    "claude_cli_side_reply",
    "json_reply",
    "structured_output",
    "text",
    "thinking",
    "tool_use",
]

Block: TypeAlias = dict[str, Any]
"""A content block, exactly as it appears in the Messages API JSON."""

_ids = itertools.count(1)
_ids_lock = threading.Lock()

_CONNECTION_ERRORS = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    TimeoutError,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _next_id(prefix: str) -> str:
    with _ids_lock:
        n = next(_ids)
    return f"{prefix}_fake{n:020d}"


# --------------------------------------------------------------------------
# Content blocks
# --------------------------------------------------------------------------


def text(s: str) -> Block:
    """Build a text content block.

    Args:
        s: The text.

    Returns:
        ``{"type": "text", "text": s}``.

    """
    return {"type": "text", "text": s}


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> Block:
    """Build a ``tool_use`` content block (the model calling a tool).

    Args:
        name: The tool name.
        input: The tool arguments (must be JSON-serialisable).
        id: The tool-use id; a unique ``toolu_fake...`` id when omitted.

    Returns:
        ``{"type": "tool_use", "id": ..., "name": name, "input": {...}}``.

    """
    return {
        "type": "tool_use",
        "id": id if id is not None else _next_id("toolu"),
        "name": name,
        "input": dict(input),
    }


def thinking(s: str, signature: str = "fake-signature") -> Block:
    """Build an extended-thinking content block.

    Args:
        s: The thinking text.
        signature: The opaque signature the API attaches to thinking.

    Returns:
        ``{"type": "thinking", "thinking": s, "signature": signature}``.

    """
    return {"type": "thinking", "thinking": s, "signature": signature}


def json_reply(obj: Any) -> Block:
    """Build a text block whose text is ``json.dumps(obj)``.

    Args:
        obj: Any JSON-serialisable value.

    Returns:
        A text content block.

    Raises:
        TypeError: If ``obj`` is not JSON-serialisable.

    """
    return text(json.dumps(obj))


def structured_output(obj: Mapping[str, Any], id: str | None = None) -> Block:
    """Build the ``StructuredOutput`` tool call the Claude CLI expects.

    The Claude Agent SDK turns ``output_format={"type": "json_schema", ...}``
    into a tool named ``StructuredOutput``; the model "answers" by calling
    it, and the CLI reports the input as ``ResultMessage.structured_output``.

    Args:
        obj: The structured result (the tool input).
        id: The tool-use id; generated when omitted.

    Returns:
        A ``tool_use`` block named ``StructuredOutput``.

    """
    return tool_use("StructuredOutput", obj, id=id)


# --------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token usage reported with a reply.

    Attributes:
        input_tokens: Input tokens; ``None`` estimates from the request size.
        output_tokens: Output tokens; ``None`` estimates from the content.
        cache_creation_input_tokens: Reported cache-write tokens.
        cache_read_input_tokens: Reported cache-read tokens.

    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass(frozen=True)
class FakeReply:
    """A successful assistant message.

    Attributes:
        content: Content blocks (see :func:`text`, :func:`tool_use`,
            :func:`thinking`); bare strings become text blocks.
        stop_reason: ``None`` means ``"tool_use"`` if any block is a tool
            call, else ``"end_turn"``.
        usage: Reported token usage.
        model: Reported model; ``None`` echoes the request's ``model``.
        delay: Seconds to wait before answering.
        id: Message id; generated when ``None``.
        chunk_size: Characters per streamed delta (text, thinking and tool
            JSON); ``0`` sends each block in one delta.
        event_delay: Seconds to wait between streamed SSE events.

    """

    content: Sequence[Block | str] = field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    delay: float = 0.0
    id: str | None = None
    chunk_size: int = 16
    event_delay: float = 0.0

    def blocks(self) -> list[Block]:
        """Return the content as a list of block dicts.

        Returns:
            A fresh list; string entries are converted to text blocks.

        """
        return [text(b) if isinstance(b, str) else dict(b) for b in self.content]

    def resolved_stop_reason(self) -> str:
        """Return the stop reason that will be sent.

        Returns:
            ``stop_reason`` if set, else ``"tool_use"`` when any block is a
            tool call, else ``"end_turn"``.

        """
        if self.stop_reason is not None:
            return self.stop_reason
        if any(b.get("type") == "tool_use" for b in self.blocks()):
            return "tool_use"
        return "end_turn"


@dataclass(frozen=True)
class FakeError:
    """A scripted HTTP error answer.

    Attributes:
        status: HTTP status (429, 529, 500, 400, 401, ...).
        error_type: Anthropic error type; ``None`` derives it from the status
            (429 ``rate_limit_error``, 529 ``overloaded_error``, 500
            ``api_error``, 400 ``invalid_request_error``, 401
            ``authentication_error``, other 5xx ``api_error``, other 4xx
            ``invalid_request_error``).
        message: Error message.
        headers: Extra response headers.
        retry_after: When set, sent as the ``retry-after`` header (seconds).
        delay: Seconds to wait before answering.
        mid_stream: For streaming requests, answer ``200`` and send the error
            as an SSE ``error`` event after ``message_start`` (as the real
            API does when overloaded mid-stream).

    """

    status: int
    error_type: str | None = None
    message: str = "FakeAnthropic: scripted error"
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    delay: float = 0.0
    mid_stream: bool = False

    def resolved_error_type(self) -> str:
        """Return the error type that will be sent.

        Returns:
            ``error_type`` or the default for ``status``.

        """
        if self.error_type is not None:
            return self.error_type
        if self.status in _ERROR_TYPES:
            return _ERROR_TYPES[self.status]
        return "api_error" if self.status >= 500 else "invalid_request_error"

    def body(self) -> dict[str, Any]:
        """Return the Anthropic-shaped error body.

        Returns:
            ``{"type": "error", "error": {"type": ..., "message": ...}}``.

        """
        return _error_body(self.resolved_error_type(), self.message)


@dataclass(frozen=True)
class Malformed:
    """Answer with raw bytes (e.g. broken JSON) instead of a message.

    Attributes:
        body: The raw response body.
        status: HTTP status.
        content_type: ``Content-Type`` header.
        delay: Seconds to wait before answering.

    """

    body: bytes = b'{"not json'
    status: int = 200
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Reset the connection without answering (the client sees a reset).

    Attributes:
        delay: Seconds to wait before dropping.

    """

    delay: float = 0.0


_Answer: TypeAlias = FakeReply | FakeError | Malformed | Drop

ReplyLike: TypeAlias = (
    "FakeReply | FakeError | Malformed | Drop | str | Block | Sequence[Block | str]"
    " | Callable[[RecordedRequest], ReplyLike | None]"
)
"""Anything that can be scripted as a reply (see the module docstring)."""


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


# --------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One HTTP request received by the fake.

    Attributes:
        index: 1-based position in :attr:`FakeAnthropic.requests`.
        method: HTTP method.
        path: URL path without the query string.
        query: Query parameters (last value wins).
        headers: Request headers with lower-case names.
        raw: Raw (decompressed) request body.
        body: Parsed JSON object body, or ``None``.
        model: ``body["model"]``.
        system_text: The system prompt as one string (blocks joined by
            newlines), ``""`` when absent.
        messages: ``body["messages"]`` (``[]`` when absent).
        tools: ``body["tools"]`` (``[]`` when absent).
        stream: Whether the body asked for streaming.
        api_key: Key from ``x-api-key`` or ``Authorization: Bearer``.
        intercepted: Whether the ``intercept`` hook answered it (so it did
            not consume a scripted reply).

    """

    index: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any] | None
    model: str | None
    system_text: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    stream: bool
    api_key: str | None
    intercepted: bool = False

    @property
    def is_messages(self) -> bool:
        """Whether this is a ``POST /v1/messages`` (create) request.

        Returns:
            ``True`` for message-creation requests.

        """
        return self.method == "POST" and self.path.rstrip("/") == "/v1/messages"

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered in the request.

        Returns:
            Tool names, in order.

        """
        return [str(t.get("name")) for t in self.tools if isinstance(t, dict)]

    @property
    def last_user_text(self) -> str:
        """Text of the last user message (text blocks joined by newlines).

        Returns:
            The text, or ``""`` when there is no user message.

        """
        for msg in reversed(self.messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return _content_text(msg.get("content"))
        return ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """``tool_result`` blocks in the last user message.

        Returns:
            The blocks (empty when the last user turn has none).

        """
        for msg in reversed(self.messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                content = msg.get("content")
                if not isinstance(content, list):
                    return []
                return [
                    b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
                ]
        return []


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _api_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _record(
    index: int, method: str, target: str, headers: dict[str, str], raw: bytes
) -> RecordedRequest:
    parts = urlsplit(target)
    body: dict[str, Any] | None = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body = parsed
    b = body or {}
    model = b.get("model")
    messages = b.get("messages")
    tools = b.get("tools")
    return RecordedRequest(
        index=index,
        method=method,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        raw=raw,
        body=body,
        model=model if isinstance(model, str) else None,
        system_text=_content_text(b.get("system")),
        messages=messages if isinstance(messages, list) else [],
        tools=tools if isinstance(tools, list) else [],
        stream=b.get("stream") is True,
        api_key=_api_key(headers),
    )


def claude_cli_side_reply(request: RecordedRequest) -> FakeReply | None:
    """Answer the Claude CLI's background *session title* request.

    The CLI (unless ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``) asks the
    model to name the session, concurrently with the first real turn.  It is
    recognised by ``output_config.format`` being a JSON schema whose only
    property is ``title`` and a system prompt that mentions a title.  This is
    the default ``intercept`` of :class:`FakeAnthropic`.

    Args:
        request: The recorded request.

    Returns:
        A reply with the text ``{"title": "Fake session"}`` for the title
        request, ``None`` for everything else.

    """
    body = request.body or {}
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if (
        isinstance(props, dict)
        and set(props) == {"title"}
        and "title" in request.system_text.lower()
    ):
        return FakeReply([json_reply({"title": "Fake session"})])
    return None


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def _estimate_tokens(data: bytes | str) -> int:
    return max(1, len(data) // 4)


def _chunks(s: str, size: int) -> list[str]:
    if size <= 0 or len(s) <= size:
        return [s]
    return [s[i : i + size] for i in range(0, len(s), size)]


def _message(reply: FakeReply, request: RecordedRequest) -> dict[str, Any]:
    blocks = reply.blocks()
    usage = reply.usage
    output_tokens = usage.output_tokens
    if output_tokens is None:
        output_tokens = _estimate_tokens(json.dumps(blocks))
    input_tokens = usage.input_tokens
    if input_tokens is None:
        input_tokens = _estimate_tokens(request.raw)
    return {
        "id": reply.id or _next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or request.model or "claude-fake",
        "content": blocks,
        "stop_reason": reply.resolved_stop_reason(),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
        },
    }


def _block_events(index: int, block: Block, size: int) -> Iterator[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        yield {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
        for piece in _chunks(str(block.get("text", "")), size):
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": piece},
            }
    elif kind == "tool_use":
        start = {k: v for k, v in block.items() if k != "input"}
        start["input"] = {}
        yield {"type": "content_block_start", "index": index, "content_block": start}
        for piece in _chunks(json.dumps(block.get("input", {})), size):
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
    elif kind == "thinking":
        yield {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        }
        for piece in _chunks(str(block.get("thinking", "")), size):
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "thinking_delta", "thinking": piece},
            }
        yield {
            "type": "content_block_delta",
            "index": index,
            "delta": {
                "type": "signature_delta",
                "signature": str(block.get("signature", "")),
            },
        }
    else:
        # Other block kinds (redacted_thinking, server tools...) arrive whole.
        yield {"type": "content_block_start", "index": index, "content_block": block}
    yield {"type": "content_block_stop", "index": index}


def _stream_events(message: dict[str, Any], size: int) -> Iterator[dict[str, Any]]:
    usage = message["usage"]
    start = dict(message)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {
        "input_tokens": usage["input_tokens"],
        "output_tokens": 1,
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
    }
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block, size)
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield {"type": "message_stop"}


def _sse(event: Mapping[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


# --------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: FakeAnthropic, host: str, port: int) -> None:
        self.owner = owner
        self.sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self.sockets_lock:
                self.sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.sockets_lock:
            socks = list(self.sockets)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, _CONNECTION_ERRORS):
            self.owner._note_error(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAnthropic/1.0"
    sys_version = ""
    timeout = 30.0

    @property
    def owner(self) -> FakeAnthropic:
        server = self.server
        assert isinstance(server, _Server)
        return server.owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""

    def do_HEAD(self) -> None:
        self._read_body()
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    # -- plumbing ---------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip" and raw:
            with contextlib.suppress(OSError, EOFError):
                raw = gzip.decompress(raw)
        return raw

    def _send_json(
        self,
        status: int,
        obj: Any,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _next_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", _next_id("req"))
        self.end_headers()

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    # -- routing ----------------------------------------------------------

    def _dispatch(self) -> None:
        owner = self.owner
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = owner._record(self.command, self.path, headers, raw)
        path = req.path.rstrip("/")
        if self.command == "POST" and path == "/v1/messages":
            route = "messages"
        elif self.command == "POST" and path == "/v1/messages/count_tokens":
            route = "count_tokens"
        else:
            self._send_json(
                404,
                _error_body(
                    "not_found_error",
                    f"FakeAnthropic: no route for {self.command} {req.path}",
                ),
            )
            return
        if owner.api_key is not None and req.api_key != owner.api_key:
            self._send_json(
                401,
                _error_body(
                    "authentication_error",
                    "FakeAnthropic: invalid x-api-key"
                    if req.api_key
                    else "FakeAnthropic: missing API key",
                ),
            )
            return
        if route == "count_tokens":
            self._send_json(200, {"input_tokens": _estimate_tokens(raw)})
            return
        if req.body is None:
            self._send_json(
                400,
                _error_body(
                    "invalid_request_error",
                    "FakeAnthropic: request body is not a JSON object",
                ),
            )
            return
        self._answer(req, owner._next_answer(req))

    def _answer(self, req: RecordedRequest, answer: _Answer) -> None:
        owner = self.owner
        if answer.delay > 0 and owner._sleep(answer.delay):
            self._drop()
            return
        if isinstance(answer, Drop):
            self._drop()
        elif isinstance(answer, Malformed):
            self._send_bytes(answer.status, answer.body, answer.content_type)
        elif isinstance(answer, FakeError):
            self._answer_error(req, answer)
        else:
            message = _message(answer, req)
            if not req.stream:
                self._send_json(200, message)
                return
            self._start_sse()
            for event in _stream_events(message, answer.chunk_size):
                if answer.event_delay > 0 and owner._sleep(answer.event_delay):
                    self._drop()
                    return
                self._send_chunk(_sse(event))
            self._end_chunks()

    def _answer_error(self, req: RecordedRequest, error: FakeError) -> None:
        if error.mid_stream and req.stream:
            message = _message(FakeReply(), req)
            self._start_sse()
            start = next(_stream_events(message, 0))
            self._send_chunk(_sse(start))
            self._send_chunk(_sse(error.body()))
            self._end_chunks()
            return
        headers = dict(error.headers)
        if error.retry_after is not None:
            value = error.retry_after
            headers.setdefault(
                "retry-after", str(int(value)) if value == int(value) else str(value)
            )
        self._send_json(error.status, error.body(), headers)


# --------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------


def _is_single(obj: object) -> bool:
    return isinstance(obj, (FakeReply, FakeError, Malformed, Drop, str, dict))


class FakeAnthropic:
    """A scripted fake Anthropic Messages API server on ``127.0.0.1``.

    Use it as a (sync or async) context manager, or call :meth:`start` and
    :meth:`stop`.  Point clients at :attr:`base_url`.

    Args:
        replies: Scripted replies consumed in order (an iterable of
            :data:`ReplyLike`, or a single reply), or a callable
            ``(RecordedRequest) -> reply | None`` answering every messages
            request.
        api_key: When set, requests must carry this key (``x-api-key`` or
            ``Authorization: Bearer``); others get ``401``.
        default: Reply (or callable) used when the queue is empty.  A
            callable returning ``None`` means "not expected".
        intercept: Consulted first for every messages request; a non-``None``
            result answers it without touching the queue (and marks the
            request ``intercepted``).  Defaults to
            :func:`claude_cli_side_reply`; pass ``None`` to disable.
        host: Interface to bind.
        port: Port to bind; ``0`` picks a free one.

    Attributes:
        api_key: The required API key, or ``None``.
        default: The fallback reply.
        intercept: The side-request hook.

    """

    def __init__(
        self,
        replies: Iterable[ReplyLike]
        | Callable[[RecordedRequest], ReplyLike | None]
        | ReplyLike
        | None = None,
        *,
        api_key: str | None = None,
        default: ReplyLike | None = None,
        intercept: Callable[[RecordedRequest], ReplyLike | None] | None = claude_cli_side_reply,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.default = default
        self.intercept = intercept
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[ReplyLike] = deque()
        self._responder: Callable[[RecordedRequest], ReplyLike | None] | None = None
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        if replies is None:
            pass
        elif _is_single(replies):
            self._queue.append(replies)  # type: ignore[arg-type]
        elif callable(replies):
            self._responder = replies
        else:
            assert isinstance(replies, Iterable)
            self._queue.extend(replies)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> FakeAnthropic:
        """Bind the socket and start serving in a daemon thread.

        Idempotent: calling it on a running fake does nothing.

        Returns:
            ``self``.

        Raises:
            OSError: If the address cannot be bound.

        """
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(self, self._host, self._port)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeAnthropic:{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and free the port.

        Pending delays are cut short.  Safe to call more than once.
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAnthropic:
        """Start the server.

        Returns:
            ``self``.

        """
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    async def __aenter__(self) -> FakeAnthropic:
        """Start the server (binding is quick; nothing blocks the loop).

        Returns:
            ``self``.

        """
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server (takes at most a few tens of milliseconds)."""
        self.stop()

    # -- addresses --------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port.

        Returns:
            The TCP port.

        Raises:
            RuntimeError: If the fake is not running.

        """
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give clients, e.g. ``http://127.0.0.1:54321``.

        Returns:
            The base URL (no trailing slash).

        Raises:
            RuntimeError: If the fake is not running.

        """
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """Alias of :attr:`base_url`.

        Returns:
            The base URL.

        Raises:
            RuntimeError: If the fake is not running.

        """
        return self.base_url

    # -- scripting --------------------------------------------------------

    def add(self, *replies: ReplyLike) -> FakeAnthropic:
        """Append replies to the queue.

        Args:
            *replies: Replies, consumed in order after those already queued.

        Returns:
            ``self``, for chaining.

        """
        with self._lock:
            self._queue.extend(replies)
        return self

    def script(self, replies: Iterable[ReplyLike]) -> FakeAnthropic:
        """Append an iterable of replies to the queue.

        Args:
            replies: Replies, consumed in order after those already queued.

        Returns:
            ``self``, for chaining.

        """
        return self.add(*replies)

    @property
    def pending(self) -> int:
        """Number of scripted replies not yet consumed.

        Returns:
            The queue length.

        """
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests, unexpected requests, errors and the queue."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._unexpected.clear()
            self._errors.clear()

    # -- inspection -------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """All requests received so far, in arrival order.

        Returns:
            A snapshot copy (safe to use while the server runs).

        """
        with self._lock:
            return list(self._requests)

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        """Only the ``POST /v1/messages`` requests.

        Returns:
            A snapshot copy.

        """
        return [r for r in self.requests if r.is_messages]

    @property
    def unexpected(self) -> list[RecordedRequest]:
        """Messages requests that found no scripted reply (answered ``500``).

        Returns:
            A snapshot copy.

        """
        with self._lock:
            return list(self._unexpected)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the fake (e.g. by reply callables).

        Returns:
            A snapshot copy.

        """
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were received.

        Args:
            n: Number of requests to wait for.
            timeout: Maximum seconds to wait.

        Returns:
            A snapshot of the recorded requests.

        Raises:
            TimeoutError: If fewer than ``n`` requests arrived in time.

        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(
                    f"FakeAnthropic: got {len(self._requests)} requests, "
                    f"expected {n}, after {timeout}s"
                )
            return list(self._requests)

    def assert_exhausted(self) -> None:
        """Assert every scripted reply was used and nothing was unexpected.

        Raises:
            AssertionError: If replies are left, requests were unexpected, or
                a reply callable raised.

        """
        with self._lock:
            problems = []
            if self._queue:
                problems.append(f"{len(self._queue)} scripted replies left unused")
            if self._unexpected:
                nums = ", ".join(f"#{r.index}" for r in self._unexpected)
                problems.append(f"unexpected requests: {nums}")
            if self._errors:
                problems.append(f"errors: {self._errors!r}")
        if problems:
            raise AssertionError("FakeAnthropic: " + "; ".join(problems))

    # -- internals (called from handler threads) ---------------------------

    def _record(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> RecordedRequest:
        with self._cond:
            req = _record(len(self._requests) + 1, method, target, headers, raw)
            self._requests.append(req)
            self._cond.notify_all()
        return req

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _sleep(self, seconds: float) -> bool:
        """Wait; return ``True`` if the fake is stopping meanwhile."""
        return self._stopping.wait(seconds)

    def _next_answer(self, req: RecordedRequest) -> _Answer:
        if self.intercept is not None:
            try:
                side = self._resolve(self.intercept, req)
            except Exception as exc:
                self._note_error(exc)
                side = None
            if side is not None:
                req.intercepted = True
                return side
        with self._lock:
            entry: ReplyLike | None = self._queue.popleft() if self._queue else None
        try:
            answer = self._resolve(entry, req)
            if answer is None and entry is None and self._responder is not None:
                answer = self._resolve(self._responder, req)
            if answer is None and entry is None and self.default is not None:
                answer = self._resolve(self.default, req)
        except Exception as exc:  # a reply callable failed
            self._note_error(exc)
            return FakeError(
                500,
                "api_error",
                f"FakeAnthropic: reply for request #{req.index} raised {exc!r}",
            )
        if answer is not None:
            return answer
        with self._lock:
            self._unexpected.append(req)
        return FakeError(
            500,
            "api_error",
            f"FakeAnthropic: no scripted reply left for request #{req.index}",
        )

    def _resolve(self, entry: ReplyLike | None, req: RecordedRequest) -> _Answer | None:
        for _ in range(32):
            if entry is None or isinstance(entry, (FakeReply, FakeError, Malformed, Drop)):
                return entry
            if isinstance(entry, str):
                return FakeReply([text(entry)])
            if isinstance(entry, dict):
                return FakeReply([entry])
            if callable(entry):
                entry = entry(req)
                continue
            return FakeReply(list(entry))
        raise RecursionError("FakeAnthropic: reply callables nested too deeply")
