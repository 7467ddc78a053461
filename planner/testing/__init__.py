"""What your own tests need: strategies from functions, sample data, conformance suites.

- :class:`FunctionStrategy` wraps a sync or async ``fn(request, ctx)``.
- :func:`sample_request` and :func:`sample_plan` build valid inventories and plans.
- ``StoreContract`` (in ``planner.testing.contracts``) and ``ExecutorContract``
  (in ``planner.testing.contracts_executor``)
  are pytest test classes to subclass with a fixture that builds your backend;
  ``StrategyContract`` (in ``planner.testing.contracts_strategy``) checks a
  model-backed strategy against ``FakeAnthropic``.
- ``FakeAnthropic`` (in ``planner.testing.fake_anthropic``) serves a scripted
  Anthropic Messages API on 127.0.0.1 for the real SDKs to talk to.

The pytest plugin (``planner.testing.pytest_plugin``, loaded automatically)
adds the fixtures ``planner_request``, ``memory_planner`` and ``fake_anthropic``.
"""

from __future__ import annotations

from planner.testing.function import FunctionStrategy, PlanFunction
from planner.testing.samples import sample_analysis, sample_plan, sample_request

__all__ = ["FunctionStrategy", "PlanFunction", "sample_analysis", "sample_plan", "sample_request"]
