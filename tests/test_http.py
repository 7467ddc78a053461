"""The HTTP service over real HTTP: uvicorn on a free port, httpx, and a real SSE client."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
import uvicorn
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpx_sse import ServerSentEvent, aconnect_sse

from planner import (
    Execution,
    InvalidRequestError,
    Planner,
    RunContext,
    StrategyError,
    TaskPlan,
    TaskPlanRequest,
)
from planner.backends.executors.inprocess import InProcessExecutor
from planner.http import (
    AnyVerifier,
    JWTVerifier,
    PlannerApp,
    PlannerServer,
    StaticTokenVerifier,
    create_app,
    verifier_from_env,
)
from planner.http.auth import parse_token_list
from planner.testing import FunctionStrategy, sample_plan, sample_request

ROOT = Path(__file__).parent.parent
SEED = yaml.safe_load((ROOT / "docs" / "spec" / "plans-generate.openapi.yaml").read_text())

TOKEN_A = "token-of-acme-5f1c2a"
TOKEN_B = "token-of-globex-9e7d41"
TOKENS = {TOKEN_A: "acme", TOKEN_B: "globex"}
A = {"Authorization": f"Bearer {TOKEN_A}"}
B = {"Authorization": f"Bearer {TOKEN_B}"}
API = "/api/v1"


# -- a gated strategy: tests decide when a run may finish -------------------------------------


class Gates:
    """Named gates that runs wait on (threading events: runs block in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = defaultdict(threading.Event)
        self.reached: dict[str, threading.Event] = defaultdict(threading.Event)

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates[name]

    def arrived(self, name: str) -> threading.Event:
        with self._lock:
            return self.reached[name]

    def open_all(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()


def gated_strategy(gates: Gates) -> FunctionStrategy:
    """Descriptions ``gate:NAME`` wait for that gate; ``fail`` fails; others finish at once."""

    def plan(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        ctx.emit_sync("progress", stage="analysis", message="Reading the inventory", progress=10)
        if request.description.startswith("gate:"):
            name = request.description.removeprefix("gate:")
            gates.arrived(name).set()
            gates.gate(name).wait(60)
            ctx.emit_sync("progress", stage="planning", message="Gate opened", progress=50)
        if request.description.startswith("fail"):
            raise StrategyError("the model refused to plan")
        return sample_plan(request)

    return FunctionStrategy(plan, name="gated")


def body(description: str = "Rotate the DB credentials", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = sample_request(description, planning_strategy="agno").model_dump(
        mode="json"
    )
    data.update(fields)
    return data


# -- a live server ------------------------------------------------------------------------------


class LiveServer:
    """Serves an app with :class:`PlannerServer` on a free port, in a thread."""

    def __init__(self, app: PlannerApp) -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", lifespan="on")
        self.server = PlannerServer(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            threading.Event().wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_planner(gates: Gates, executor: InProcessExecutor | None = None) -> Planner:
    strategy = gated_strategy(gates)
    return Planner(
        "memory://",
        executor or InProcessExecutor(shutdown_timeout=1),
        {"agno": strategy, "claude_code_sdk": strategy},
    )


@pytest.fixture
def gates() -> Iterator[Gates]:
    gates = Gates()
    yield gates
    gates.open_all()


@pytest.fixture
def live(gates: Gates) -> Iterator[LiveServer]:
    app = create_app(make_planner(gates), verifier=StaticTokenVerifier(TOKENS), keepalive=0.2)
    with LiveServer(app) as server:
        try:
            yield server
        finally:
            gates.open_all()


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        yield client


async def wait_for(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, 30)


async def submit(client: httpx.AsyncClient, headers: Mapping[str, str] = A, **kw: Any) -> str:
    response = await client.post(f"{API}/plans/generate", json=body(**kw), headers=headers)
    assert response.status_code == 200, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


async def sse_events(
    client: httpx.AsyncClient,
    execution_id: str,
    headers: Mapping[str, str] = A,
    params: Mapping[str, Any] | None = None,
) -> list[ServerSentEvent]:
    events = []
    async with aconnect_sse(
        client,
        "GET",
        f"{API}/executions/{execution_id}/stream",
        headers=dict(headers),
        params=params,
    ) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = [sse async for sse in source.aiter_sse()]
    # ``history_complete`` (not part of the log) is tested on its own below; whether a
    # stream gets one depends on whether the run was still going when it connected.
    markers = [i for i, e in enumerate(events) if e.event == "history_complete"]
    assert len(markers) <= 1
    return [e for e in events if e.event != "history_complete"]


def assert_well_formed(events: list[ServerSentEvent], first: int = 1) -> None:
    seqs = [int(e.id) for e in events]
    assert seqs == list(range(first, first + len(events)))
    assert events[-1].event == "done"
    assert events[-2].event in {"complete", "error", "cancelled"}
    assert sum(e.event in {"complete", "error", "cancelled"} for e in events) == 1


# -- OpenAPI parity -----------------------------------------------------------------------------


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return components[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


def test_openapi_has_the_seed_operation_with_equal_schemas() -> None:
    app = create_app(Planner(), verifier=StaticTokenVerifier(TOKENS))
    ours, seed = app.openapi, SEED
    path = "/api/v1/plans/generate"
    op, seed_op = ours["paths"][path]["post"], seed["paths"][path]["post"]
    for key in ("summary", "operationId", "tags"):
        assert op[key] == seed_op[key]
    assert op["requestBody"] == seed_op["requestBody"]
    for status in ("200", "422"):
        assert op["responses"][status] == seed_op["responses"][status]
    ours_c, seed_c = ours["components"]["schemas"], seed["components"]["schemas"]
    for name in seed_c:  # every component the seed defines, equal field for field
        assert ours_c[name] == seed_c[name], name
    assert (
        ours["components"]["securitySchemes"]["BearerAuth"]
        == seed["components"]["securitySchemes"]["BearerAuth"]
    )
    assert ours["security"] == seed["security"]


def test_every_reference_in_the_document_resolves() -> None:
    document = create_app(Planner(), verifier=StaticTokenVerifier(TOKENS)).openapi
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    names = set(document["components"]["schemas"])
    assert {r.rsplit("/", 1)[1] for r in refs} <= names


async def test_openapi_and_health_are_served_without_a_token(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == live.app.openapi
    for path in ("/health", f"{API}/health"):
        health = await client.get(path)
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"


# -- generate and stream ------------------------------------------------------------------------


async def test_generate_returns_pending_and_the_stream_url(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/plans/generate", json=body(), headers=A)
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"execution_id", "workflow_id", "status", "message"}
    assert data["status"] == "pending"
    assert data["workflow_id"] == f"plan-generation-{data['execution_id']}"
    assert data["message"] == (
        "Plan generation submitted. Use /api/v1/executions/"
        f"{data['execution_id']}/stream to track progress."
    )


async def test_stream_frames_are_the_log(live: LiveServer, client: httpx.AsyncClient) -> None:
    execution_id = await submit(client)
    events = await sse_events(client, execution_id)
    assert_well_formed(events)
    assert events[-2].event == "complete"
    log = await live.app.planner.events(execution_id)
    assert [(int(e.id), e.event, e.json()) for e in events] == [
        (e.seq, e.type, e.data) for e in log
    ]
    assert events[-1].json()["execution_id"] == execution_id


async def test_the_execution_and_the_status_view(client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="Upgrade the staging cluster")
    await sse_events(client, execution_id)
    record = (await client.get(f"{API}/executions/{execution_id}", headers=A)).json()
    assert record["id"] == execution_id
    assert record["status"] == "completed"
    assert record["prompt"] == "Upgrade the staging cluster"
    assert record["plan_json"]["title"] == record["response"]
    assert record["organization_id"] == "acme"
    assert "lease_owner" not in record and "idempotency_key" not in record
    view = (await client.get(f"{API}/plans/generation/{execution_id}", headers=A)).json()
    assert set(view) == {
        "execution_id",
        "status",
        "description",
        "current_step",
        "error_message",
        "plan_json",
        "metadata",
        "created_at",
        "started_at",
        "completed_at",
        "temporal_workflow_id",
    }
    assert view["status"] == "completed"
    assert view["plan_json"] == record["plan_json"]
    assert view["temporal_workflow_id"] == f"plan-generation-{execution_id}"
    assert view["metadata"]["planning_strategy"] == "agno"


async def test_a_failed_generation_streams_its_error(client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="fail please")
    events = await sse_events(client, execution_id)
    assert_well_formed(events)
    assert events[-2].event == "error"
    view = (await client.get(f"{API}/plans/generation/{execution_id}", headers=A)).json()
    assert view["status"] == "failed"
    assert "refused to plan" in view["error_message"]


async def test_invalid_requests_get_the_seeds_422(client: httpx.AsyncClient) -> None:
    bad = {"description": 42, "priority": "urgent", "agents": [{"id": "x"}]}
    response = await client.post(f"{API}/plans/generate", json=bad, headers=A)
    assert response.status_code == 422
    with pytest.raises(InvalidRequestError) as info:
        Planner().validate(bad)
    assert response.json() == info.value.http_detail()
    for entry in response.json()["detail"]:
        assert set(entry) == {"loc", "msg", "type"} and entry["loc"][0] == "body"

    not_json = await client.post(
        f"{API}/plans/generate",
        content=b"{not json",
        headers={**A, "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["type"] == "json_invalid"
    empty = await client.post(f"{API}/plans/generate", content=b"", headers=A)
    assert empty.status_code == 422
    assert empty.json() == {
        "detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]
    }
    a_list = await client.post(f"{API}/plans/generate", json=[1, 2], headers=A)
    assert a_list.status_code == 422 and a_list.json()["detail"][0]["loc"] == ["body"]
    assert (await client.get(f"{API}/executions", headers=A)).json() == []  # nothing written


class RefusingExecutor(InProcessExecutor):
    async def submit(self, execution: Execution) -> str:
        raise ConnectionError("the cluster is unreachable")


async def test_a_refused_submit_answers_500_and_the_record_is_failed(gates: Gates) -> None:
    app = create_app(make_planner(gates, RefusingExecutor()), verifier=StaticTokenVerifier(TOKENS))
    with LiveServer(app) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            response = await client.post(f"{API}/plans/generate", json=body(), headers=A)
            assert response.status_code == 500
            error = response.json()
            assert "could not submit plan generation" in error["detail"]
            assert "the cluster is unreachable" in error["detail"]
            execution_id = error["execution_id"]
            record = (await client.get(f"{API}/executions/{execution_id}", headers=A)).json()
            assert record["status"] == "failed"
            assert record["error"]["type"] == "submit_failed"
            events = await sse_events(client, execution_id)
            assert_well_formed(events)
            assert events[-2].event == "error"


async def test_the_idempotency_key_returns_the_same_execution_per_tenant(
    client: httpx.AsyncClient,
) -> None:
    async def post(headers: Mapping[str, str]) -> str:
        response = await client.post(
            f"{API}/plans/generate", json=body(), headers={**headers, "Idempotency-Key": "k-1"}
        )
        assert response.status_code == 200
        execution_id: str = response.json()["execution_id"]
        return execution_id

    first, again, other = await post(A), await post(A), await post(B)
    assert first == again
    assert other != first


# -- resuming -----------------------------------------------------------------------------------


async def test_last_event_id_resumes_exactly_after_that_event(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await submit(client)
    everything = await sse_events(client, execution_id)
    n = len(everything)
    for cut in range(n + 1):
        by_header = await sse_events(client, execution_id, {**A, "Last-Event-ID": str(cut)})
        assert [(e.id, e.event, e.data) for e in by_header] == [
            (e.id, e.event, e.data) for e in everything[cut:]
        ]
    by_query = await sse_events(client, execution_id, params={"last_event_id": 2})
    assert [e.id for e in by_query] == [e.id for e in everything[2:]]
    # The header wins over the query: a browser's EventSource reconnects with
    # the URL it was given and the newest id in the header.
    both = await sse_events(
        client, execution_id, {**A, "Last-Event-ID": "3"}, params={"last_event_id": 1}
    )
    assert [e.id for e in both] == [e.id for e in everything[3:]]


async def test_a_bad_cursor_is_422(client: httpx.AsyncClient) -> None:
    execution_id = await submit(client)
    url = f"{API}/executions/{execution_id}/stream"
    header = await client.get(url, headers={**A, "Last-Event-ID": "abc"})
    assert header.status_code == 422
    assert header.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]
    query = await client.get(url, headers=A, params={"last_event_id": -1})
    assert query.status_code == 422
    assert query.json()["detail"][0]["loc"] == ["query", "last_event_id"]


async def test_resume_after_a_dropped_connection(gates: Gates, client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="gate:drop")
    await wait_for(gates.arrived("drop"))
    seen: list[ServerSentEvent] = []
    async with aconnect_sse(
        client, "GET", f"{API}/executions/{execution_id}/stream", headers=A
    ) as source:
        async for sse in source.aiter_sse():
            seen.append(sse)
            if sse.event == "progress":
                break  # drop the connection mid-stream, the run still going
    gates.gate("drop").set()
    last = seen[-1].id
    rest = await sse_events(client, execution_id, {**A, "Last-Event-ID": last})
    assert int(rest[0].id) == int(last) + 1
    whole = seen + rest
    assert_well_formed(whole)
    assert whole[-2].event == "complete"
    assert [e.data for e in whole if e.event == "progress"][-1] == json.dumps(
        {"stage": "planning", "message": "Gate opened", "progress": 50.0}, separators=(",", ":")
    )


async def test_keepalive_comments_while_nothing_happens(
    gates: Gates, client: httpx.AsyncClient
) -> None:
    execution_id = await submit(client, description="gate:quiet")
    await wait_for(gates.arrived("quiet"))
    lines: list[str] = []
    async with client.stream(
        "GET", f"{API}/executions/{execution_id}/stream", headers=A
    ) as response:
        async for line in response.aiter_lines():
            lines.append(line)
            if line == ": keepalive":
                gates.gate("quiet").set()
    assert lines[0] == "retry: 2000" and lines[1] == "id: 1"
    assert ": keepalive" in lines
    assert lines[-4:] == [
        lines[-4],
        "event: done",
        lines[-2],
        "",
    ] and lines[-4].startswith("id: ")


async def test_history_complete_follows_the_replay(gates: Gates, client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="gate:history")
    await wait_for(gates.arrived("history"))
    url = f"{API}/executions/{execution_id}/stream"
    lines: list[str] = []
    async with client.stream("GET", url, headers=A) as response:
        async for line in response.aiter_lines():
            lines.append(line)
            if line == "event: history_complete":
                gates.gate("history").set()
    frames = [f.split("\n") for f in "\n".join(lines).split("\n\n") if f.strip()]
    named = [next(x for x in f if x.startswith("event: "))[7:] for f in frames]
    marker = named.index("history_complete")
    replayed = [f for f in frames[:marker]]
    # Not part of the log: no ``id:``, so Last-Event-ID stays the last real seq.
    assert not any(x.startswith("id:") for x in frames[marker])
    data = json.loads(next(x for x in frames[marker] if x.startswith("data: "))[6:])
    last_id = int(next(x for x in replayed[-1] if x.startswith("id: "))[4:])
    assert data == {"execution_id": execution_id, "last_event_id": last_id, "replayed": marker}
    assert named.count("history_complete") == 1
    assert named[-1] == "done" and "complete" in named[marker + 1 :]
    # The real SSE client sees the frames after it with their own ids, and resuming
    # after the marker's (inherited) id replays nothing twice.
    log = await sse_events(client, execution_id)
    assert [e.event for e in log] == [n for n in named if n != "history_complete"]
    assert_well_formed(log)
    rest = await sse_events(client, execution_id, {**A, "Last-Event-ID": str(last_id)})
    assert [e.id for e in rest] == [e.id for e in log[last_id:]]


async def test_an_ended_executions_stream_is_the_log_alone(client: httpx.AsyncClient) -> None:
    execution_id = await submit(client)
    await sse_events(client, execution_id)  # it has ended now
    async with client.stream(
        "GET", f"{API}/executions/{execution_id}/stream", headers=A
    ) as response:
        text = (await response.aread()).decode()
    assert "history_complete" not in text
    assert text.rstrip("\n").split("\n\n")[-1].split("\n")[1] == "event: done"


async def test_head_on_the_stream_answers_at_once(gates: Gates, client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="gate:head")
    await wait_for(gates.arrived("head"))
    url = f"{API}/executions/{execution_id}/stream"
    # The run is held at its gate: a HEAD that streamed until the end would not return.
    head = await client.head(url, headers=A)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""
    assert (await client.head(url, headers=B)).status_code == 404
    assert (await client.head(f"{API}/executions/nope/stream", headers=A)).status_code == 404
    assert (await client.head(url)).status_code == 401
    gates.gate("head").set()
    assert_well_formed(await sse_events(client, execution_id))


async def test_a_stream_after_done_ends_at_once(client: httpx.AsyncClient) -> None:
    execution_id = await submit(client)
    everything = await sse_events(client, execution_id)
    assert await sse_events(client, execution_id, {**A, "Last-Event-ID": everything[-1].id}) == []


async def test_100_concurrent_streams(gates: Gates, client: httpx.AsyncClient) -> None:
    ids = [await submit(client, description="gate:crowd") for _ in range(100)]
    results: dict[str, list[ServerSentEvent]] = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60, limits=limits) as many:
        opened = anyio.Event()
        count = 0

        async def follow(execution_id: str) -> None:
            nonlocal count
            events: list[ServerSentEvent] = []
            async with aconnect_sse(
                many, "GET", f"{API}/executions/{execution_id}/stream", headers=A
            ) as source:
                count += 1
                if count == len(ids):
                    opened.set()
                events = [sse async for sse in source.aiter_sse()]
            results[execution_id] = events

        async with anyio.create_task_group() as tg:
            for execution_id in ids:
                tg.start_soon(follow, execution_id)
            await opened.wait()
            gates.gate("crowd").set()
    assert set(results) == set(ids)
    for events in results.values():
        # Each run was held at its gate when its stream opened: replay, marker, live events.
        assert [e.event for e in events].count("history_complete") == 1
        events = [e for e in events if e.event != "history_complete"]
        assert_well_formed(events)
        assert events[-2].event == "complete"


# -- list, cancel, refine -----------------------------------------------------------------------


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    ids = [await submit(client, description=f"task {i}") for i in range(5)]
    failed = await submit(client, description="fail this one")
    for execution_id in [*ids, failed]:
        await sse_events(client, execution_id)
    url = f"{API}/executions"
    everything = (await client.get(url, headers=A)).json()
    assert [e["id"] for e in everything] == [failed, *ids[::-1]]
    only_failed = (await client.get(url, headers=A, params={"status": "failed"})).json()
    assert [e["id"] for e in only_failed] == [failed]
    pages: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "completed"}
        if before is not None:
            params["before"] = before
        page = (await client.get(url, headers=A, params=params)).json()
        if not page:
            break
        pages += [e["id"] for e in page]
        before = page[-1]["id"]
    assert pages == ids[::-1]
    for params in ({"limit": 0}, {"limit": "x"}, {"status": "bogus"}, {"before": ""}):
        response = await client.get(url, headers=A, params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"][0] == "query"
    unknown = await client.get(url, headers=A, params={"before": "nope"})
    assert unknown.status_code == 404


async def test_cancel_a_running_execution(gates: Gates, client: httpx.AsyncClient) -> None:
    execution_id = await submit(client, description="gate:cancel")
    await wait_for(gates.arrived("cancel"))
    response = await client.post(f"{API}/executions/{execution_id}/cancel", headers=A)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    events = await sse_events(client, execution_id)
    assert_well_formed(events)
    assert events[-2].event == "cancelled"
    again = await client.post(f"{API}/executions/{execution_id}/cancel", headers=A)
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]


async def test_refine_a_completed_plan(live: LiveServer, client: httpx.AsyncClient) -> None:
    parent = await submit(client)
    await sse_events(client, parent)
    response = await client.post(
        f"{API}/executions/{parent}/refine",
        json={"refinement_feedback": "Add a rollback task"},
        headers=A,
    )
    assert response.status_code == 200, response.text
    child = response.json()["execution_id"]
    assert response.json()["status"] == "pending"
    events = await sse_events(client, child)
    assert events[-2].event == "complete"
    record = (await client.get(f"{API}/executions/{child}", headers=A)).json()
    assert record["parent_execution_id"] == parent
    assert record["organization_id"] == "acme"
    assert record["request"]["refinement_feedback"] == "Add a rollback task"
    assert record["request"]["iteration"] == 2
    parent_plan = (await client.get(f"{API}/executions/{parent}", headers=A)).json()["plan_json"]
    assert record["request"]["previous_plan"] == parent_plan

    url = f"{API}/executions/{parent}/refine"
    empty = await client.post(url, json={"refinement_feedback": "  "}, headers=A)
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["body", "refinement_feedback"]
    unknown_field = await client.post(url, json={"feedback": "x"}, headers=A)
    assert unknown_field.status_code == 422
    failed = await submit(client, description="fail")
    await sse_events(client, failed)
    no_plan = await client.post(
        f"{API}/executions/{failed}/refine", json={"refinement_feedback": "x"}, headers=A
    )
    assert no_plan.status_code == 409


# -- security -----------------------------------------------------------------------------------


async def test_requests_without_a_valid_token_get_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer wrong"}):
        response = await client.post(f"{API}/plans/generate", json=body(), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert set(response.json()) == {"detail"}
    listing = await client.get(f"{API}/executions")
    assert listing.status_code == 401


async def test_another_tenants_execution_is_404_everywhere(
    gates: Gates, client: httpx.AsyncClient
) -> None:
    done = await submit(client, A)
    await sse_events(client, done)
    running = await submit(client, A, description="gate:iso")
    await wait_for(gates.arrived("iso"))
    unknown = await client.get(f"{API}/executions/no-such-id", headers=B)
    assert unknown.status_code == 404
    for execution_id in (done, running):
        attempts = [
            client.get(f"{API}/executions/{execution_id}", headers=B),
            client.get(f"{API}/plans/generation/{execution_id}", headers=B),
            client.get(f"{API}/executions/{execution_id}/stream", headers=B),
            client.get(
                f"{API}/executions/{execution_id}/stream",
                headers={**B, "Last-Event-ID": "1"},
            ),
            client.post(f"{API}/executions/{execution_id}/cancel", headers=B),
            client.post(
                f"{API}/executions/{execution_id}/refine",
                json={"refinement_feedback": "mine now"},
                headers=B,
            ),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status_code == 404
            assert response.json() == unknown.json()  # indistinguishable from a missing id
    assert (await client.get(f"{API}/executions", headers=B)).json() == []
    cursor = await client.get(f"{API}/executions", headers=B, params={"before": done})
    assert cursor.status_code == 404
    assert cursor.json() == unknown.json()
    # Nothing happened to A's executions.
    assert (await client.get(f"{API}/executions/{running}", headers=A)).json()["status"] == (
        "running"
    )
    gates.gate("iso").set()
    assert (await sse_events(client, running))[-2].event == "complete"


async def test_tokens_never_reach_logs_or_events(
    live: LiveServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
    for logger in uvicorn_loggers:  # they do not propagate to the root logger
        logger.addHandler(caplog.handler)
    try:
        execution_id = await submit(client)
        await sse_events(client, execution_id)
        await client.get(f"{API}/executions/{execution_id}", headers=B)
        bad_token = {"Authorization": "Bearer x"}
        await client.post(f"{API}/plans/generate", json=body(), headers=bad_token)
        await client.post(f"{API}/plans/generate", json={"description": 1}, headers=A)
    finally:
        for logger in uvicorn_loggers:
            logger.removeHandler(caplog.handler)
    logs = caplog.text
    assert f"{execution_id} submitted (tenant acme)" in logs  # planner.http
    assert f'"GET /api/v1/executions/{execution_id} HTTP/1.1" 404' in logs  # uvicorn's access log
    for token in TOKENS:
        assert token not in logs
        for event in await live.app.planner.events(execution_id):
            assert token not in event.model_dump_json()
        record = await live.app.planner.get(execution_id)
        assert token not in record.model_dump_json()
    assert "StaticTokenVerifier(2 token(s))" == repr(live.app.verifier)


async def test_body_size_limit(gates: Gates) -> None:
    app = create_app(make_planner(gates), verifier=StaticTokenVerifier(TOKENS), max_body_size=4096)
    big = body(description="x" * 5000)
    with LiveServer(app) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            response = await client.post(f"{API}/plans/generate", json=big, headers=A)
            assert response.status_code == 413
            assert "4096 bytes" in response.json()["detail"]

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
                data = json.dumps(big).encode()
                for i in range(0, len(data), 1000):
                    yield data[i : i + 1000]

            chunked = await client.post(f"{API}/plans/generate", content=chunks(), headers=A)
            assert chunked.status_code == 413
            small = await client.post(f"{API}/plans/generate", json=body(), headers=A)
            assert small.status_code == 200
            assert len((await client.get(f"{API}/executions", headers=A)).json()) == 1


# -- verifiers ----------------------------------------------------------------------------------


def hs256(claims: dict[str, Any], secret: str = "s3cret-shared-key-of-32-bytes-min") -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_jwt_with_a_shared_secret() -> None:
    verifier = JWTVerifier("s3cret-shared-key-of-32-bytes-min", audience="planner")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    good = hs256({"organization_id": "acme", "sub": "ann", "aud": "planner", "exp": soon})
    principal = await verifier.verify(good)
    assert principal is not None and (principal.tenant, principal.subject) == ("acme", "ann")
    past = datetime.now(UTC) - timedelta(minutes=5)
    refused = [
        hs256({"organization_id": "acme", "aud": "planner", "exp": past}),  # expired
        hs256({"organization_id": "acme", "aud": "other"}),  # wrong audience
        hs256({"aud": "planner"}),  # no tenant
        hs256({"organization_id": "acme", "aud": "planner"}, "another-secret-of-32-bytes-min!!"),
        jwt.encode({"organization_id": "acme", "aud": "planner"}, "", algorithm="none"),
        "not a jwt",
    ]
    for token in refused:
        assert await verifier.verify(token) is None
    with pytest.raises(ValueError, match="none"):
        JWTVerifier("k", algorithms=["none"])


async def test_jwt_with_a_public_key_over_http(gates: Gates) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = AnyVerifier(
        [StaticTokenVerifier(TOKENS), JWTVerifier(public, algorithms=["RS256"], tenant_claim="org")]
    )
    token = jwt.encode({"org": "initech"}, key, algorithm="RS256")
    app = create_app(make_planner(gates), verifier=verifier)
    with LiveServer(app) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            headers = {"Authorization": f"Bearer {token}"}
            execution_id = await submit(client, headers)
            record = (await client.get(f"{API}/executions/{execution_id}", headers=headers)).json()
            assert record["organization_id"] == "initech"
            other = await client.get(f"{API}/executions/{execution_id}", headers=A)
            assert other.status_code == 404
            forged = jwt.encode({"org": "initech"}, "a-guessed-secret-of-32-bytes-or-more", "HS256")
            refused = await client.get(
                f"{API}/executions", headers={"Authorization": f"Bearer {forged}"}
            )
            assert refused.status_code == 401


def test_token_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_token_list(" t1 = acme , ,t2=globex") == {"t1": "acme", "t2": "globex"}
    with pytest.raises(ValueError, match="entry 2") as info:
        parse_token_list("t1=acme,secret-without-tenant")
    assert "secret-without-tenant" not in str(info.value)
    assert verifier_from_env({}) is None
    assert isinstance(verifier_from_env({"PLANNER_API_TOKENS": "t=a"}), StaticTokenVerifier)
    both = verifier_from_env({"PLANNER_API_TOKENS": "t=a", "PLANNER_JWT_SECRET": "k" * 32})
    assert isinstance(both, AnyVerifier) and len(both.verifiers) == 2
    monkeypatch.delenv("PLANNER_API_TOKENS", raising=False)
    monkeypatch.delenv("PLANNER_JWT_SECRET", raising=False)
    monkeypatch.delenv("PLANNER_JWT_PUBLIC_KEY", raising=False)
    with pytest.raises(ValueError, match="PLANNER_API_TOKENS"):
        create_app(Planner())
    monkeypatch.setenv("PLANNER_API_TOKENS", "env-token=envco")
    assert isinstance(create_app(Planner()).verifier, StaticTokenVerifier)


# -- shutdown -----------------------------------------------------------------------------------


async def test_shutdown_ends_open_streams_with_a_final_event(gates: Gates) -> None:
    app = create_app(make_planner(gates), verifier=StaticTokenVerifier(TOKENS))
    live = LiveServer(app).__enter__()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
            execution_id = await submit(client, description="gate:shutdown")
            await wait_for(gates.arrived("shutdown"))
            seen: list[ServerSentEvent] = []
            async with aconnect_sse(
                client, "GET", f"{API}/executions/{execution_id}/stream", headers=A
            ) as source:
                async for sse in source.aiter_sse():
                    seen.append(sse)
                    if sse.event == "progress":
                        await anyio.to_thread.run_sync(live.stop)
    finally:
        gates.open_all()
        live.stop()
    assert not live.thread.is_alive()
    assert seen[-1].event == "shutdown"
    assert seen[-1].id in ("", None) or seen[-1].id == seen[-2].id  # not a log event
    final = seen[-1].json()
    assert final["last_event_id"] == int(seen[-2].id)
    assert final["execution_id"] == execution_id
    # The run in flight was left to the executor: it waited shutdown_timeout, then cancelled it.
    record = await app.planner.store.get(execution_id)
    assert record.status.value == "cancelled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_planner_serve_needs_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from planner.cli import main

    monkeypatch.delenv("PLANNER_API_TOKENS", raising=False)
    monkeypatch.delenv("PLANNER_JWT_SECRET", raising=False)
    monkeypatch.delenv("PLANNER_JWT_PUBLIC_KEY", raising=False)
    assert main(["serve", "--port", str(free_port())]) == 2


async def test_planner_serve_runs_and_shuts_down_gracefully() -> None:
    port = free_port()
    env = {**os.environ, "PLANNER_API_TOKENS": f"{TOKEN_A}=acme", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "planner",
        "serve",
        "--port",
        str(port),
        "--store",
        "memory://",
        # The executor's options in its URL: the slow run in flight gets 1 s, not 10.
        "--executor",
        "inprocess?shutdown_timeout=1",
        "--strategy",
        "agno=tests.cli_strategies:async_plan_fn",
        "--strategy",
        "slow=tests.cli_strategies:slow_fn",
    ]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    process = await anyio.to_thread.run_sync(start)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while True:  # wait until it listens
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    await anyio.sleep(0.05)
            quick = await submit(client)
            assert (await sse_events(client, quick))[-2].event == "complete"
            slow = await submit(client, planning_strategy="slow")
            seen: list[ServerSentEvent] = []
            async with aconnect_sse(
                client, "GET", f"{API}/executions/{slow}/stream", headers=A
            ) as source:
                async for sse in source.aiter_sse():
                    seen.append(sse)
                    if sse.event == "progress":
                        process.send_signal(signal.SIGTERM)
        assert seen[-1].event == "shutdown"
        code = await anyio.to_thread.run_sync(process.wait, 60)
        output = process.stdout.read().decode() if process.stdout else ""
        assert code == -signal.SIGTERM, output  # uvicorn re-raises the signal it handled
        assert "Finished server process" in output
        assert TOKEN_A not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
