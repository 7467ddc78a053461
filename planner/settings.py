"""Settings a Planner hands to its runs and strategies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Settings"]


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value or None


@dataclass(frozen=True)
class Settings:
    """Per-Planner settings; strategies read them from ``ctx.settings``.

    Attributes:
        timeout: seconds one run may take before it fails with ``timeout``.
        lease_ttl: seconds a run's lease lasts without renewal (crash recovery).
        default_strategy: the strategy for requests whose ``planning_strategy`` is null.
        model: the model for ``quick_mode=False`` (env ``PLANNER_MODEL``).
        quick_model: the model for ``quick_mode=True`` (env ``PLANNER_QUICK_MODEL``).
        api_key: the model API key (env ``ANTHROPIC_API_KEY``, read by the SDKs).
        base_url: the model API endpoint (env ``ANTHROPIC_BASE_URL``).
        options: strategy-specific settings, by key.
    """

    timeout: float = 600.0
    lease_ttl: float = 30.0
    default_strategy: str = "claude_code_sdk"
    model: str | None = field(default_factory=lambda: _env("PLANNER_MODEL"))
    quick_model: str | None = field(default_factory=lambda: _env("PLANNER_QUICK_MODEL"))
    api_key: str | None = None
    base_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, got {self.lease_ttl}")

    def model_for(self, quick_mode: bool) -> str | None:
        """Return the configured model for a request's ``quick_mode``, if any."""
        return self.quick_model if quick_mode else self.model
