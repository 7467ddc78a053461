"""The shared planning logic: prompts, JSON extraction, repair, models, retries, cost.

A minimal strategy written on ``planner.strategies.base`` with the plain
anthropic SDK runs through a real Planner against the scripted Messages API;
the SDK's own exceptions, produced over HTTP, feed ``is_transient``.
"""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import pytest
from anthropic.types.model_param import ModelParam

from planner import Planner, RunContext
from planner.errors import StrategyError
from planner.events import Event
from planner.execution import Execution, ExecutionStatus
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.settings import Settings
from planner.strategies import base
from planner.strategies.base import (
    SYSTEM_PROMPT,
    ModelAPIError,
    ModelOutputError,
    Price,
    anthropic_settings,
    coerce_plan,
    default_models,
    extract_json,
    fill_llm_costs,
    is_transient,
    model_for,
    plan_schema,
    plan_with_repair,
    price_for,
    record_call_usage,
    render_request,
    with_retries,
)
from planner.testing import FunctionStrategy
from planner.testing.fake_anthropic import (
    Drop,
    FakeAnthropic,
    FakeError,
    FakeReply,
    Malformed,
    Usage,
    json_reply,
    text,
)
from planner.testing.samples import sample_plan, sample_request

# -- a strategy on base.py, with the plain anthropic SDK --------------------------------------


async def sdk_strategy(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    api_key, base_url = anthropic_settings(ctx)
    model = model_for(ctx)
    async with anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, max_retries=0
    ) as client:

        async def ask(prompt: str, attempt: int) -> object:
            async def call() -> anthropic.types.Message:
                return await client.messages.create(
                    model=model,
                    max_tokens=4000,
                    system=[
                        {
                            "type": "text",
                            "text": SYSTEM_PROMPT,
                            "cache_control": {"type": "ephemeral"},
                        }
                    ],
                    messages=[{"role": "user", "content": prompt}],
                )

            message = await with_retries(ctx, call)
            usage = message.usage
            record_call_usage(
                ctx,
                message.model,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_input_tokens or 0,
                usage.cache_creation_input_tokens or 0,
            )
            return "".join(b.text for b in message.content if b.type == "text")

        plan = await plan_with_repair(ctx, ask, max_attempts=3, step="plan")
    return fill_llm_costs(plan, ctx)


@pytest.fixture
async def planner(fake_anthropic: FakeAnthropic) -> AsyncIterator[Planner]:
    strategy = FunctionStrategy(sdk_strategy)
    async with Planner(
        strategies={"sdk": strategy},
        api_key="test",
        base_url=fake_anthropic.base_url,
        options={"api_retry_delay": 0.01},
    ) as p:
        yield p


async def run(planner: Planner, request: TaskPlanRequest) -> tuple[Execution, list[Event]]:
    response = await planner.generate(request)
    with anyio.fail_after(60):
        async for _ in planner.stream(response.execution_id):
            pass
    return await planner.get(response.execution_id), await planner.events(response.execution_id)


def plan_data(request: TaskPlanRequest) -> dict[str, Any]:
    return sample_plan(request).model_dump(mode="json")


async def test_repair_loop_sends_structured_errors_back_then_succeeds(
    planner: Planner, fake_anthropic: FakeAnthropic
) -> None:
    request = sample_request(planning_strategy="sdk")
    bad = plan_data(request)
    bad["recommended_execution"]["recommended_worker_queue_id"] = "queue-prod-a"
    bad["complexity"]["story_points"] = 99
    fake_anthropic.add(
        "no plan here",
        json_reply(bad),
        FakeReply([text("Here you go:\n```json\n" + json.dumps(plan_data(request)) + "\n```")]),
    )

    execution, events = await run(planner, request)

    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    invalid = [e.data for e in events if e.type == "validation_error"]
    assert [(d["step"], d["attempt"], d["retrying"]) for d in invalid] == [
        ("plan", 1, True),
        ("plan", 2, True),
    ]
    assert "no JSON object" in invalid[0]["error"]
    assert invalid[1]["errors"][0]["loc"] == ["complexity", "story_points"]
    third = fake_anthropic.messages_requests[2].last_user_text
    assert "story_points" in third and "no plan here" not in third
    assert "complexity" in third and "rejected" in third
    request_2 = fake_anthropic.messages_requests[1].last_user_text
    assert "no plan here" in request_2


