"""The strategy conformance suite against both built-in strategies, on the real SDKs.

The ``claude_code_sdk`` half starts a real CLI session per model answer (one
to two seconds each).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from planner.strategies.agno import AgnoStrategy
from planner.testing.contracts_strategy import StrategyContract, StrategyFactory
from planner.testing.fake_anthropic import Block, ReplyLike, json_reply, structured_output


class TestAgnoStrategy(StrategyContract):
    strategy_name = "agno"

    @pytest.fixture
    def strategy_factory(self) -> StrategyFactory:
        # One agno run per plan; the two-step pipeline has its own tests.
        return lambda: AgnoStrategy(steps=1)

    def reply_with_plan(self, plan: dict[str, Any]) -> list[Block]:
        return [json_reply(plan)]


class TestClaudeCodeStrategy(StrategyContract):
    strategy_name = "claude_code_sdk"
    # The CLI may send its first retry before the strategy has seen the 401 and stopped it.
    max_requests_on_401: ClassVar[int] = 2

    @pytest.fixture
    def strategy_factory(self) -> StrategyFactory:
        pytest.importorskip("claude_agent_sdk")
        from planner.strategies.claude_code_sdk import ClaudeCodeStrategy

        return ClaudeCodeStrategy

    def reply_with_plan(self, plan: dict[str, Any]) -> list[Block]:
        return [structured_output(plan)]

    def replies_without_plan(self, text: str) -> list[ReplyLike]:
        # The CLI asks once more for its StructuredOutput tool before it gives up with text.
        return [text, text]
