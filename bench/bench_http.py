"""The HTTP service: submit throughput and event delivery latency over real HTTP.

The server is ``planner.http.create_app`` on uvicorn (``PlannerServer``) in a
thread of this process, with the memory store, the in-process executor and a
zero-latency strategy; the clients are httpx (and httpx-sse for the streams)
on this process's main event loop, over 127.0.0.1.

- submit: ``POST /api/v1/plans/generate`` N times, C requests in flight;
  requests per second and per-request latency (p50, p95).  The runs they
  start finish at once and compete for the same CPU, as in a real service.
- delivery: S executions are held open (their strategy waits), one SSE client
  streams each; then, round after round, one ``progress`` event is appended
  to every execution's log straight into the store, stamped with
  ``time.perf_counter_ns()``, and each client notes when the frame arrives.
  Latency = frame received - append, per frame (p50, p95, max), with S = 1
  and S = 100 concurrent streams.

Usage::

    python bench/bench_http.py                        # --n 1000 --concurrency 20 --rounds 50
    python bench/bench_http.py --n 300 --rounds 20 --streams 1,100
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import uvicorn
from httpx_sse import aconnect_sse

from planner import NewEvent, Planner, RunContext, TaskPlan, TaskPlanRequest
from planner.http import PlannerApp, PlannerServer, StaticTokenVerifier, create_app
from planner.testing import FunctionStrategy, sample_plan, sample_request

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
HOLD = "hold"


def make_app() -> PlannerApp:
    async def plan(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        if request.description == HOLD:
            await anyio.sleep_forever()  # held open until the bench cancels it
        return sample_plan(request)

    planner = Planner("memory://", "inprocess", {"agno": FunctionStrategy(plan)}, timeout=3600)
    return create_app(planner, verifier=StaticTokenVerifier({TOKEN: "bench"}))


@contextmanager
def running(app: PlannerApp) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", backlog=4096)
    server = PlannerServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


async def bench_submit(url: str, n: int, concurrency: int) -> dict[str, float]:
    body = sample_request(planning_strategy="agno").model_dump(mode="json")
    latencies: list[float] = []
    queue = iter(range(n))
    async with httpx.AsyncClient(base_url=url, limits=limits(concurrency), timeout=60) as client:
        for _ in range(min(n, concurrency)):  # warm the connections up
            await client.post("/api/v1/plans/generate", json=body, headers=HEADERS)

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                response = await client.post("/api/v1/plans/generate", json=body, headers=HEADERS)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - started
    return {
        "requests_per_s": n / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
    }


async def bench_delivery(app: PlannerApp, url: str, streams: int, rounds: int) -> dict[str, float]:
    store = app.planner.store
    body = sample_request(HOLD, planning_strategy="agno").model_dump(mode="json")
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, limits=limits(streams + 1), timeout=60) as client:
        ids = []
        for _ in range(streams):
            response = await client.post("/api/v1/plans/generate", json=body, headers=HEADERS)
            ids.append(response.json()["execution_id"])
        received = {execution_id: anyio.Event() for execution_id in ids}
        ready = anyio.Event()
        opened = 0

        async def follow(execution_id: str) -> None:
            nonlocal opened
            async with aconnect_sse(
                client, "GET", f"/api/v1/executions/{execution_id}/stream", headers=HEADERS
            ) as source:
                opened += 1
                if opened == streams:
                    ready.set()
                async for sse in source.aiter_sse():
                    if sse.event == "bench":
                        arrived = time.perf_counter_ns()
                        latencies.append((arrived - sse.json()["t"]) / 1e6)
                        received[execution_id].set()
                    if sse.event == "done":
                        return

        async with anyio.create_task_group() as tg:
            for execution_id in ids:
                tg.start_soon(follow, execution_id)
            await ready.wait()
            await anyio.sleep(0.2)  # let the replays drain
            for _ in range(rounds):
                for execution_id in ids:
                    received[execution_id] = anyio.Event()
                for execution_id in ids:
                    stamp = {"t": time.perf_counter_ns()}
                    await store.append(execution_id, [NewEvent("bench", stamp)])
                for execution_id in ids:
                    await received[execution_id].wait()
            for execution_id in ids:
                await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=HEADERS)
    return {
        "frames": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "max_ms": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="submits (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=20, help="submits in flight")
    parser.add_argument("--rounds", type=int, default=50, help="events appended per stream")
    parser.add_argument("--streams", default="1,100", help="stream counts (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    app = make_app()
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.platform(),
    }
    with running(app) as url:
        results["submit"] = {
            "n": args.n,
            "concurrency": args.concurrency,
            **anyio.run(bench_submit, url, args.n, args.concurrency),
        }
        results["delivery"] = {}
        for count in (int(s) for s in args.streams.split(",")):
            figures = anyio.run(bench_delivery, app, url, count, args.rounds)
            results["delivery"][str(count)] = figures
    if args.json:
        print(json.dumps(results, indent=2))
        return
    submit = results["submit"]
    print(f"python {results['python']} on {results['machine']}")
    print(
        f"submit  n={submit['n']} concurrency={submit['concurrency']}: "
        f"{submit['requests_per_s']:.0f} req/s, p50 {submit['p50_ms']:.1f} ms, "
        f"p95 {submit['p95_ms']:.1f} ms"
    )
    for count, figures in results["delivery"].items():
        print(
            f"append -> SSE frame, {count:>3} stream(s), {figures['frames']} frames: "
            f"p50 {figures['p50_ms']:.2f} ms, p95 {figures['p95_ms']:.2f} ms, "
            f"max {figures['max_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
