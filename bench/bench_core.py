"""The core's overhead: planner (memory store, in-process executor) next to LangGraph.

The work is the same on both sides and costs nothing by itself: a zero-latency
step that reports 5 progress events and returns a ~3.6 KB plan.

- planner: ``Planner(store="memory://", executor="inprocess",
  strategies={"agno": FunctionStrategy(fn)})``; one execution is
  ``generate(request)`` then ``wait(id)`` (mode ``wait``), or ``generate`` then
  ``stream(id)`` consumed to ``done`` (mode ``stream``: the plan arrives in the
  ``complete`` event).
- LangGraph: a ``StateGraph`` with one node that writes 5 custom events through
  ``get_stream_writer()`` and returns the plan into the state, compiled with
  ``InMemorySaver``; one execution is ``astream(..., stream_mode=["custom",
  "values"])`` with a fresh ``thread_id``, consumed to the end.

Each measurement runs N executions with C of them in flight, on a fresh planner
or a fresh graph and checkpointer.  Rounds alternate the order of the systems so
that they share the machine's noise; the table shows medians over rounds.

Usage::

    python bench/bench_core.py                      # --n 2000 --rounds 5 --concurrency 50
    python bench/bench_core.py --n 500 --rounds 3
    python bench/bench_core.py --profile cprofile   # planner only, at --concurrency
    python bench/bench_core.py --profile pyinstrument

Without LangGraph installed it measures the planner alone.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import anyio

from planner import Planner, RunContext, TaskPlan, TaskPlanRequest
from planner.testing import FunctionStrategy, sample_plan, sample_request

EVENTS = 5
STRATEGY = "agno"
MESSAGES = tuple(f"Working on step {i} of {EVENTS}" for i in range(1, EVENTS + 1))
PLANNER_EVENT_TYPES = ["status", "status", *["progress"] * EVENTS, "complete", "done"]

One = Callable[[int], Awaitable[None]]


# -- measurement ---------------------------------------------------------------------


@dataclass
class Sample:
    """One measurement: N executions at one concurrency."""

    seconds: float
    latencies: list[float]
    gc_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Executions per second."""
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        """The latency percentile ``q`` (0..100), in seconds."""
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index]


@dataclass
class Series:
    """The samples of one system, mode and concurrency over all rounds."""

    system: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Median executions per second over the rounds."""
        return statistics.median(s.rate for s in self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median of the rounds' rates: how noisy the figure is."""
        rates = [s.rate for s in self.samples]
        return (max(rates) - min(rates)) / statistics.median(rates)

    def latency(self, q: float) -> float:
        """Median over the rounds of the latency percentile ``q``, in seconds."""
        return statistics.median(s.percentile(q) for s in self.samples)

    @property
    def gc_share(self) -> float:
        """Median over the rounds of the share of wall time spent in garbage collection."""
        return statistics.median(s.gc_seconds / s.seconds for s in self.samples)