async def test_queue_preference_violation_is_repaired(
    planner: Planner, fake_anthropic: FakeAnthropic
) -> None:
    request = sample_request(planning_strategy="sdk")
    bad = plan_data(request)
    bad["recommended_execution"]["recommended_worker_queue_id"] = "queue-prod-a"
    fake_anthropic.add(json_reply(bad), json_reply(plan_data(request)))

    execution, events = await run(planner, request)

    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    (invalid,) = [e.data for e in events if e.type == "validation_error"]
    assert invalid["errors"][0]["code"] == "queue_not_preferred"
    assert "queue-prod-b" in fake_anthropic.messages_requests[1].last_user_text


async def test_repair_exhausted_fails_with_the_last_errors(
    planner: Planner, fake_anthropic: FakeAnthropic
) -> None:
    request = sample_request(planning_strategy="sdk")
    fake_anthropic.add("nothing", "still nothing", "{}")

    execution, events = await run(planner, request)

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.type == "PlanRepairError"
    assert execution.error.details["attempts"] == 3
    assert execution.error.details["errors"][0]["type"] == "missing"
    assert [e.data["retrying"] for e in events if e.type == "validation_error"] == [
        True,
        True,
        False,
    ]


async def test_retries_are_reported_and_usage_is_priced(
    planner: Planner, fake_anthropic: FakeAnthropic
) -> None:
    request = sample_request(planning_strategy="sdk")
    fake_anthropic.add(
        FakeError(529),
        Drop(),
        FakeReply(
            [json_reply(plan_data(request))],
            model="claude-haiku-4-5",
            usage=Usage(
                input_tokens=10_000,
                output_tokens=2_000,
                cache_read_input_tokens=50_000,
                cache_creation_input_tokens=0,
            ),
        ),
    )

    execution, events = await run(planner, request)

    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    retries = [e.data for e in events if e.type == "progress" and e.data.get("stage") == "retry"]
    assert [r["attempt"] for r in retries] == [2, 3]
    assert "529" in retries[0]["message"]
    assert "APIConnectionError" in retries[1]["message"]
    expected = (10_000 * 1.0 + 2_000 * 5.0 + 50_000 * 0.1) / 1_000_000
    assert execution.metadata.usage.cost_usd == pytest.approx(expected)
    assert execution.metadata.usage.cache_read_input_tokens == 50_000
    assert "claude-haiku-4-5" in execution.metadata.models
    assert execution.plan_json is not None
    (item,) = execution.plan_json["cost_estimate"]["llm_costs"]
    assert item["model_id"] == "claude-haiku-4-5"
    assert item["estimated_input_tokens"] == 60_000
    assert item["total_cost"] == pytest.approx(expected)


async def test_price_table_is_overridable(fake_anthropic: FakeAnthropic) -> None:
    request = sample_request(planning_strategy="sdk")
    fake_anthropic.add(
        FakeReply(
            [json_reply(plan_data(request))],
            model="claude-sonnet-4-5",
            usage=Usage(input_tokens=1_000_000, output_tokens=0),
        )
    )
    async with Planner(
        strategies={"sdk": FunctionStrategy(sdk_strategy)},
        api_key="test",
        base_url=fake_anthropic.base_url,
        options={"prices": {"claude-sonnet-4-5": {"input": 2.0, "output": 10.0}}},
    ) as planner:
        execution, _ = await run(planner, request)
    assert execution.metadata.usage.cost_usd == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("status", "cause"),
    [(401, "API key"), (400, "invalid"), (403, "may not use"), (404, "does not exist")],
)
async def test_permanent_api_errors_fail_at_once(
    planner: Planner, fake_anthropic: FakeAnthropic, status: int, cause: str
) -> None:
    fake_anthropic.add(FakeError(status, message="scripted refusal"))

    execution, events = await run(planner, sample_request(planning_strategy="sdk"))

    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.type == "ModelAPIError"
    assert cause in execution.error.message
    assert str(status) in execution.error.message and "scripted refusal" in execution.error.message
    assert len(fake_anthropic.messages_requests) == 1
    assert not [e for e in events if e.type == "progress" and e.data.get("stage") == "retry"]


