"""The ``claude_code_sdk`` strategy: plans with the Claude Agent SDK and the CLI it bundles.

Each model answer is one ``claude_agent_sdk.query()``: the bundled ``claude``
CLI runs as a subprocess with

* structured output (``output_format`` json_schema of :class:`~planner.plan.TaskPlan`):
  the CLI offers the model a ``StructuredOutput`` tool and validates its input;
* no built-in tools (``tools=[]``, ``permission_mode="dontAsk"``, no settings
  files): the task description is untrusted, so a reply that asks for ``Bash``,
  ``Write`` or any other tool runs nothing and is reported as a ``blocked``
  ``tool_result``; the only tool allowed besides ``StructuredOutput`` is the
  read-only, in-process inventory lookup ``mcp__inventory__find_agents``;
* an isolated environment: a temporary ``HOME``, ``CLAUDE_CONFIG_DIR`` and
  working directory per run, telemetry, auto-update, error reporting and
  non-essential traffic off, the API key and endpoint from
  :func:`~planner.strategies.base.anthropic_settings`.

The answer goes through :func:`~planner.strategies.base.plan_with_repair`: a
plan that fails validation is sent back, in a new CLI session, with its errors.
SDK messages become events (thinking -> ``thinking``, tool use -> ``tool_call``,
tool results -> ``tool_result``, assistant text and CLI system notices ->
``progress``); the result's token usage is recorded with its cost.

The CLI retries transient HTTP failures itself (429, 529, 5xx, resets; each
retry is reported as ``progress``); a permanent HTTP status (400, 401, 403,
404, 413) stops the run at once with :class:`~planner.strategies.base.ModelAPIError`,
and retries that run out end it with
:class:`~planner.strategies.base.RetriesExhaustedError`. Cancelling the run
terminates the CLI subprocess at once.

Options (``Planner(options={...})``, or the constructor's arguments):
``repair_attempts`` (3), ``api_attempts`` (4 tries: the CLI's
``CLAUDE_CODE_MAX_RETRIES`` is one less), ``claude_max_turns`` (8),
``claude_inventory_tool`` (True), ``claude_cli_path`` (the bundled CLI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread

from planner.errors import MissingExtraError, StrategyError
from planner.strategies.base import (
    SYSTEM_PROMPT,
    ModelAPIError,
    RetriesExhaustedError,
    anthropic_settings,
    emit_thinking,
    fill_llm_costs,
    model_for,
    option,
    plan_schema,
    plan_with_repair,
    record_call_usage,
)

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage

    from planner.context import RunContext
    from planner.models import TaskPlanRequest
    from planner.plan import TaskPlan

__all__ = ["BLOCKED_TOOLS", "ISOLATION_ENV", "PERMANENT_STATUSES", "ClaudeCodeStrategy"]

ISOLATION_ENV: Mapping[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
}
"""Environment variables set for every CLI run, besides HOME, CLAUDE_CONFIG_DIR and the API."""

PERMANENT_STATUSES: frozenset[int] = frozenset({400, 401, 403, 404, 413})
"""HTTP statuses that another try will not fix: the run stops at the first one."""

BLOCKED_TOOLS: tuple[str, ...] = (
    "Bash",
    "BashOutput",
    "KillShell",
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "Glob",
    "Grep",
    "WebFetch",
    "WebSearch",
    "Task",
    "Agent",
    "Skill",
)
"""Built-in tools denied by name as well, should ``tools=[]`` ever mean something else."""

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
INVENTORY_SERVER = "inventory"
INVENTORY_TOOL = "find_agents"
INVENTORY_TOOL_ID = f"mcp__{INVENTORY_SERVER}__{INVENTORY_TOOL}"

_CLI_NOTE = (
    "\nDeliver the plan by calling the StructuredOutput tool with the TaskPlan object as its "
    f"input. To look up agents by capability you may call {INVENTORY_TOOL_ID}; no other tool "
    "is available.\n"
)

_STDERR_LINES = 40
_OTHER_CREDENTIALS = ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def _require_sdk() -> None:
    if importlib.util.find_spec("claude_agent_sdk") is None:
        raise MissingExtraError("the strategy 'claude_code_sdk'", "claude", "claude_agent_sdk")


@dataclass
class _Call:
    """What one CLI query reported, besides its messages."""

    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_LINES))
    tool_names: dict[str, str] = field(default_factory=dict)
    retries: int = 0


class ClaudeCodeStrategy:
    """Plans with the Claude Agent SDK (``pip install "planner[claude]"``).

    Args:
        repair_attempts: answers to ask for before failing (default
            ``options["repair_attempts"]``, else 3).
        api_attempts: tries per model call; the CLI retries transient HTTP
            failures ``api_attempts - 1`` times (default ``options["api_attempts"]``, else 4).
        max_turns: model turns per CLI session (default
            ``options["claude_max_turns"]``, else 8).
        inventory_tool: offer the model the read-only in-process tool
            ``find_agents`` (default ``options["claude_inventory_tool"]``, else True).
        cli_path: the ``claude`` executable (default ``options["claude_cli_path"]``,
            else the one bundled with the SDK).

    Raises:
        MissingExtraError: ``claude-agent-sdk`` is not installed.
    """

    name = "claude_code_sdk"

    def __init__(
        self,
        *,
        repair_attempts: int | None = None,
        api_attempts: int | None = None,
        max_turns: int | None = None,
        inventory_tool: bool | None = None,
        cli_path: str | os.PathLike[str] | None = None,
    ) -> None:
        _require_sdk()
        self.repair_attempts = repair_attempts
        self.api_attempts = api_attempts
        self.max_turns = max_turns
        self.inventory_tool = inventory_tool
        self.cli_path = cli_path

    async def plan(self, request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        """Ask Claude, through the CLI, for a plan of the request; repair it until it is valid.

        Args:
            request: the request to plan (also ``ctx.request``).
            ctx: the run's context.

        Returns:
            The validated plan, with ``cost_estimate.llm_costs`` filled from the usage.

        Raises:
            ModelAPIError: the API refused the call (401, 400 ...).
            RetriesExhaustedError: transient API failures outlasted the CLI's retries.
            PlanRepairError: no valid plan after the last repair attempt.
            StrategyError: the CLI failed otherwise (its stderr is in the message).
        """
        model = model_for(ctx)
        api_key, _ = anthropic_settings(ctx)
        if not api_key and not any(os.environ.get(name) for name in _OTHER_CREDENTIALS):
            # The CLI runs with an empty HOME: without a key it can only fail ("Not logged in").
            raise ModelAPIError(
                "no API key for the model API: set ANTHROPIC_API_KEY or Planner(api_key=...)",
                cause="claude_code_sdk",
            )
        attempts = self.repair_attempts or int(option(ctx, "repair_attempts", 3))
        root = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="planner-claude-"))
        try:
            for sub in ("home", "config", "work"):
                await anyio.Path(root, sub).mkdir()

            async def ask(prompt: str, attempt: int) -> object:
                return await self._ask(ctx, model, root, prompt, attempt)

            await ctx.emit(
                "progress", stage="planning", message=f"Asking {model} through Claude Code"
            )
            plan = await plan_with_repair(ctx, ask, max_attempts=attempts)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))
        return fill_llm_costs(plan, ctx)

    # -- one CLI session ------------------------------------------------------------------

    def _options(self, ctx: RunContext, model: str, root: str, call: _Call) -> ClaudeAgentOptions:
        from claude_agent_sdk import ClaudeAgentOptions

        api_key, base_url = anthropic_settings(ctx)
        tries = self.api_attempts or int(option(ctx, "api_attempts", 4))
        env = {
            **ISOLATION_ENV,
            "HOME": os.path.join(root, "home"),
            "CLAUDE_CONFIG_DIR": os.path.join(root, "config"),
            "CLAUDE_CODE_MAX_RETRIES": str(max(0, tries - 1)),
        }
        if api_key:
            env["ANTHROPIC_API_KEY"] = api_key
        if base_url:
            env["ANTHROPIC_BASE_URL"] = base_url
        use_inventory = (
            self.inventory_tool
            if self.inventory_tool is not None
            else bool(option(ctx, "claude_inventory_tool", True))
        )
        mcp_servers: dict[str, Any] = {}
        allowed: list[str] = []
        if use_inventory:
            mcp_servers[INVENTORY_SERVER] = _inventory_server(ctx.request)
            allowed.append(INVENTORY_TOOL_ID)
        cli: str | os.PathLike[str] | None = self.cli_path or option(ctx, "claude_cli_path", None)
        return ClaudeAgentOptions(
            model=model,
            system_prompt=SYSTEM_PROMPT + _CLI_NOTE,
            output_format={"type": "json_schema", "schema": plan_schema()},
            tools=[],
            disallowed_tools=list(BLOCKED_TOOLS),
            skills=[],
            allowed_tools=allowed,
            permission_mode="dontAsk",
            setting_sources=[],
            mcp_servers=mcp_servers,
            strict_mcp_config=True,
            max_turns=self.max_turns or int(option(ctx, "claude_max_turns", 8)),
            cwd=os.path.join(root, "work"),
            env=env,
            cli_path=os.fspath(cli) if cli else None,
            stderr=call.stderr.append,
            verbatim_prompts=True,
        )

    async def _ask(self, ctx: RunContext, model: str, root: str, prompt: str, attempt: int) -> Any:
        """Run one CLI session; return the structured output, or the text answer to repair."""
        from claude_agent_sdk import ClaudeSDKClient, ClaudeSDKError, ResultMessage

        call = _Call()
        options = self._options(ctx, model, root, call)
        transport = _transport(options)
        client = ClaudeSDKClient(options, transport=transport)
        result: ResultMessage | None = None
        try:
            await client.connect(prompt)
            received = cast("AsyncGenerator[object, None]", client.receive_messages())
            async with aclosing(received) as messages:
                async for message in messages:
                    if isinstance(message, ResultMessage):
                        result = message
                        _record_usage(ctx, model, message)
                        break
                    await self._on_message(ctx, message, call)
        except ClaudeSDKError as exc:
            raise _failure(exc, call) from exc
        finally:
            with anyio.CancelScope(shield=True):
                # Stop the CLI first: the SDK's close() would otherwise wait for it to
                # finish its MCP session and exit by itself (seconds, on a cancelled run).
                transport.terminate()
                await client.disconnect()
        if result is None:
            raise StrategyError(
                "Claude Code ended without a result" + _stderr_tail(call), retryable=True
            )
        if result.is_error:
            raise _result_failure(result.subtype, result.api_error_status, result.result, call)
        if result.structured_output is not None:
            return result.structured_output
        await ctx.emit(
            "progress",
            stage="model",
            message="The model answered without the StructuredOutput tool; reading its text",
            attempt=attempt,
        )
        return result.result or ""

    async def _on_message(self, ctx: RunContext, message: object, call: _Call) -> None:
        from claude_agent_sdk import (
            AssistantMessage,
            SystemMessage,
            TextBlock,
            ThinkingBlock,
            ToolResultBlock,
            ToolUseBlock,
            UserMessage,
        )

        if isinstance(message, SystemMessage):
            await self._on_system(ctx, message.subtype, message.data, call)
        elif isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, ThinkingBlock):
                    await emit_thinking(ctx, block.thinking)
                elif isinstance(block, TextBlock):
                    if block.text.strip() and message.model != "<synthetic>":
                        await ctx.emit("progress", stage="model", message=block.text)
                elif isinstance(block, ToolUseBlock):
                    call.tool_names[block.id] = block.name
                    if block.name == STRUCTURED_OUTPUT_TOOL:
                        await ctx.emit(
                            "progress", stage="model", message="The model returned a plan"
                        )
                    else:
                        await ctx.emit(
                            "tool_call",
                            tool_id=block.id,
                            tool_name=block.name,
                            arguments=block.input,
                        )
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, ToolResultBlock):
                    await _emit_tool_result(ctx, block, call)

    async def _on_system(
        self, ctx: RunContext, subtype: str, data: Mapping[str, Any], call: _Call
    ) -> None:
        if subtype == "init":
            tools = ", ".join(str(t) for t in data.get("tools", []))
            await ctx.emit(
                "progress",
                stage="session",
                message=f"Claude Code session started (model {data.get('model')}; "
                f"tools: {tools or 'none'})",
            )
        elif subtype == "api_retry":
            status = data.get("error_status")
            call.retries += 1
            if isinstance(status, int) and status in PERMANENT_STATUSES:
                raise _api_error(status, str(data.get("error") or ""), call)
            delay = float(data.get("retry_delay_ms") or 0) / 1000
            await ctx.emit(
                "progress",
                stage="retry",
                message=f"The model API failed ({status or 'no status'} "
                f"{data.get('error') or ''}); Claude Code retries in {delay:.1f} s "
                f"(retry {data.get('attempt')} of {data.get('max_retries')})",
                attempt=data.get("attempt"),
            )
        elif subtype in {"status", "compact_boundary", "notification"}:
            await ctx.emit(
                "progress",
                stage="session",
                message=f"Claude Code: {subtype}",
                details={k: v for k, v in data.items() if k not in {"session_id", "uuid"}},
            )


# -- helpers ---------------------------------------------------------------------------------


def _transport(options: ClaudeAgentOptions) -> Any:
    """The SDK's subprocess transport, made to terminate the CLI when it closes.

    The SDK's own ``close()`` waits up to 5 s for the CLI to exit after its
    stdin closes, so that the CLI can save its session; the sessions here are
    thrown away, and a cancelled run must not leave the CLI running.
    """
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    class _Transport(SubprocessCLITransport):
        def terminate(self) -> None:
            """Send SIGTERM to the CLI if it is still running."""
            process = self._process
            if process is not None and process.returncode is None:
                try:
                    process.terminate()
                except ProcessLookupError:
                    pass

        async def close(self) -> None:
            self.terminate()
            await super().close()

    return _Transport(prompt="", options=options)


def _inventory_server(request: TaskPlanRequest) -> Any:
    from claude_agent_sdk import create_sdk_mcp_server, tool

    @tool(
        INVENTORY_TOOL,
        "Find the request's agents whose capabilities, name or description mention a word "
        "(case-insensitive); an empty word lists every agent.",
        {"capability": str},
    )
    async def find_agents(args: dict[str, Any]) -> dict[str, Any]:
        word = str(args.get("capability", "")).strip().lower()
        found = [
            {
                "id": a.id,
                "name": a.name,
                "model_id": a.model_id,
                "capabilities": a.capabilities,
                "description": a.description,
            }
            for a in request.agents
            if not word
            or any(word in c.lower() for c in a.capabilities)
            or word in a.name.lower()
            or word in (a.description or "").lower()
        ]
        return {"content": [{"type": "text", "text": json.dumps(found, ensure_ascii=False)}]}

    return create_sdk_mcp_server(INVENTORY_SERVER, tools=[find_agents])


async def _emit_tool_result(ctx: RunContext, block: Any, call: _Call) -> None:
    name = call.tool_names.get(block.tool_use_id, "unknown")
    if name == STRUCTURED_OUTPUT_TOOL and not block.is_error:
        return
    content = block.content
    if isinstance(content, list):
        content = "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping)
        )
    if block.is_error:
        blocked = name not in (INVENTORY_TOOL_ID, STRUCTURED_OUTPUT_TOOL)
        await ctx.emit(
            "tool_result",
            tool_id=block.tool_use_id,
            tool_name=name,
            status="blocked" if blocked else "error",
            error=str(content or "the tool failed"),
        )
    else:
        await ctx.emit("tool_result", tool_id=block.tool_use_id, tool_name=name, result=content)


def _record_usage(ctx: RunContext, model: str, result: ResultMessage) -> None:
    if result.model_usage:
        for model_id, usage in result.model_usage.items():
            record_call_usage(
                ctx,
                model_id,
                int(usage.get("inputTokens", 0)),
                int(usage.get("outputTokens", 0)),
                int(usage.get("cacheReadInputTokens", 0)),
                int(usage.get("cacheCreationInputTokens", 0)),
            )
        return
    totals: Mapping[str, Any] = result.usage or {}
    if totals:
        record_call_usage(
            ctx,
            model,
            int(totals.get("input_tokens", 0)),
            int(totals.get("output_tokens", 0)),
            int(totals.get("cache_read_input_tokens", 0)),
            int(totals.get("cache_creation_input_tokens", 0)),
        )


def _stderr_tail(call: _Call) -> str:
    lines = [line for line in call.stderr if line.strip()]
    return ("; CLI stderr: " + " | ".join(lines[-10:])) if lines else ""


def _api_error(status: int, kind: str, call: _Call) -> ModelAPIError:
    hints = {
        401: "the model API rejected the API key (set ANTHROPIC_API_KEY or Planner(api_key=...))",
        403: "the API key may not use this model or endpoint",
        404: "the model or endpoint does not exist (check the model id and ANTHROPIC_BASE_URL)",
        400: "the model API rejected the request as invalid",
        413: "the request is too large for the model API",
    }
    hint = hints.get(status, "the model API refused the request")
    return ModelAPIError(
        f"{hint}: HTTP {status} {kind}".rstrip() + _stderr_tail(call),
        status_code=status,
        cause="claude_code_sdk",
    )


def _result_failure(
    subtype: str | None, status: int | None, text: str | None, call: _Call
) -> StrategyError:
    detail = (text or "").strip() or (subtype or "error")
    if status is not None and status in PERMANENT_STATUSES:
        return _api_error(status, detail, call)
    if status is not None or call.retries:
        retried = call.retries
        return RetriesExhaustedError(
            f"the model API call failed after {retried} retr{'y' if retried == 1 else 'ies'}"
            f" by Claude Code: {detail}" + _stderr_tail(call),
            status_code=status,
            cause="claude_code_sdk",
            retryable=True,
        )
    ended = "reported an error" if subtype in (None, "success") else f"ended with {subtype}"
    return StrategyError(
        f"Claude Code {ended}: {detail}" + _stderr_tail(call), details={"subtype": subtype}
    )


def _failure(exc: Exception, call: _Call) -> StrategyError:
    from claude_agent_sdk import CLIConnectionError, ProcessError, ResultError

    if isinstance(exc, ResultError):
        text = exc.result or "; ".join(exc.errors) or None
        return _result_failure(exc.subtype, exc.api_error_status, text, call)
    if isinstance(exc, CLIConnectionError):
        return StrategyError(
            f"could not start or talk to the Claude Code CLI: {exc}" + _stderr_tail(call),
            retryable=True,
        )
    if isinstance(exc, ProcessError):
        return StrategyError(
            f"the Claude Code CLI failed: {exc}" + _stderr_tail(call), retryable=True
        )
    return StrategyError(f"the Claude Agent SDK failed: {exc}" + _stderr_tail(call))
