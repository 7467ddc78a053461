"""The Temporal executor (``temporal``): runs each execution as a Temporal workflow.

Select it as ``executor="temporal://HOST:PORT/NAMESPACE?task_queue=NAME"`` or
pass a :class:`TemporalExecutor`.  ``submit`` starts a
:class:`~planner.backends.executors.temporal_workflow.PlanGenerationWorkflow`
with the workflow id ``plan-generation-{execution_id}``; its activity runs on
a :class:`TemporalWorker`, in this process (``worker=true``) or in worker
processes (``planner worker --temporal HOST:PORT --store URL``), and writes
every event to the shared store, so any process streams it.

Leases still guard the store: an activity attempt claims the execution with a
lease of its own, so a retried attempt never runs alongside a live one, and
exactly one terminal event is written whatever Temporal retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from planner.backends.executors.inprocess import new_owner_id
from planner.backends.executors.temporal_workflow import (
    ACTIVITY_NAME,
    PlanGenerationInput,
    PlanGenerationOutcome,
    PlanGenerationState,
    PlanGenerationWorkflow,
)
from planner.context import RunContext
from planner.errors import ExecutionStateError, StrategyError
from planner.execution import Execution, ExecutionStatus, utcnow
from planner.interfaces import Executor, Strategy
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.runtime import LeaseKeeper, Runtime
from planner.urls import OptionParser, boolean, integer, number, parse_options, text

if TYPE_CHECKING:
    from planner.interfaces import Store

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TARGET",
    "DEFAULT_TASK_QUEUE",
    "TemporalExecutor",
    "TemporalWorker",
    "connect",
    "parse_url",
]

log = logging.getLogger("planner")

DEFAULT_TARGET = "localhost:7233"
"""The Temporal frontend address when the URL names none."""
DEFAULT_NAMESPACE = "default"
"""The namespace when the URL names none."""
DEFAULT_TASK_QUEUE = "planner"
"""The task queue when the URL names none."""


def _split_url(url: str) -> tuple[str, str, str]:
    if url == "temporal":
        return DEFAULT_TARGET, DEFAULT_NAMESPACE, ""
    if url.startswith("temporal?"):
        return DEFAULT_TARGET, DEFAULT_NAMESPACE, url.partition("?")[2]
    parts = urlsplit(url)
    if parts.scheme != "temporal":
        raise ValueError(
            f"not a Temporal executor URL: {url!r} "
            "(expected 'temporal://HOST:PORT/NAMESPACE?task_queue=NAME')"
        )
    target = parts.netloc or DEFAULT_TARGET
    namespace = parts.path.strip("/") or DEFAULT_NAMESPACE
    if "/" in namespace:
        raise ValueError(f"a Temporal URL has one path segment, the namespace: {url!r}")
    return target, namespace, parts.query


def parse_url(url: str) -> tuple[str, str, str, dict[str, Any]]:
    """Split ``temporal://HOST:PORT/NAMESPACE?task_queue=NAME&opt=value``.

    Returns:
        ``(target, namespace, task_queue, other_options)``: missing parts get the defaults;
        the other options are typed (``max_attempts=5`` gives ``{"max_attempts": 5}``).

    Raises:
        ValueError: not a ``temporal`` URL, or an unknown option or bad value in its query.
    """
    target, namespace, query = _split_url(url)
    options = parse_options(query, _OPTIONS, plugin="Temporal executor")
    task_queue = options.pop("task_queue", DEFAULT_TASK_QUEUE)
    return target, namespace, task_queue, options


async def connect(target: str = DEFAULT_TARGET, namespace: str = DEFAULT_NAMESPACE) -> Client:
    """Connect a Temporal client with the pydantic data converter the workflow needs."""
    return await Client.connect(target, namespace=namespace, data_converter=pydantic_data_converter)


def _with_pydantic(client: Client) -> Client:
    if client.data_converter is pydantic_data_converter:
        return client
    config = client.config()
    config["data_converter"] = pydantic_data_converter
    return Client(**config)


_OPTIONS: dict[str, OptionParser] = {
    "task_queue": text,
    "worker": boolean,
    "max_attempts": integer,
    "heartbeat_timeout": number,
    "start_to_close_timeout": number,
    "retry_initial_interval": number,
    "retry_max_interval": number,
    "max_concurrent_activities": integer,
    "graceful_shutdown_timeout": number,
}


class TemporalExecutor(Executor):
    """Starts one Temporal workflow per execution; workers run them against the shared store.

    Args:
        url: ``temporal://HOST:PORT/NAMESPACE?task_queue=NAME``; the query may also set
            the keyword options below (``&worker=true&max_attempts=5``).
        client: a connected Temporal client to use instead of connecting to the URL's
            address (its data converter is replaced by the pydantic one).
        task_queue: overrides the URL's task queue.
        worker: also run a :class:`TemporalWorker` in this process, on this Planner's
            store and strategies.
        max_attempts: attempts a strategy failure marked ``retryable`` may use.
        heartbeat_timeout: seconds without a heartbeat before Temporal gives a killed
            worker's activity to another worker.
        start_to_close_timeout: seconds one activity attempt may take (default: the
            Planner's ``timeout`` plus 60).
        retry_initial_interval, retry_max_interval: the retry backoff, in seconds.
        max_concurrent_activities: runs the in-process worker takes at once.
        graceful_shutdown_timeout: seconds the in-process worker lets runs finish on close
            before handing them over to other workers.

    Raises:
        ValueError: a bad URL or option.
    """

    name = "temporal"
    owner = None  # Temporal recovers lost runs; leases are taken by its workers

    def __init__(
        self,
        url: str = "temporal",
        *,
        client: Client | None = None,
        task_queue: str | None = None,
        worker: bool | None = None,
        max_attempts: int | None = None,
        heartbeat_timeout: float | None = None,
        start_to_close_timeout: float | None = None,
        retry_initial_interval: float | None = None,
        retry_max_interval: float | None = None,
        max_concurrent_activities: int | None = None,
        graceful_shutdown_timeout: float | None = None,
    ) -> None:
        target, namespace, query = _split_url(url)
        parsed = parse_options(
            query,
            _OPTIONS,
            plugin="Temporal executor",
            keywords={
                "task_queue": task_queue,
                "worker": worker,
                "max_attempts": max_attempts,
                "heartbeat_timeout": heartbeat_timeout,
                "start_to_close_timeout": start_to_close_timeout,
                "retry_initial_interval": retry_initial_interval,
                "retry_max_interval": retry_max_interval,
                "max_concurrent_activities": max_concurrent_activities,
                "graceful_shutdown_timeout": graceful_shutdown_timeout,
            },
        )

        self.target = target
        self.namespace = namespace
        self.task_queue: str = parsed.get("task_queue", DEFAULT_TASK_QUEUE)
        self.run_worker: bool = parsed.get("worker", False)
        self.max_attempts: int = parsed.get("max_attempts", 3)
        self.heartbeat_timeout: float = parsed.get("heartbeat_timeout", 10.0)
        self.start_to_close_timeout: float | None = parsed.get("start_to_close_timeout", None)
        self.retry_initial_interval: float = parsed.get("retry_initial_interval", 1.0)
        self.retry_max_interval: float = parsed.get("retry_max_interval", 30.0)
        self.max_concurrent_activities: int = parsed.get("max_concurrent_activities", 100)
        self.graceful_shutdown_timeout: float = parsed.get("graceful_shutdown_timeout", 10.0)
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for key in ("heartbeat_timeout", "retry_initial_interval", "retry_max_interval"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        self._given_client = client
        self.client: Client | None = None
        self.worker: TemporalWorker | None = None
        self._runtime: Runtime | None = None

    def __repr__(self) -> str:
        return (
            f"TemporalExecutor(temporal://{self.target}/{self.namespace}"
            f"?task_queue={self.task_queue}, worker={self.run_worker})"
        )

    async def start(self, runtime: Runtime) -> None:
        """Connect to Temporal and, with ``worker=True``, start a worker in this process."""
        self._runtime = runtime
        if self.client is None:
            self.client = (
                _with_pydantic(self._given_client)
                if self._given_client is not None
                else await connect(self.target, self.namespace)
            )
        if self.run_worker and self.worker is None:
            self.worker = TemporalWorker(
                runtime,
                client=self.client,
                task_queue=self.task_queue,
                max_concurrent_activities=self.max_concurrent_activities,
                graceful_shutdown_timeout=self.graceful_shutdown_timeout,
            )
            await self.worker.start()

    def _input(self, execution: Execution) -> PlanGenerationInput:
        assert self._runtime is not None
        start_to_close = self.start_to_close_timeout or self._runtime.settings.timeout + 60.0
        return PlanGenerationInput(
            execution_id=execution.id,
            max_attempts=self.max_attempts,
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=self.heartbeat_timeout,
            retry_initial_interval=self.retry_initial_interval,
            retry_max_interval=self.retry_max_interval,
        )

    def _client(self) -> Client:
        if self.client is None or self._runtime is None:
            raise RuntimeError("the executor is not started")
        return self.client

    async def submit(self, execution: Execution) -> str:
        """Start the execution's workflow (once: a second submit finds it started).

        Raises:
            RuntimeError: the executor is not started.
            temporalio.service.RPCError: Temporal refused or could not be reached.
        """
        client = self._client()
        try:
            await client.start_workflow(
                PlanGenerationWorkflow.run,
                self._input(execution),
                id=execution.workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            pass  # submitted before: the workflow runs (or ran) the execution once
        return execution.workflow_id

    def handle(
        self, execution_id: str
    ) -> WorkflowHandle[PlanGenerationWorkflow, PlanGenerationOutcome]:
        """Return the Temporal handle of an execution's workflow.

        Raises:
            RuntimeError: the executor is not started.
        """
        from planner.planner import workflow_id_for

        return self._client().get_workflow_handle_for(
            PlanGenerationWorkflow.run, workflow_id_for(execution_id)
        )

    async def cancel(self, execution: Execution) -> None:
        """Cancel the execution's workflow; its activity records the cancellation."""
        if self.worker is not None:
            self.worker.cancel_local(execution.id)
        try:
            await self._client().get_workflow_handle(execution.workflow_id).cancel()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:  # NOT_FOUND: it has already ended
                raise

    async def get_state(self, execution_id: str) -> PlanGenerationState:
        """Ask the execution's workflow for its state (the ``get_state`` query)."""
        return await self.handle(execution_id).query(PlanGenerationWorkflow.get_state)

    async def result(self, execution_id: str) -> PlanGenerationOutcome:
        """Wait for the execution's workflow to end and return its outcome.

        Raises:
            temporalio.client.WorkflowFailureError: the workflow failed or was cancelled.
        """
        return await self.handle(execution_id).result()

    async def close(self) -> None:
        """Stop the in-process worker, if any (runs in flight get its grace period)."""
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.close()


# The workflow module imports only temporalio and pydantic, but it lives in the
# planner package, whose __init__ imports anyio: planner modules are passed
# through the sandbox (they keep no state a workflow could see) instead of
# being imported again for every workflow run.
_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("planner")
)