async def test_quick_mode_and_model_settings(
    planner: Planner, fake_anthropic: FakeAnthropic
) -> None:
    request = sample_request(planning_strategy="sdk", quick_mode=True)
    fake_anthropic.add(json_reply(plan_data(request)))

    execution, _ = await run(planner, request)

    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    assert fake_anthropic.messages_requests[0].model == default_models()[1]
    assert execution.metadata.models == [default_models()[1]]


# -- real SDK exceptions ------------------------------------------------------------------------


async def sdk_error(fake: FakeAnthropic, reply: Any, timeout: float = 30) -> Exception:
    fake.add(reply)
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=fake.base_url, max_retries=0, timeout=timeout
    ) as client:
        try:
            await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
            )
        except Exception as exc:
            return exc
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("reply", "transient"),
    [
        (FakeError(429), True),
        (FakeError(529), True),
        (FakeError(500), True),
        (FakeError(503), True),
        (Drop(), True),
        (FakeError(401), False),
        (FakeError(400), False),
        (FakeError(403), False),
    ],
    ids=["429", "529", "500", "503", "reset", "401", "400", "403"],
)
async def test_is_transient_on_real_sdk_errors(
    fake_anthropic: FakeAnthropic, reply: Any, transient: bool
) -> None:
    exc = await sdk_error(fake_anthropic, reply)
    assert isinstance(exc, anthropic.APIError)
    assert is_transient(exc) is transient


async def test_a_timeout_is_transient(fake_anthropic: FakeAnthropic) -> None:
    exc = await sdk_error(fake_anthropic, FakeReply(["late"], delay=5), timeout=0.2)
    assert isinstance(exc, anthropic.APITimeoutError)
    assert is_transient(exc)


async def test_a_malformed_body_is_transient(fake_anthropic: FakeAnthropic) -> None:
    exc = await sdk_error(fake_anthropic, Malformed())
    assert isinstance(exc, json.JSONDecodeError)
    assert is_transient(exc)


def test_is_transient_follows_the_cause_chain_and_strategy_errors() -> None:
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert is_transient(StrategyError("busy", retryable=True))
    assert not is_transient(StrategyError("no"))
    assert not is_transient(ValueError("bug"))


# -- prompt and parsing -----------------------------------------------------------------------


def test_system_prompt_states_the_rules_and_the_schema() -> None:
    assert json.dumps(plan_schema(), separators=(",", ":"), sort_keys=True) in SYSTEM_PROMPT
    for needle in ("active_workers > 0", "most active workers", "risks", "$0.05-0.15", "$125"):
        assert needle in SYSTEM_PROMPT
    assert plan_schema()["title"] == "TaskPlan"


def test_render_request_lists_the_inventory_and_marks_the_best_queue() -> None:
    request = sample_request("Upgrade Postgres", priority="high", iteration=3)
    prompt = render_request(request)
    assert "Upgrade Postgres" in prompt and "Priority: high" in prompt
    assert "Planning iteration: 3" in prompt
    for agent in request.agents:
        assert agent.id in prompt and agent.model_id in prompt
    assert "postgresql, backups, credentials" in prompt
    assert "team-platform" in prompt
    assert "preferred queue: queue-prod-b" in prompt
    assert "env-staging" in prompt and "no queue with active workers" in prompt
    assert "active_workers: 3" in prompt and "active_workers: 0" in prompt
    assert "Refinement" not in prompt


def test_render_request_refinement_block() -> None:
    previous = plan_data(sample_request())
    request = sample_request(
        previous_plan=previous,
        refinement_feedback="Split task 2",
        iteration=2,
        conversation_context="user: please be careful",
    )
    prompt = render_request(request)
    assert "# Refinement (iteration 2)" in prompt
    assert "Keep every part" in prompt and "what changed" in prompt
    assert "Split task 2" in prompt and "please be careful" in prompt
    assert json.dumps(previous["title"]) in prompt


