"""Built-in stores, registered through the ``planner`` entry point like any plugin."""

from __future__ import annotations

from typing import Any

from planner.hookspecs import hookimpl

__all__ = ["register_stores"]


@hookimpl
def register_stores(register: Any) -> None:
    """Register ``memory://``, ``sqlite:///`` and ``postgresql://``."""
    register("memory", "planner.backends.stores.memory:MemoryStore")
    register("sqlite", "planner.backends.stores.sqlite:SQLiteStore")
    register(
        "postgresql",
        "planner.backends.stores.postgres:PostgresStore",
        extra="postgres",
        aliases=["postgres"],
    )
