"""Tests for planner.testing.fake_anthropic, driven by the real client SDKs."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx
import pytest
from anthropic.types import Message, MessageParam

from planner.testing.fake_anthropic import (
    Drop,
    FakeAnthropic,
    FakeError,
    FakeReply,
    Malformed,
    RecordedRequest,
    Usage,
    claude_cli_side_reply,
    json_reply,
    structured_output,
    text,
    thinking,
    tool_use,
)

pytestmark = pytest.mark.timeout(60)

MODEL = "claude-sonnet-4-5"
USER: list[MessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def anyio_backend() -> str:
    # The installed trio is too old for this anyio; the SDKs are asyncio-first anyway.
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as f:
        yield f


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake.base_url, api_key="test", max_retries=0, timeout=10
    ) as c:
        yield c


def create(client: anthropic.Anthropic, **kwargs: Any) -> Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": USER}
    params.update(kwargs)
    message: Message = client.messages.create(**params)
    return message


# --------------------------------------------------------------------------
# Non-streaming replies
# --------------------------------------------------------------------------


def test_create_text(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(FakeReply([text("hi there")], usage=Usage(input_tokens=7, output_tokens=3)))

    msg = create(client)

    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text" and msg.content[0].text == "hi there"
    assert msg.stop_reason == "end_turn"
    assert msg.model == MODEL
    assert msg.role == "assistant"
    assert msg.usage.input_tokens == 7
    assert msg.usage.output_tokens == 3
    assert msg.usage.cache_read_input_tokens == 0
    assert fake.pending == 0


def test_create_tool_use(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(
        FakeReply([text("let me look"), tool_use("lookup", {"q": "x", "n": [1, 2]})], model="m-x")
    )

    msg = create(client)

    assert msg.stop_reason == "tool_use"
    assert msg.model == "m-x"
    block = msg.content[1]
    assert block.type == "tool_use"
    assert block.name == "lookup"
    assert block.input == {"q": "x", "n": [1, 2]}
    assert block.id.startswith("toolu_")


def test_shorthand_replies_and_explicit_ids(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    fake.add("plain string", tool_use("t", {}, id="toolu_1"), [text("a"), text("b")])
    fake.script([json_reply({"k": 1}), FakeReply([text("x")], stop_reason="max_tokens")])

    assert [b.type for b in create(client).content] == ["text"]
    tool = create(client).content[0]
    assert tool.type == "tool_use" and tool.id == "toolu_1" and tool.input == {}
    assert [b.text for b in create(client).content if b.type == "text"] == ["a", "b"]
    first = create(client).content[0]
    assert first.type == "text" and json.loads(first.text) == {"k": 1}
    assert create(client).stop_reason == "max_tokens"


def test_structured_output_block() -> None:
    block = structured_output({"answer": 42})
    assert block["type"] == "tool_use"
    assert block["name"] == "StructuredOutput"
    assert block["input"] == {"answer": 42}
    assert thinking("t") == {"type": "thinking", "thinking": "t", "signature": "fake-signature"}


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------


def test_stream_text_and_tool_use(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    long_text = "The quick brown fox jumps over the lazy dog. " * 3
    fake.add(FakeReply([text(long_text), tool_use("search", {"query": "foxes", "limit": 5})]))

    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(deltas) > 1
    assert "".join(deltas) == long_text
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "text" and final.content[0].text == long_text
    tool = final.content[1]
    assert tool.type == "tool_use"
    assert tool.name == "search"
    assert tool.input == {"query": "foxes", "limit": 5}
    assert fake.requests[-1].stream is True


def test_stream_raw_event_sequence(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(
        FakeReply(
            [text("hello"), tool_use("t", {"a": 1})],
            usage=Usage(input_tokens=11, output_tokens=9, cache_read_input_tokens=4),
        )
    )

    events = list(client.messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True))

    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start"
    assert start.message.content == []
    assert start.message.usage.input_tokens == 11
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.cache_read_input_tokens == 4
    delta = events[7]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "tool_use"
    assert delta.delta.stop_sequence is None
    assert delta.usage.output_tokens == 9


def test_stream_thinking(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    thought = "First I consider the options, then I pick one. " * 2
    fake.add(FakeReply([thinking(thought, signature="sig-123"), text("done")], chunk_size=10))

    with client.messages.stream(
        model=MODEL,
        max_tokens=2000,
        messages=USER,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()

    assert kinds.count("signature_delta") == 1
    assert kinds.count("thinking_delta") > 1
    block = final.content[0]
    assert block.type == "thinking"
    assert block.thinking == thought
    assert block.signature == "sig-123"
    assert final.content[1].type == "text" and final.content[1].text == "done"
    assert fake.requests[0].body is not None
    assert fake.requests[0].body["thinking"]["type"] == "enabled"


def test_stream_error_before_and_mid_stream(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(FakeError(529), FakeError(529, mid_stream=True, message="busy"))

    with pytest.raises(anthropic.APIStatusError) as before:
        with client.messages.stream(model=MODEL, max_tokens=10, messages=USER) as stream:
            stream.get_final_message()
    assert before.value.status_code == 529

    with pytest.raises(anthropic.APIStatusError) as mid:
        with client.messages.stream(model=MODEL, max_tokens=10, messages=USER) as stream:
            stream.get_final_message()
    assert "busy" in str(mid.value)


# --------------------------------------------------------------------------
# Errors and failure modes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "exc_type", "error_type"),
    [
        (FakeError(429, retry_after=3), anthropic.RateLimitError, "rate_limit_error"),
        (FakeError(529), anthropic.InternalServerError, "overloaded_error"),
        (FakeError(500), anthropic.InternalServerError, "api_error"),
        (FakeError(400, message="bad input"), anthropic.BadRequestError, "invalid_request_error"),
        (FakeError(401), anthropic.AuthenticationError, "authentication_error"),
    ],
)
def test_scripted_http_errors(
    fake: FakeAnthropic,
    client: anthropic.Anthropic,
    error: FakeError,
    exc_type: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    fake.add(error)

    with pytest.raises(exc_type) as info:
        create(client)

    assert info.value.status_code == error.status
    assert info.value.body == {
        "type": "error",
        "error": {"type": error_type, "message": error.message},
    }
    if error.retry_after is not None:
        assert info.value.response.headers["retry-after"] == "3"


def test_custom_error_headers_and_type(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(FakeError(503, "overloaded_error", "later", headers={"x-should-retry": "false"}))

    with pytest.raises(anthropic.InternalServerError) as info:
        create(client)

    assert info.value.status_code == 503
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "later" in str(info.value)


def test_required_api_key() -> None:
    with FakeAnthropic(["ok"], api_key="secret") as fake:
        with anthropic.Anthropic(base_url=fake.base_url, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(anthropic.AuthenticationError) as info:
                create(bad)
        assert info.value.status_code == 401
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "error"
        assert info.value.body["error"]["type"] == "authentication_error"
        assert fake.pending == 1  # a rejected request consumes nothing

        with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
            missing = raw.post("/v1/messages", json={"model": MODEL, "messages": USER})
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "authentication_error"

        with anthropic.Anthropic(base_url=fake.base_url, api_key="secret", max_retries=0) as good:
            msg = create(good)
        assert msg.content[0].type == "text" and msg.content[0].text == "ok"


def test_malformed_json_raises(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(Malformed())

    with pytest.raises((ValueError, anthropic.APIError)):
        create(client)


def test_malformed_custom_body(fake: FakeAnthropic) -> None:
    fake.add(Malformed(b"<html>bad gateway</html>", status=502, content_type="text/html"))

    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        resp = raw.post("/v1/messages", json={"model": MODEL, "messages": USER})

    assert resp.status_code == 502
    assert resp.text == "<html>bad gateway</html>"
    assert resp.headers["content-type"] == "text/html"


def test_drop_is_a_connection_error(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(Drop(), "after the drop")

    with pytest.raises(anthropic.APIConnectionError):
        create(client)
    msg = create(client)  # the server keeps serving after a reset

    assert msg.content[0].type == "text" and msg.content[0].text == "after the drop"


def test_delay(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add(FakeReply(["slow"], delay=0.3), FakeError(429, delay=0.2))

    started = time.monotonic()
    create(client)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError):
        create(client)
    assert time.monotonic() - started >= 0.2


def test_stop_cuts_delay_short() -> None:
    fake = FakeAnthropic(FakeReply(["never"], delay=30)).start()
    box: list[BaseException] = []

    def call() -> None:
        with anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            try:
                create(c)
            except anthropic.APIError as exc:
                box.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    fake.wait_for_requests(1, timeout=10)
    started = time.monotonic()
    fake.stop()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert len(box) == 1 and isinstance(box[0], anthropic.APIConnectionError)


# --------------------------------------------------------------------------
# Scripting behaviour
# --------------------------------------------------------------------------


def test_count_tokens(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add("reserved")

    result = client.messages.count_tokens(model=MODEL, messages=USER)

    assert result.input_tokens > 0
    assert fake.pending == 1
    assert [r.path for r in fake.requests] == ["/v1/messages/count_tokens"]
    assert fake.messages_requests == []


def test_callable_replies_receive_the_request() -> None:
    seen: list[RecordedRequest] = []

    def answer(req: RecordedRequest) -> FakeReply:
        seen.append(req)
        return FakeReply([text(f"echo: {req.last_user_text}")])

    with (
        FakeAnthropic(answer) as fake,
        anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as client,
    ):
        first = create(client, messages=[{"role": "user", "content": "one"}])
        second = create(client, messages=[{"role": "user", "content": [text("two")]}])

    assert first.content[0].type == "text" and first.content[0].text == "echo: one"
    assert second.content[0].type == "text" and second.content[0].text == "echo: two"
    assert [r.index for r in seen] == [1, 2]
    assert seen[0].model == MODEL


def test_callable_entry_in_queue_and_default(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.default = lambda req: text(f"default #{req.index}")
    fake.add("scripted", lambda req: tool_use("t", {"n": len(req.messages)}))

    assert create(client).content[0].type == "text"
    tool = create(client, messages=[*USER, {"role": "assistant", "content": "x"}, *USER])
    assert tool.content[0].type == "tool_use" and tool.content[0].input == {"n": 3}
    extra = create(client).content[0]
    assert extra.type == "text" and extra.text == "default #3"
    assert fake.unexpected == []
    fake.assert_exhausted()


def test_unexpected_request_is_recorded(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add("only one")
    create(client)

    with pytest.raises(anthropic.InternalServerError) as info:
        create(client)

    assert "FakeAnthropic: no scripted reply left for request #2" in str(info.value)
    assert [r.index for r in fake.unexpected] == [2]
    with pytest.raises(AssertionError, match="unexpected requests: #2"):
        fake.assert_exhausted()


def test_default_callable_returning_none_is_unexpected() -> None:
    with FakeAnthropic(default=lambda req: None) as fake:
        with anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            with pytest.raises(anthropic.InternalServerError):
                create(c)
        assert len(fake.unexpected) == 1


def test_callable_that_raises_answers_500(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    def boom(req: RecordedRequest) -> FakeReply:
        raise RuntimeError("kaput")

    fake.add(boom)

    with pytest.raises(anthropic.InternalServerError, match="kaput"):
        create(client)
    assert len(fake.errors) == 1 and isinstance(fake.errors[0], RuntimeError)


def test_reset_and_pending(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    assert fake.add("a").add("b").script(["c"]) is fake
    assert fake.pending == 3
    create(client)
    assert len(fake.requests) == 1

    fake.reset()

    assert fake.pending == 0
    assert fake.requests == []
    assert fake.unexpected == []


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


def test_requests_are_recorded(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.add("ok")
    tools: list[Any] = [
        {
            "name": "lookup",
            "description": "Look something up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]

    create(
        client,
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind."}],
        tools=tools,
    )

    (req,) = fake.messages_requests
    assert req.method == "POST"
    assert req.path == "/v1/messages"
    assert req.model == MODEL
    assert req.system_text == "You are terse.\nBe kind."
    assert req.messages == USER
    assert req.tools == tools
    assert req.tool_names == ["lookup"]
    assert req.stream is False
    assert req.api_key == "test"  # the SDK sends `Authorization: Bearer`
    assert req.headers["authorization"] == "Bearer test"
    assert json.loads(req.raw) == req.body


def test_raw_request_with_x_api_key(fake: FakeAnthropic) -> None:
    fake.add("ok")
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "system": "Plain system prompt.",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [tool_use("f", {}, id="toolu_9")]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}],
            },
        ],
    }

    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        resp = raw.post("/v1/messages?beta=true", json=body, headers={"X-Api-Key": "key-123"})

    assert resp.status_code == 200
    assert resp.json()["content"] == [text("ok")]
    (req,) = fake.requests
    assert req.path == "/v1/messages"
    assert req.query == {"beta": "true"}
    assert req.api_key == "key-123"
    assert req.headers["x-api-key"] == "key-123"
    assert req.model == "claude-haiku-4-5"
    assert req.system_text == "Plain system prompt."
    assert req.tool_results == [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}]
    assert req.last_user_text == ""


def test_unknown_paths_get_404(fake: FakeAnthropic) -> None:
    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        models = raw.get("/v1/models")
        head = raw.head("/api/hello")
        post = raw.post("/v1/complete", json={})

    assert models.status_code == 404
    assert models.json()["type"] == "error"
    assert models.json()["error"]["type"] == "not_found_error"
    assert head.status_code == 404
    assert head.content == b""
    assert post.status_code == 404
    assert fake.messages_requests == []
    assert fake.unexpected == []


def test_concurrent_requests(fake: FakeAnthropic) -> None:
    fake.default = lambda req: text(req.last_user_text)

    def call(i: int) -> str:
        with anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            block = create(c, messages=[{"role": "user", "content": f"m{i}"}]).content[0]
            assert block.type == "text"
            return block.text

    results: list[str] = []
    threads = [threading.Thread(target=lambda i=i: results.append(call(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert sorted(results) == sorted(f"m{i}" for i in range(8))
    assert len(fake.requests) == 8


def test_cli_title_request_is_intercepted(fake: FakeAnthropic) -> None:
    fake.add("main reply")
    title_request = {
        "model": MODEL,
        "max_tokens": 50,
        "system": [{"type": "text", "text": "You are naming a coding session. Give a title."}],
        "messages": USER,
        "output_config": {
            "format": {
                "type": "json_schema",
                "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
            }
        },
        "stream": True,
    }

    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        resp = raw.post("/v1/messages?beta=true", json=title_request)

    assert resp.headers["content-type"] == "text/event-stream"
    assert '\\"title\\"' in resp.text
    assert fake.pending == 1
    assert fake.requests[0].intercepted is True
    assert claude_cli_side_reply(fake.requests[0]) is not None


def test_chunked_request_body(fake: FakeAnthropic) -> None:
    fake.add("ok")
    payload = json.dumps({"model": MODEL, "max_tokens": 5, "messages": USER}).encode()

    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        resp = raw.post(
            "/v1/messages",
            content=iter([payload[:10], payload[10:]]),
            headers={"content-type": "application/json", "authorization": "Bearer tok"},
        )

    assert resp.status_code == 200
    (req,) = fake.requests
    assert req.headers.get("transfer-encoding") == "chunked"
    assert req.messages == USER
    assert req.api_key == "tok"


def test_client_hanging_up_mid_stream_is_silent(
    fake: FakeAnthropic, client: anthropic.Anthropic, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.add(FakeReply([text("x" * 200)], chunk_size=1, event_delay=0.005), "next")

    with client.messages.stream(model=MODEL, max_tokens=10, messages=USER) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break  # leaving the block closes the response mid-stream
    time.sleep(0.3)  # let the server thread hit the broken pipe
    msg = create(client)

    assert msg.content[0].type == "text" and msg.content[0].text == "next"
    assert fake.errors == []
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err == ""


# --------------------------------------------------------------------------
# Async
# --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_create_and_stream() -> None:
    async with FakeAnthropic(
        ["async hello", FakeReply([text("streamed async text"), tool_use("t", {"x": 1})])]
    ) as fake:
        async with anthropic.AsyncAnthropic(
            base_url=fake.base_url, api_key="test", max_retries=0, timeout=10
        ) as client:
            with anyio.fail_after(20):
                msg = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
                async with client.messages.stream(
                    model=MODEL, max_tokens=10, messages=USER
                ) as stream:
                    pieces = [p async for p in stream.text_stream]
                    final = await stream.get_final_message()

    assert msg.content[0].type == "text" and msg.content[0].text == "async hello"
    assert "".join(pieces) == "streamed async text"
    assert final.content[1].type == "tool_use" and final.content[1].input == {"x": 1}
    assert len(fake.messages_requests) == 2


# --------------------------------------------------------------------------
# Other real clients
# --------------------------------------------------------------------------


def test_agno_claude_model(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGNO_TELEMETRY", "false")
    agent_mod = pytest.importorskip("agno.agent")
    claude_mod = pytest.importorskip("agno.models.anthropic")

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    fake.add(tool_use("add", {"a": 2, "b": 3}), "The sum is 5.")
    model = claude_mod.Claude(
        id=MODEL,
        api_key="test",
        client_params={"base_url": fake.base_url, "max_retries": 0},
    )
    agent = agent_mod.Agent(model=model, tools=[add], telemetry=False)

    result = agent.run("add 2 and 3")

    assert result.content == "The sum is 5."
    first, second = fake.messages_requests
    assert first.tool_names == ["add"]
    assert second.tool_results[0]["content"] == "5"
    fake.assert_exhausted()


@pytest.mark.anyio
async def test_claude_agent_sdk_cli_structured_output(tmp_path: Path) -> None:
    sdk = pytest.importorskip("claude_agent_sdk")
    answer = {"answer": 42, "reason": "it is known"}
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "reason": {"type": "string"}},
        "required": ["answer", "reason"],
    }
    async with FakeAnthropic(
        [FakeReply([structured_output(answer)])], default=text("Done.")
    ) as fake:
        home = tmp_path / "home"
        home.mkdir()
        env = {
            "ANTHROPIC_BASE_URL": fake.base_url,
            "ANTHROPIC_API_KEY": "test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        }
        options = sdk.ClaudeAgentOptions(
            env=env,
            model=MODEL,
            tools=[],
            setting_sources=[],
            max_turns=3,
            cwd=str(tmp_path),
            output_format={"type": "json_schema", "schema": schema},
        )
        with anyio.fail_after(90):
            results = [
                message
                async for message in sdk.query(prompt="What is the answer?", options=options)
                if isinstance(message, sdk.ResultMessage)
            ]

    assert len(results) == 1
    assert results[0].is_error is False
    assert results[0].structured_output == answer
    first = fake.messages_requests[0]
    assert first.stream is True
    assert first.query == {"beta": "true"}
    assert first.api_key == "test"
    assert first.model == MODEL
    assert "StructuredOutput" in first.tool_names
    assert fake.unexpected == []
    assert fake.errors == []
    assert (
        "ANTHROPIC_BASE_URL" not in os.environ
        or os.environ["ANTHROPIC_BASE_URL"] != env["ANTHROPIC_BASE_URL"]
    )  # the env went to the CLI subprocess only