def test_render_request_without_inventory() -> None:
    prompt = render_request(TaskPlanRequest(description="Do it"))
    assert prompt.count("(none)") == 4


@pytest.mark.parametrize(
    "answer",
    [
        '{"a": {"b": [1, 2]}}',
        'Sure.\n```json\n{"a": {"b": [1, 2]}}\n```\nDone.',
        '```\n{"a": {"b": [1, 2]}}\n```',
        'The plan {"a": {"b": [1, 2]}} is above; {"x": 1}',
    ],
)
def test_extract_json(answer: str) -> None:
    assert extract_json(answer) == {"a": {"b": [1, 2]}}


@pytest.mark.parametrize("answer", ["", "   ", "no json", "[1, 2]", '{"broken": '])
def test_extract_json_refuses(answer: str) -> None:
    with pytest.raises(ModelOutputError):
        extract_json(answer)


def test_coerce_plan_accepts_plans_dicts_models_and_text() -> None:
    plan = sample_plan(sample_request())
    assert coerce_plan(plan) is plan
    assert coerce_plan(plan.model_dump()) == plan
    assert coerce_plan(plan.model_dump_json()) == plan
    with pytest.raises(ModelOutputError, match="no output"):
        coerce_plan(None)
    with pytest.raises(ModelOutputError, match="int"):
        coerce_plan(42)


# -- models, settings, prices -----------------------------------------------------------------


def test_default_models_are_the_newest_in_the_sdk() -> None:
    ids: list[str] = []

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            if typing.get_origin(arg) is typing.Literal:
                ids.extend(a for a in typing.get_args(arg) if isinstance(a, str))
            else:
                walk(arg)

    walk(ModelParam)
    sonnet, haiku = default_models()
    assert sonnet in ids and "sonnet" in sonnet
    assert haiku in ids and "haiku" in haiku

    def version(model_id: str) -> tuple[int, int]:
        parts = [p for p in model_id.split("-")[2:] if len(p) < 8]
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0

    for family, chosen in (("sonnet", sonnet), ("haiku", haiku)):
        assert all(version(i) <= version(chosen) for i in ids if i.startswith(f"claude-{family}-"))


def test_newest_prefers_the_alias_of_the_highest_version() -> None:
    ids = ["claude-haiku-4-5-20251001", "claude-haiku-4-5", "claude-haiku-3", "claude-sonnet-9"]
    assert base._newest(ids, "haiku") == "claude-haiku-4-5"
    assert base._newest(ids, "opus") is None


class _Ctx:
    """Only what model_for and anthropic_settings read, from real Settings."""

    def __init__(self, settings: Settings, quick: bool) -> None:
        self.settings = settings
        self.request = sample_request(quick_mode=quick)
        self.model = settings.model_for(quick)


def test_model_for_and_api_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANNER_MODEL", raising=False)
    monkeypatch.delenv("PLANNER_QUICK_MODEL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://env")
    plain = Settings()
    assert model_for(_Ctx(plain, False)) == default_models()[0]  # type: ignore[arg-type]
    assert model_for(_Ctx(plain, True)) == default_models()[1]  # type: ignore[arg-type]
    assert anthropic_settings(_Ctx(plain, False)) == ("env-key", "http://env")  # type: ignore[arg-type]
    mine = Settings(model="m-big", quick_model="m-small", api_key="k", base_url="http://mine")
    assert model_for(_Ctx(mine, False)) == "m-big"  # type: ignore[arg-type]
    assert model_for(_Ctx(mine, True)) == "m-small"  # type: ignore[arg-type]
    assert anthropic_settings(_Ctx(mine, True)) == ("k", "http://mine")  # type: ignore[arg-type]
    monkeypatch.setenv("PLANNER_QUICK_MODEL", "from-env")
    assert model_for(_Ctx(Settings(), True)) == "from-env"  # type: ignore[arg-type]


