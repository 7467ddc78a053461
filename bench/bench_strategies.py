"""What the strategies cost on top of the model, and the Claude CLI's start-up.

The model is :class:`~planner.testing.fake_anthropic.FakeAnthropic` answering
at once, so what is left is the library: the SDK (agno and anthropic, or the
Claude Agent SDK and its CLI), the shared prompt and repair code, the events,
the store and the executor.  Note that the fake runs in a thread of the same
process, so its JSON and HTTP work shares the interpreter with the planner.

Measured per strategy (memory store, in-process executor, one plan at a time,
after one warm-up plan that pays the imports; the import cost is printed apart):

- **time per plan**: from ``Planner.generate()`` to the ``complete`` event
  received on ``Planner.stream()``; medians and p90 over ``--n`` plans;
- **Python memory per plan**: the peak of ``tracemalloc`` during one plan,
  above what was allocated before it (a separate pass of ``--mem-n`` plans,
  since tracing slows everything down; it includes the fake's parsing of the
  requests, which runs in this process), and the process's RSS growth over the
  timed plans, which includes the memory store keeping every execution and its
  events (a leak shows as growth that keeps rising with ``--n``);
- for ``claude_code_sdk``: the CLI subprocess's peak RSS.

Cases: ``agno`` in quick mode (one model call), ``agno`` in its default two
steps (an analysis with a tool call, then the plan: three model calls) and
``claude_code_sdk`` (one CLI session, one model call).

The CLI start-up (``--startup-n`` sessions of ``claude_agent_sdk.query()``
with a one-line answer): time to the CLI's ``init`` message and to its
result, **cold** (a new empty HOME and config directory for every session, as
the strategy runs it) and **warm** (one HOME and config directory reused); the
first session of the process is printed apart.

Usage::

    python bench/bench_strategies.py                 # --n 20 --claude-n 5 --startup-n 5
    python bench/bench_strategies.py --n 50 --claude-n 10 --startup-n 10
    python bench/bench_strategies.py --skip-claude
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from planner import Planner, TaskPlanRequest
from planner.strategies.base import default_models
from planner.testing.fake_anthropic import (
    FakeAnthropic,
    FakeReply,
    RecordedRequest,
    json_reply,
    structured_output,
    text,
    tool_use,
)
from planner.testing.samples import sample_analysis, sample_plan, sample_request

API_KEY = "bench-key"


# -- the scripted model --------------------------------------------------------------


def analysis_for(request: TaskPlanRequest) -> dict[str, Any]:
    """A valid step-1 answer of the agno pipeline for the sample request."""
    return sample_analysis(task_summary=request.description)


def agno_model(request: TaskPlanRequest) -> Callable[[RecordedRequest], FakeReply]:
    """Answer every call of the agno pipeline at once: step 1 (tools offered) or step 2."""
    plan = json_reply(sample_plan(request).model_dump(mode="json"))
    analysis = json_reply(analysis_for(request))

    def answer(sent: RecordedRequest) -> FakeReply:
        if not sent.tool_names:
            return FakeReply([plan])
        if sent.tool_results:  # the tool answered: hand over the analysis
            return FakeReply([analysis])
        return FakeReply([tool_use("search_agents_by_capability", {"capability": "postgresql"})])

    return answer


def claude_model(request: TaskPlanRequest) -> Callable[[RecordedRequest], FakeReply]:
    """Answer every CLI turn with the plan through the ``StructuredOutput`` tool."""
    plan = structured_output(sample_plan(request).model_dump(mode="json"))
    return lambda sent: FakeReply([plan])


# -- per-plan overhead ---------------------------------------------------------------


@dataclass
class Case:
    """One way of planning: a strategy, a request and the scripted model for it."""

    name: str
    request: TaskPlanRequest
    model: Callable[[TaskPlanRequest], Callable[[RecordedRequest], FakeReply]]
    calls: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Figures:
    """What one case measured."""

    import_s: float | None = None
    first_s: float = 0.0
    times: list[float] = field(default_factory=list)
    py_peak: list[int] = field(default_factory=list)
    rss_growth: int = 0
    child_rss_kb: int = 0


def rss_bytes() -> int:
    """The process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def one_plan(planner: Planner, request: TaskPlanRequest) -> float:
    """Generate one plan; return the seconds from ``generate`` to the ``complete`` event."""
    start = time.perf_counter()
    response = await planner.generate(request)
    async for event in planner.stream(response.execution_id):
        if event.type == "complete":
            return time.perf_counter() - start
        if event.type in ("error", "cancelled"):
            raise RuntimeError(f"the plan failed: {event.data}")
    raise RuntimeError("the stream ended without a terminal event")