class _Keeper(LeaseKeeper):
    """A lease keeper that also lets the worker stop one run on request."""

    def __init__(self, store: Store, settings: Any) -> None:
        super().__init__(store, settings)
        self.stoppers: dict[str, Callable[[bool], None]] = {}

    def add(self, execution_id: str, owner: str, lost: Callable[[bool], None]) -> None:
        """Keep the run's lease and remember how to stop it."""
        super().add(execution_id, owner, lost)
        self.stoppers[execution_id] = lost

    def discard(self, execution_id: str) -> None:
        """Forget the run."""
        super().discard(execution_id)
        self.stoppers.pop(execution_id, None)


class _RetryGuard:
    """Wraps a strategy: a ``retryable`` failure with attempts left hands the run back to Temporal.

    It releases the lease before the failure reaches the runtime, so the runtime's
    outcome write is refused (the lease is gone) and no terminal event is written;
    the activity then fails retryably and Temporal runs it again after a backoff.
    """

    def __init__(self, strategy: Strategy, release: Callable[[], Any], max_attempts: int) -> None:
        self.strategy = strategy
        self.release = release
        self.max_attempts = max_attempts
        self.retrying: StrategyError | None = None

    async def plan(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan | dict[str, Any]:
        try:
            return await self.strategy.plan(request, ctx)
        except StrategyError as exc:
            if exc.retryable and ctx.attempt < self.max_attempts:
                await ctx.emit(
                    "progress",
                    stage="retrying",
                    message=f"Attempt {ctx.attempt} of {self.max_attempts} failed, retrying: {exc}",
                )
                if await self.release():
                    self.retrying = exc
            raise


class TemporalWorker:
    """Runs plan generation workflows and their activity from a task queue.

    Args:
        runtime: the job to run (a Planner's ``runtime``: its store, strategies, settings).
        client: a connected client (else one is connected to ``target``/``namespace``).
        target, namespace, task_queue: where to poll.
        max_concurrent_activities: runs taken at once.
        graceful_shutdown_timeout: seconds :meth:`close` lets runs finish; runs still
            going are then handed over to other workers (their lease is released and
            Temporal retries them), not cancelled.

    Use ``async with TemporalWorker(...)``, or :meth:`run` to serve until cancelled.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        client: Client | None = None,
        target: str = DEFAULT_TARGET,
        namespace: str = DEFAULT_NAMESPACE,
        task_queue: str = DEFAULT_TASK_QUEUE,
        max_concurrent_activities: int = 100,
        graceful_shutdown_timeout: float = 10.0,
    ) -> None:
        self.runtime = runtime
        self.target = target
        self.namespace = namespace
        self.task_queue = task_queue
        self.max_concurrent_activities = max_concurrent_activities
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.owner = new_owner_id("temporal")
        self._given_client = client
        self.client: Client | None = None
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._keeper: _Keeper | None = None
        self._keeper_task: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        """The store the activity writes to."""
        return self.runtime.store

    async def start(self) -> None:
        """Connect and start polling the task queue in a background task."""
        if self._worker is not None:
            return
        if self.client is None:
            self.client = (
                _with_pydantic(self._given_client)
                if self._given_client is not None
                else await connect(self.target, self.namespace)
            )
        self._keeper = _Keeper(self.runtime.store, self.runtime.settings)
        loop = asyncio.get_running_loop()
        self._keeper_task = loop.create_task(self._keeper.run())
        self._worker = Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[PlanGenerationWorkflow],
            workflow_runner=_RUNNER,
            activities=[self.run_plan_generation],
            max_concurrent_activities=self.max_concurrent_activities,
            graceful_shutdown_timeout=timedelta(seconds=self.graceful_shutdown_timeout),
            max_heartbeat_throttle_interval=timedelta(seconds=2),
            default_heartbeat_throttle_interval=timedelta(seconds=2),
        )
        self._worker_task = loop.create_task(self._worker.run())

    async def run(self) -> None:
        """Start, serve until cancelled, then shut down gracefully."""
        await self.start()
        assert self._worker_task is not None
        try:
            await asyncio.shield(self._worker_task)
        finally:
            await asyncio.shield(asyncio.ensure_future(self.close()))

    async def close(self) -> None:
        """Stop polling; let runs finish for the grace period, then hand them over."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.shutdown()
        if self._worker_task is not None:
            task, self._worker_task = self._worker_task, None
            with contextlib.suppress(BaseException):
                await task
        if self._keeper_task is not None:
            task2, self._keeper_task = self._keeper_task, None
            task2.cancel()
            await asyncio.wait([task2])

    async def __aenter__(self) -> TemporalWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def cancel_local(self, execution_id: str) -> bool:
        """Stop the execution's run if it is in flight on this worker (as a cancel request).

        Returns:
            Whether a run was found.
        """
        stop = self._keeper.stoppers.get(execution_id) if self._keeper else None
        if stop is None:
            return False
        stop(True)
        return True

    # -- the activity -------------------------------------------------------------------

    async def _release(self, execution_id: str, owner: str) -> bool:
        """Give up the lease so the next attempt claims at once; False if it is not ours."""
        try:
            await self.store.update(
                execution_id, owner=owner, lease_owner=None, lease_expires_at=None
            )
        except ExecutionStateError:
            return False
        return True

    @staticmethod
    async def _heartbeat(interval: float) -> None:
        while True:
            activity.heartbeat()
            await anyio.sleep(interval)

    @activity.defn(name=ACTIVITY_NAME)
    async def run_plan_generation(self, data: PlanGenerationInput) -> PlanGenerationOutcome:
        """Run one attempt of the execution against the store, as the workflow's activity.

        Raises:
            ApplicationError: ``PlanFailed`` / ``PlanCancelled`` (not retried) when the
                execution ended that way; a retryable error when the run must happen
                again (a lease still held by a lost worker, a ``retryable`` strategy
                failure, this worker shutting down).
        """
        assert self._keeper is not None
        info = activity.info()
        execution_id = data.execution_id
        owner = f"{self.owner}:{info.attempt}"
        base = self.runtime
        guards: list[_RetryGuard] = []

        def strategies(name: str) -> Strategy:
            guard = _RetryGuard(
                base.strategies(name),
                lambda: self._release(execution_id, owner),
                data.max_attempts,
            )
            guards.append(guard)
            return guard

        runtime = Runtime(base.store, strategies, base.settings)
        run = asyncio.ensure_future(runtime.run(execution_id, owner=owner, keeper=self._keeper))
        beat = asyncio.ensure_future(self._heartbeat(max(data.heartbeat_timeout / 4, 0.05)))
        handed_over = False
        try:
            try:
                await asyncio.shield(run)
            except asyncio.CancelledError:
                if not run.done():
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    details = activity.cancellation_details()
                    requested = details is not None and details.cancel_requested
                    if activity.is_worker_shutdown() or not requested:
                        # Not a cancel request: a shutdown or a timeout. Hand the run
                        # over so Temporal retries it elsewhere without a terminal event.
                        handed_over = await self._release(execution_id, owner)
                    else:  # cancelled through Temporal: record it as a cancel request
                        with contextlib.suppress(ExecutionStateError):
                            await self.store.update(execution_id, cancel_requested=True)
                    run.cancel()
                    await asyncio.wait([run])
                    if requested and not handed_over:
                        raise
        finally:
            beat.cancel()
        record = await self.store.get(execution_id)
        outcome = PlanGenerationOutcome(
            execution_id=execution_id, status=record.status.value, attempt=record.attempt
        )
        if record.status is ExecutionStatus.COMPLETED:
            return outcome
        if record.status is ExecutionStatus.FAILED:
            error = record.error
            raise ApplicationError(
                f"plan generation failed: {error.type}: {error.message}" if error else "failed",
                error.model_dump(mode="json") if error else None,
                type="PlanFailed",
                non_retryable=True,
            )
        if record.status is ExecutionStatus.CANCELLED:
            raise ApplicationError(
                "plan generation cancelled", type="PlanCancelled", non_retryable=True
            )
        # Still running under another owner (a lost worker's lease not yet expired),
        # handed over, or released for a retryable failure: run it again later.
        if handed_over:
            raise ApplicationError(
                "the worker shut down; another attempt follows", type="HandedOver"
            )
        retrying = next((g.retrying for g in guards if g.retrying is not None), None)
        if retrying is not None:
            raise ApplicationError(
                f"retryable strategy failure: {retrying}", type="RetryableStrategyError"
            )
        delay = 0.5
        if record.lease_expires_at is not None:
            delay = max((record.lease_expires_at - utcnow()).total_seconds(), 0.1)
        raise ApplicationError(
            f"execution {execution_id} is leased to {record.lease_owner}; retrying when it expires",
            type="LeaseHeld",
            next_retry_delay=timedelta(seconds=min(delay, 60.0)),
        )