class GCTimer:
    """Adds up the time the cyclic garbage collector runs, while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def drive(one: One, n: int, concurrency: int) -> Sample:
    """Run ``one(i)`` for i in 0..n-1 with ``concurrency`` of them in flight."""
    latencies = [0.0] * n
    numbers: Iterator[int] = iter(range(n))

    async def worker() -> None:
        # Workers share one iterator: each takes the next number when it is free.
        for i in numbers:
            start = time.perf_counter()
            await one(i)
            latencies[i] = time.perf_counter() - start

    gc.collect()
    with GCTimer() as gc_timer:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, n)):
                tg.start_soon(worker)
        seconds = time.perf_counter() - start
    return Sample(seconds, latencies, gc_timer.seconds)


# -- planner ---------------------------------------------------------------------------


class PlannerWorkload:
    """The planner side: a zero-latency ``FunctionStrategy`` behind a memory planner.

    Args:
        request: what ``generate`` gets (a model, or its JSON data).
        plan: what the strategy returns.
    """

    def __init__(self, request: TaskPlanRequest | dict[str, Any], plan: TaskPlan) -> None:
        self.request = request
        self.plan = plan
        self.plan_json = plan.model_dump(mode="json")

    async def plan_fn(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        """The strategy: 5 progress events, then the plan."""
        for message in MESSAGES:
            await ctx.emit("progress", message=message)
        return self.plan

    def planner(self) -> Planner:
        """A fresh planner with the memory store and the in-process executor."""
        return Planner(
            store="memory://",
            executor="inprocess",
            strategies={STRATEGY: FunctionStrategy(self.plan_fn, name="bench")},
        )

    def execution(self, planner: Planner, mode: str) -> One:
        """One execution in ``mode`` (``wait`` or ``stream``)."""
        request = self.request

        async def by_wait(_i: int) -> None:
            response = await planner.generate(request)
            await planner.wait(response.execution_id, timeout=60)

        async def by_stream(_i: int) -> None:
            response = await planner.generate(request)
            with anyio.fail_after(60):
                async for event in planner.stream(response.execution_id):
                    if event.type in ("error", "cancelled"):
                        raise RuntimeError(f"execution ended with {event.type}: {event.data}")

        return by_wait if mode == "wait" else by_stream

    async def measure(self, mode: str, n: int, concurrency: int) -> Sample:
        """N executions on a fresh planner; every one must have completed."""
        async with self.planner() as planner:
            sample = await drive(self.execution(planner, mode), n, concurrency)
            done = await planner.list(status="completed", limit=n + 1)
            if len(done) != n:
                raise RuntimeError(f"{len(done)} of {n} executions completed")
        return sample

    async def check(self) -> str:
        """Check that one execution streams the expected events and yields the plan."""
        async with self.planner() as planner:
            response = await planner.generate(self.request)
            with anyio.fail_after(30):
                events = [e async for e in planner.stream(response.execution_id)]
                plan = await planner.wait(response.execution_id)
            # A reconnecting client resumes exactly after the last seq it saw.
            resumed = [e async for e in planner.stream(response.execution_id, after=3)]
        types = [e.type for e in events]
        if types != PLANNER_EVENT_TYPES:
            raise RuntimeError(f"planner streamed {types}, expected {PLANNER_EVENT_TYPES}")
        if [e.seq for e in events] != list(range(1, len(events) + 1)):
            raise RuntimeError("planner event seq numbers are not 1..n")
        if events[-2].data["plan"] != self.plan_json or plan != self.plan:
            raise RuntimeError("the planner's plan differs from the strategy's")
        if [e.seq for e in resumed] != list(range(4, len(events) + 1)):
            raise RuntimeError("resuming the stream after seq 3 did not give 4..n")
        return f"{len(events)} events ({', '.join(types)}), plan {_size(self.plan_json)}"


# -- LangGraph ---------------------------------------------------------------------


def langgraph_version() -> str | None:
    """The installed LangGraph version, or None."""
    if importlib.util.find_spec("langgraph") is None:
        return None
    return importlib.metadata.version("langgraph")


class GraphState(TypedDict, total=False):
    """The LangGraph state: the request in, the plan out."""

    request: dict[str, Any]
    plan: dict[str, Any]


class LangGraphWorkload:
    """The same work on LangGraph with its in-memory checkpointer.

    Args:
        request_json: the graph's input (the request as JSON data).
        plan_json: what the node returns into the state.
    """

    def __init__(self, request_json: dict[str, Any], plan_json: dict[str, Any]) -> None:
        self.request_json = request_json
        self.plan_json = plan_json

    def graph(self) -> Any:
        """A freshly compiled one-node graph with a fresh ``InMemorySaver``."""
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.config import get_stream_writer
        from langgraph.graph import END, START, StateGraph

        plan_json = self.plan_json

        async def plan(state: GraphState) -> dict[str, Any]:
            write = get_stream_writer()
            for message in MESSAGES:
                write({"type": "progress", "message": message})
            return {"plan": plan_json}

        builder = StateGraph(GraphState)
        builder.add_node("plan", plan)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", END)
        return builder.compile(checkpointer=InMemorySaver())

    def execution(self, graph: Any) -> One:
        """One execution: ``astream`` on a fresh thread, consumed to the end."""
        request_json = self.request_json

        async def run(_i: int) -> None:
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            async for _mode, _chunk in graph.astream(
                {"request": request_json}, config, stream_mode=["custom", "values"]
            ):
                pass

        return run

    async def measure(self, n: int, concurrency: int) -> Sample:
        """N executions on a fresh graph and checkpointer."""
        graph = self.graph()
        return await drive(self.execution(graph), n, concurrency)

    async def check(self) -> str:
        """Check that one execution streams 5 custom events and checkpoints the plan."""
        graph = self.graph()
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        parts = [
            part
            async for part in graph.astream(
                {"request": self.request_json}, config, stream_mode=["custom", "values"]
            )
        ]
        modes = [mode for mode, _ in parts]
        custom = [chunk for mode, chunk in parts if mode == "custom"]
        if len(custom) != EVENTS or parts[-1][1].get("plan") != self.plan_json:
            raise RuntimeError(f"LangGraph streamed {modes}")
        state = await graph.aget_state(config)
        if state.values.get("plan") != self.plan_json:
            raise RuntimeError("LangGraph's checkpoint does not hold the plan")
        return f"{len(parts)} parts ({', '.join(modes)}), plan checkpointed"


# -- the run -----------------------------------------------------------------------


def _size(data: Any) -> str:
    return f"{len(json.dumps(data, separators=(',', ':'))) / 1024:.1f} KB"


def _label(system: str) -> str:
    return {
        "planner-wait": "planner   generate + wait",
        "planner-stream": "planner   generate + stream",
        "langgraph": "langgraph astream (InMemorySaver)",
    }[system]


async def run_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every system at every concurrency, round after round; print the table."""
    request = sample_request(planning_strategy=STRATEGY)
    plan = sample_plan(request)
    given: TaskPlanRequest | dict[str, Any] = (
        request if args.request == "model" else request.model_dump(mode="json")
    )
    planner = PlannerWorkload(given, plan)
    lg_version = langgraph_version()
    graph = (
        LangGraphWorkload(request.model_dump(mode="json"), planner.plan_json)
        if lg_version
        else None
    )

    print(_environment(lg_version))
    print(f"streaming check, planner:   {await planner.check()}")
    if graph is not None:
        print(f"streaming check, langgraph: {await graph.check()}")
    else:
        print("LangGraph is not installed (pip install -r bench/requirements.txt): planner only")

    systems = ["planner-wait", "planner-stream", *(["langgraph"] if graph else [])]
    levels = sorted({1, args.concurrency})

    async def measure(system: str, n: int, concurrency: int) -> Sample:
        if system == "langgraph":
            assert graph is not None
            return await graph.measure(n, concurrency)
        return await planner.measure(system.removeprefix("planner-"), n, concurrency)

    warm = max(50, args.n // 10)
    for system in systems:
        for level in levels:
            await measure(system, warm, level)

    series = {(s, c): Series(s, c) for s in systems for c in levels}
    for round_no in range(args.rounds):
        order = systems if round_no % 2 == 0 else systems[::-1]
        for level in levels:
            for system in order:
                series[system, level].samples.append(await measure(system, args.n, level))
        sys.stdout.flush()
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    print()
    print(
        f"{'system':<36} {'conc':>4} {'exec/s':>9} {'spread':>7} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'gc':>5}"
    )
    print("-" * 83)
    for level in levels:
        for system in systems:
            s = series[system, level]
            print(
                f"{_label(system):<36} {level:>4} {s.rate:>9.0f} {s.spread:>6.0%}"
                f" {s.latency(50) * 1000:>8.3f} {s.latency(95) * 1000:>8.3f}"
                f" {s.gc_share:>5.0%}"
            )
    result: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "langgraph": lg_version,
        "n": args.n,
        "rounds": args.rounds,
        "request": args.request,
        "series": [
            {
                "system": s.system,
                "concurrency": s.concurrency,
                "executions_per_second": s.rate,
                "spread": s.spread,
                "p50_ms": s.latency(50) * 1000,
                "p95_ms": s.latency(95) * 1000,
                "gc_share": s.gc_share,
            }
            for s in series.values()
        ],
    }
    if graph is None:
        return result

    print("\nthroughput ratio planner / langgraph (target: at least 10x)")
    ratios: dict[str, float] = {}
    for level in levels:
        lg = series["langgraph", level].rate
        wait = series["planner-wait", level].rate / lg
        stream = series["planner-stream", level].rate / lg
        ratios[f"wait@{level}"], ratios[f"stream@{level}"] = wait, stream
        lat = series["langgraph", level].latency(50) / series["planner-wait", level].latency(50)
        print(
            f"  concurrency {level:>3}: generate+wait {wait:5.2f}x,"
            f" generate+stream {stream:5.2f}x   (p50 latency: langgraph/planner {lat:.2f}x)"
        )
    worst_key = min(ratios, key=lambda k: ratios[k])
    worst = ratios[worst_key]
    verdict = "MET" if worst >= 10 else "NOT MET"
    print(
        f"\nverdict: 10x target {verdict}: the planner's lowest ratio is {worst:.2f}x"
        f" ({worst_key.replace('@', ' at concurrency ')})"
    )
    result["ratios"] = ratios
    result["verdict"] = verdict
    return result


