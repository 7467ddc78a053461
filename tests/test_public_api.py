"""``__all__`` lists exactly the public names, and each has a docstring."""

from __future__ import annotations

import importlib
import inspect

import pytest

import planner

MODULES = [
    "planner",
    "planner.models",
    "planner.plan",
    "planner.events",
    "planner.execution",
    "planner.errors",
    "planner.interfaces",
    "planner.plugins",
    "planner.settings",
    "planner.context",
    "planner.runtime",
    "planner.store_helpers",
    "planner.testing",
    "planner.testing.contracts",
    "planner.testing.contracts_executor",
    "planner.testing.contracts_strategy",
    "planner.render",
    "planner.plan_diff",
    "planner.sync",
    "planner.urls",
]


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(planner).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name not in {"annotations"}
    }
    assert set(planner.__all__) == public | {"__version__"}
    assert len(set(planner.__all__)) == len(planner.__all__)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_exported_name_exists_and_is_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"
