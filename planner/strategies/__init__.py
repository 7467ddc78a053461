"""Built-in strategies, registered through the ``planner`` entry point like any plugin."""

from __future__ import annotations

from typing import Any

from planner.hookspecs import hookimpl

__all__ = ["register_strategies"]


@hookimpl
def register_strategies(register: Any) -> None:
    """Register the built-in strategies."""
    register(
        "claude_code_sdk", "planner.strategies.claude_code_sdk:ClaudeCodeStrategy", extra="claude"
    )
    register("agno", "planner.strategies.agno:AgnoStrategy", extra="agno")