def test_price_lookup() -> None:
    assert price_for("claude-sonnet-4-5") == Price(3.0, 15.0)
    assert price_for("claude-haiku-4-5-20251001") == Price(1.0, 5.0)
    assert price_for("claude-opus-4-1-20250805") == Price(15.0, 75.0)
    assert price_for("claude-opus-4-5") == Price(5.0, 25.0)
    assert price_for("some-other-model") is None
    assert price_for("claude-sonnet-4-5", {"sonnet": [1, 2]}) == Price(1.0, 2.0)
    assert price_for("mine-v1", {"mine": {"input": 1, "output": 1}}) == Price(1.0, 1.0)
    assert Price(2.0, 4.0).write == 2.5 and Price(2.0, 4.0).read == pytest.approx(0.2)


async def test_with_retries_passes_other_errors_through() -> None:
    seen: list[str] = []

    async def strategy(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        async def bug() -> None:
            seen.append("called")
            raise KeyError("bug")

        await with_retries(ctx, bug, attempts=3, base_delay=0)
        raise AssertionError("unreachable")

    async with Planner(strategies={"bug": FunctionStrategy(strategy)}) as planner:
        execution, _ = await run(planner, sample_request(planning_strategy="bug"))
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error is not None and execution.error.type == "KeyError"
    assert seen == ["called"]


async def test_plan_with_repair_needs_one_attempt() -> None:
    async def strategy(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        async def ask(prompt: str, attempt: int) -> object:
            return sample_plan(request)

        with pytest.raises(ValueError, match="at least 1"):
            await plan_with_repair(ctx, ask, max_attempts=0)
        usage = record_call_usage(ctx, "unpriced-model", 10, 10)
        assert usage.cost_usd == 0
        plan = fill_llm_costs(await plan_with_repair(ctx, ask), ctx)
        assert plan.cost_estimate.llm_costs[0].model_id == "unpriced-model"
        return plan

    async with Planner(strategies={"direct": FunctionStrategy(strategy)}) as planner:
        execution, _ = await run(planner, sample_request(planning_strategy="direct"))
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    assert execution.metadata.models == ["unpriced-model"]


def test_model_api_error_is_a_strategy_error() -> None:
    error = ModelAPIError("refused", status_code=401, cause="AuthenticationError")
    assert isinstance(error, StrategyError)
    assert error.details == {"status_code": 401, "cause": "AuthenticationError"}


@pytest.mark.parametrize(
    "module_name", ["planner.strategies.base", "planner.strategies.agno", "planner.demo"]
)
def test_public_names_are_documented(module_name: str) -> None:
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    assert module.__doc__
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and getattr(v, "__module__", module_name) == module_name
        and (inspect.isclass(v) or inspect.isfunction(v))
    }
    assert public <= set(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"


async def test_retry_after_header_sets_the_wait(fake_anthropic: FakeAnthropic) -> None:
    request = sample_request(planning_strategy="sdk")
    fake_anthropic.add(FakeError(429, retry_after=0.01), json_reply(plan_data(request)))
    async with Planner(
        strategies={"sdk": FunctionStrategy(sdk_strategy)},
        api_key="test",
        base_url=fake_anthropic.base_url,
        options={"api_retry_delay": 300},  # the header, not this, decides
    ) as planner:
        execution, events = await run(planner, request)
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    (retry,) = [e.data for e in events if e.type == "progress" and e.data.get("stage") == "retry"]
    assert "retrying in 0.0 s" in retry["message"] and "429 rate_limit_error" in retry["message"]


async def test_a_retryable_strategy_error_is_retried() -> None:
    calls: list[int] = []

    async def strategy(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        async def flaky() -> TaskPlan:
            calls.append(1)
            if len(calls) == 1:
                raise StrategyError("the CLI ended early", retryable=True)
            return sample_plan(request)

        return await with_retries(ctx, flaky, attempts=2, base_delay=0)

    async with Planner(strategies={"flaky": FunctionStrategy(strategy)}) as planner:
        execution, events = await run(planner, sample_request(planning_strategy="flaky"))
    assert execution.status is ExecutionStatus.COMPLETED, execution.error
    assert len(calls) == 2
    retries = [e.data for e in events if e.type == "progress" and e.data.get("stage") == "retry"]
    assert "the CLI ended early" in retries[0]["message"]