async def measure_case(case: Case, n: int, mem_n: int) -> Figures:
    """Time ``n`` plans and trace the memory of ``mem_n`` more."""
    figures = Figures()
    module = (
        "agno.models.anthropic" if case.request.planning_strategy == "agno" else "claude_agent_sdk"
    )
    if module not in sys.modules:  # the first case of a strategy pays its import
        start = time.perf_counter()
        __import__(module)
        figures.import_s = time.perf_counter() - start
    with FakeAnthropic(case.model(case.request)) as fake:
        async with Planner(
            "memory://",
            "inprocess",
            api_key=API_KEY,
            base_url=fake.base_url,
            options=case.options,
        ) as planner:
            sent = 0

            async def plan() -> float:
                # The fake records every request (~100 KiB each here): forget them, so
                # that the RSS growth is the planner's own.
                nonlocal sent
                seconds = await one_plan(planner, case.request)
                sent += len(fake.messages_requests)
                fake.reset()
                return seconds

            figures.first_s = await plan()
            gc.collect()
            rss_before = rss_bytes()
            for _ in range(n):
                figures.times.append(await plan())
            gc.collect()
            figures.rss_growth = rss_bytes() - rss_before
            tracemalloc.start()
            try:
                for _ in range(mem_n):
                    gc.collect()
                    base, _ = tracemalloc.get_traced_memory()
                    tracemalloc.reset_peak()
                    await plan()
                    figures.py_peak.append(tracemalloc.get_traced_memory()[1] - base)
            finally:
                tracemalloc.stop()
    expected = (1 + n + mem_n) * case.calls
    if sent != expected:
        raise RuntimeError(f"{case.name}: {sent} model calls, expected {expected}")
    figures.child_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return figures


# -- the CLI's start-up --------------------------------------------------------------


@dataclass
class Startup:
    """Seconds from ``query()`` to the CLI's init message and to its result."""

    init: list[float] = field(default_factory=list)
    result: list[float] = field(default_factory=list)