def _environment(lg_version: str | None) -> str:
    return (
        f"python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" pydantic {importlib.metadata.version('pydantic')},"
        f" anyio {importlib.metadata.version('anyio')},"
        f" langgraph {lg_version or 'not installed'}"
    )


async def run_profile(args: argparse.Namespace) -> None:
    """Profile the planner (generate + wait) at ``--concurrency``; print the hotspots."""
    request = sample_request(planning_strategy=STRATEGY)
    given: TaskPlanRequest | dict[str, Any] = (
        request if args.request == "model" else request.model_dump(mode="json")
    )
    workload = PlannerWorkload(given, sample_plan(request))
    await workload.measure("wait", max(50, args.n // 10), args.concurrency)  # warm up
    if args.profile == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        sample = await workload.measure("wait", args.n, args.concurrency)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        profile = cProfile.Profile()
        profile.enable()
        sample = await workload.measure("wait", args.n, args.concurrency)
        profile.disable()
        if args.profile_out is not None:
            profile.dump_stats(args.profile_out)
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(args.top)
            print(out.getvalue())
    print(
        f"profiled: {args.n} executions at concurrency {args.concurrency},"
        f" {sample.rate:.0f}/s under the profiler"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the comparison or the profile."""
    parser = argparse.ArgumentParser(
        description="planner (memory + in-process) next to LangGraph (InMemorySaver)"
    )
    parser.add_argument("--n", type=int, default=2000, help="executions per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per system")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="executions in flight (besides 1)"
    )
    parser.add_argument(
        "--request",
        choices=["model", "dict"],
        default="model",
        help="hand generate() a TaskPlanRequest or its JSON data",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--profile",
        choices=["cprofile", "pyinstrument"],
        help="profile the planner at --concurrency instead of comparing",
    )
    parser.add_argument("--profile-out", type=Path, help="cProfile: write the stats here")
    parser.add_argument("--top", type=int, default=30, help="cProfile: lines per listing")
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error("--n, --rounds and --concurrency must be at least 1")
    if args.profile is not None:
        anyio.run(run_profile, args)
        return 0
    result = anyio.run(run_comparison, args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
