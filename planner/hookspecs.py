"""The plugin hooks: each registers objects; the objects carry the behaviour.

A plugin is a module or object with functions marked ``@planner.hookimpl``,
found through the entry-point group ``planner``::

    [project.entry-points.planner]
    my_store = "my_package.planner_plugin"
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookimpl", "hookspec", "register_executors", "register_stores", "register_strategies"]

hookspec = pluggy.HookspecMarker("planner")
hookimpl = pluggy.HookimplMarker("planner")
"""Marks a plugin's hook implementations."""


@hookspec
def register_strategies(register: Any) -> None:
    """Register strategies: ``register(name, factory)``; ``factory()`` returns a Strategy."""


@hookspec
def register_executors(register: Any) -> None:
    """Register executors: ``register(name, factory)``; ``factory(url, **options)`` returns one."""


@hookspec
def register_stores(register: Any) -> None:
    """Register stores by URL scheme: ``register(scheme, factory)``; ``factory(url, **options)``."""