async def cli_session(base_url: str, root: str) -> tuple[float, float]:
    """Run one ``query()`` whose answer is one line; return (to init, to result)."""
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, SystemMessage, query

    from planner.strategies.claude_code_sdk import ISOLATION_ENV

    for sub in ("home", "config", "work"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    options = ClaudeAgentOptions(
        model=default_models()[0],
        tools=[],
        setting_sources=[],
        permission_mode="dontAsk",
        max_turns=1,
        cwd=os.path.join(root, "work"),
        env={
            **ISOLATION_ENV,
            "HOME": os.path.join(root, "home"),
            "CLAUDE_CONFIG_DIR": os.path.join(root, "config"),
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": base_url,
        },
    )
    start = time.perf_counter()
    init = result = 0.0
    async for message in query(prompt="Say ok.", options=options):
        if isinstance(message, SystemMessage) and message.subtype == "init" and not init:
            init = time.perf_counter() - start
        if isinstance(message, ResultMessage):
            result = time.perf_counter() - start
            if message.is_error:
                raise RuntimeError(f"the CLI session failed: {message.result}")
    return init, result


async def measure_startup(n: int) -> tuple[tuple[float, float], Startup, Startup]:
    """Return the first session of the process, and ``n`` cold and ``n`` warm ones."""
    cold, warm = Startup(), Startup()
    with FakeAnthropic(default=FakeReply([text("ok")])) as fake:
        first_root = tempfile.mkdtemp(prefix="bench-claude-")
        warm_root = tempfile.mkdtemp(prefix="bench-claude-")
        try:
            first = await cli_session(fake.base_url, first_root)
            for _ in range(n):  # interleaved, so both share the machine's noise
                root = tempfile.mkdtemp(prefix="bench-claude-")
                try:
                    init, result = await cli_session(fake.base_url, root)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                cold.init.append(init)
                cold.result.append(result)
                init, result = await cli_session(fake.base_url, warm_root)
                warm.init.append(init)
                warm.result.append(result)
        finally:
            shutil.rmtree(first_root, ignore_errors=True)
            shutil.rmtree(warm_root, ignore_errors=True)
    return first, cold, warm


# -- report --------------------------------------------------------------------------


def ms(seconds: float) -> str:
    """Seconds as milliseconds, for the tables."""
    return f"{seconds * 1000:8.1f}"


def p90(values: list[float]) -> float:
    """The 90th percentile (the largest value below 10 samples)."""
    if len(values) < 10:
        return max(values)
    return statistics.quantiles(values, n=10)[-1]


def mib(n: float) -> str:
    """Bytes as MiB."""
    return f"{n / 2**20:7.2f}"


async def run(args: argparse.Namespace) -> None:
    """Measure every case, then the CLI start-up, and print the tables."""
    agno_quick = sample_request(planning_strategy="agno", quick_mode=True)
    agno_full = sample_request(planning_strategy="agno")
    claude = sample_request(planning_strategy="claude_code_sdk")
    cases = [
        Case("agno, quick mode (1 call)", agno_quick, agno_model, 1),
        Case("agno, 2 steps (3 calls)", agno_full, agno_model, 3),
    ]
    if not args.skip_claude:
        cases.append(Case("claude_code_sdk (1 session)", claude, claude_model, 1))

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print("\nper plan, from generate() to the complete event (the model answers at once)")
    header = (
        f"{'case':30} {'import ms':>9} {'1st ms':>8} {'p50 ms':>8} {'p90 ms':>8}"
        f" {'py peak MiB':>11} {'RSS +MiB':>8}"
    )
    print(header)
    for case in cases:
        n = args.claude_n if case.request.planning_strategy == "claude_code_sdk" else args.n
        figures = await measure_case(case, n, args.mem_n)
        imported = "-" if figures.import_s is None else ms(figures.import_s)
        print(
            f"{case.name:30} {imported:>9} {ms(figures.first_s)}"
            f" {ms(statistics.median(figures.times))} {ms(p90(figures.times))}"
            f" {mib(statistics.median(figures.py_peak)):>11} {mib(figures.rss_growth):>8}"
        )
        if case.request.planning_strategy == "claude_code_sdk":
            print(f"{'':30} CLI subprocess peak RSS: {figures.child_rss_kb / 1024:.0f} MiB")

    if args.skip_claude:
        return
    first, cold, warm = await measure_startup(args.startup_n)
    print(f"\nClaude CLI start-up, {args.startup_n} sessions each (claude_agent_sdk.query())")
    print(f"{'':42} {'to init ms':>10} {'to result ms':>12}")
    print(f"{'first session (cold, after the plans)':42} {ms(first[0]):>10} {ms(first[1]):>12}")
    for label, timing in (("cold (new HOME and config dir)", cold), ("warm (reused)", warm)):
        print(
            f"{label + ', median':42} {ms(statistics.median(timing.init)):>10}"
            f" {ms(statistics.median(timing.result)):>12}"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="timed plans per agno case")
    parser.add_argument("--claude-n", type=int, default=5, help="timed claude_code_sdk plans")
    parser.add_argument("--mem-n", type=int, default=3, help="traced plans per case (memory)")
    parser.add_argument("--startup-n", type=int, default=5, help="CLI sessions, cold and warm")
    parser.add_argument("--skip-claude", action="store_true", help="measure agno only")
    args = parser.parse_args(argv)
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
