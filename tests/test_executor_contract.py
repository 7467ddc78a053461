"""The executor conformance suite against the in-process and thread-pool executors.

The Temporal executor runs the same suite in tests/test_executor_temporal.py,
next to the dev server it needs.
"""

from __future__ import annotations

import pytest

from planner.backends.executors.inprocess import InProcessExecutor
from planner.backends.executors.threadpool import ThreadPoolExecutor
from planner.testing.contracts_executor import ExecutorContract, ExecutorFactory


class TestInProcessExecutor(ExecutorContract):
    @pytest.fixture
    def executor_factory(self) -> ExecutorFactory:
        return lambda: InProcessExecutor(shutdown_timeout=0.2)


class TestThreadPoolExecutor(ExecutorContract):
    @pytest.fixture
    def executor_factory(self) -> ExecutorFactory:
        return lambda: ThreadPoolExecutor(max_workers=2, shutdown_timeout=0.2)


class TestThreadPoolExecutorThroughTheLoop(ExecutorContract):
    """Runs reach the store through the caller's event loop, as a loop-bound store needs."""

    @pytest.fixture
    def executor_factory(self) -> ExecutorFactory:
        return lambda: ThreadPoolExecutor(max_workers=2, shutdown_timeout=0.2, store_access="loop")
