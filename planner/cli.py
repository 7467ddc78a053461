"""The ``planner`` command line.

::

    planner generate request.json     # live progress on stderr, the plan as JSON on stdout
    planner generate - < request.json # the request from stdin
    planner show EXECUTION_ID [--events | --diff-parent]
    planner list [--status S] [--limit N] [--before ID] [--json]
    planner plugins [--json]
    planner demo [--quick]            # offline: the agno strategy against a scripted model
    planner serve [--host H] [--port P]   # the HTTP API (planner[http])
    planner worker --temporal HOST:PORT --task-queue Q --store URL  # planner[temporal]

Exit codes: 0 success; 1 the generation failed or was cancelled; 2 bad usage,
an invalid request, an unknown id or plugin, a missing extra; 130 interrupted.
:func:`main` returns the code instead of exiting, so tests and other programs
can call it in-process.  Only argparse and the core dependencies are needed;
with ``planner[cli]`` (rich) installed, progress on a terminal is drawn with a
live bar, while pipes and files always get the plain lines.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import inspect
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

from planner import __version__
from planner.errors import (
    ExecutionFinishedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    InvalidRequestError,
    PluginError,
    SubmitError,
    UnknownPluginError,
)
from planner.events import Event
from planner.execution import Execution, ExecutionStatus
from planner.interfaces import Strategy
from planner.models import PlanGenerationResponse, TaskPlanRequest
from planner.plan_diff import PlanDiff, diff
from planner.planner import Planner
from planner.plugins import Kind, PluginRegistry, default_registry
from planner.render import event_line
from planner.settings import Settings
from planner.testing.function import FunctionStrategy

__all__ = [
    "DEFAULT_EXECUTOR",
    "DEFAULT_STORE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

DEFAULT_STORE = "sqlite:///planner.db"
"""The store when neither ``--store`` nor ``PLANNER_STORE`` names one: ``./planner.db``."""

DEFAULT_EXECUTOR = "inprocess"
"""The executor when neither ``--executor`` nor ``PLANNER_EXECUTOR`` names one."""

EXIT_OK = 0
"""The command did what was asked (``generate``: the plan is out)."""
EXIT_FAILED = 1
"""The generation failed or was cancelled (or the executor refused it)."""
EXIT_USAGE = 2
"""Bad usage, an invalid request, an unknown execution id or plugin, a missing extra."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (the execution was cancelled)."""

_MEMORY_NOTE = (
    "the memory store (memory://) keeps nothing after a command ends, so 'show' and 'list' "
    "in a new process see no executions; use a persistent store with --store URL or PLANNER_STORE"
)

_EPILOG = """\
environment:
  PLANNER_STORE      default for --store (else sqlite:///planner.db, in the current directory)
  PLANNER_EXECUTOR   default for --executor (else inprocess)
  PLANNER_PLUGINS    which third-party plugins load (comma-separated entry-point names)
  PLANNER_MODEL, PLANNER_QUICK_MODEL, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL  read by strategies

exit codes:
  0    success
  1    the generation failed or was cancelled
  2    bad usage, invalid request, unknown execution id or plugin, missing extra
  130  interrupted (Ctrl-C cancels the execution)
"""


def _paragraphs(*texts: str) -> str:
    # RawDescriptionHelpFormatter keeps the epilogs' layout but wraps nothing itself.
    return "\n\n".join(textwrap.fill(text, 78) for text in texts)


class _Exit(Exception):
    """Ends a command with an exit code and a message for stderr (never leaves :func:`main`)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- the parser ---------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _strategy_spec(text: str) -> tuple[str, str]:
    name, eq, target = text.partition("=")
    module, colon, attr = target.partition(":")
    if not (eq and name.strip() and colon and module.strip() and attr.strip()):
        raise argparse.ArgumentTypeError(
            f"expected NAME=MODULE:ATTRIBUTE (like agno=my_pkg.plans:make_plan), got {text!r}"
        )
    return name.strip(), f"{module.strip()}:{attr.strip()}"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``planner`` command.

    The defaults of ``--store`` and ``--executor`` are read from the environment
    (``PLANNER_STORE``, ``PLANNER_EXECUTOR``) when this is called.

    Returns:
        The parser; each subcommand's namespace has a ``handler(args) -> int``.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    options = common.add_argument_group("store, executor and strategies")
    options.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("PLANNER_STORE") or DEFAULT_STORE,
        help="where executions and their events live (default: $PLANNER_STORE, else "
        f"{DEFAULT_STORE}); memory:// is gone when the command ends",
    )
    options.add_argument(
        "--executor",
        metavar="NAME",
        default=os.environ.get("PLANNER_EXECUTOR") or DEFAULT_EXECUTOR,
        help=f"where runs happen (default: $PLANNER_EXECUTOR, else {DEFAULT_EXECUTOR})",
    )
    options.add_argument(
        "--strategy",
        metavar="NAME=MODULE:ATTR",
        type=_strategy_spec,
        action="append",
        default=[],
        help="bind strategy NAME to a Strategy object or class, or to a function "
        "fn(request, ctx) returning a plan (sync or async); repeatable; MODULE is "
        "imported from the current directory too",
    )
    options.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        help="how long one run may take before it fails with 'timeout' "
        f"(default {Settings.timeout:g})",
    )

    parser = argparse.ArgumentParser(
        prog="planner",
        description="Turn a task description and an inventory into an executable plan.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Every command takes the common options and ends its help with the exit codes.
    command = functools.partial(
        commands.add_parser, parents=[common], formatter_class=formatter, epilog=_EPILOG
    )

    demo = command(
        "demo",
        help="plan a sample task offline (no API key needed)",
        description=_paragraphs(
            "Plan the bundled sample request (three agents, a team, two environments, three "
            "worker queues) with the real agno strategy, against planner's scripted Anthropic "
            "Messages API started on 127.0.0.1: live progress on stderr, the plan as JSON on "
            "stdout, stored in --store.",
        ),
        epilog="examples:\n"
        "  planner demo > plan.json\n"
        "  planner demo --quick --json-events\n"
        "  planner demo --store sqlite:///plans.db\n\n" + _EPILOG,
    )
    demo.add_argument("--quick", action="store_true", help="quick_mode: one step, the fast model")
    demo_progress = demo.add_mutually_exclusive_group()
    demo_progress.add_argument("-q", "--quiet", action="store_true", help="do not show progress")
    demo_progress.add_argument(
        "--json-events", action="store_true", help="write each event as a JSON line to stderr"
    )
    demo.set_defaults(handler=_cmd_demo)

    generate = command(
        "generate",
        help="generate a plan from a TaskPlanRequest (JSON)",
        description=_paragraphs(
            "Submit a TaskPlanRequest, show its progress live on stderr, and print the plan "
            "(plan_json) on stdout. Ctrl-C cancels the execution.",
            "generate runs only the execution it submits: it does not take over runs that "
            "other processes lost (a long-running service does).",
        ),
        epilog="examples:\n"
        "  planner generate request.json > plan.json\n"
        "  cat request.json | planner generate - --json-events 2> events.jsonl\n"
        "  planner generate request.json --strategy mine=my_plans:make_plan "
        "--strategy-name mine\n\n" + _EPILOG,
    )
    generate.add_argument("request", metavar="FILE", help="the request as JSON; - reads stdin")
    generate.add_argument(
        "--strategy-name",
        "--planning-strategy",
        dest="strategy_name",
        metavar="NAME",
        help="set the request's planning_strategy",
    )
    generate.add_argument(
        "--quick", action="store_true", help="set the request's quick_mode (the fast model)"
    )
    generate.add_argument(
        "-o", "--output", metavar="FILE", help="write the plan to FILE instead of stdout"
    )
    progress = generate.add_mutually_exclusive_group()
    progress.add_argument("-q", "--quiet", action="store_true", help="do not show progress")
    progress.add_argument(
        "--json-events",
        action="store_true",
        help="write each event as a JSON line to stderr (for scripts)",
    )
    generate.set_defaults(handler=_cmd_generate)

    show = command(
        "show",
        help="show an execution record as JSON",
        description=_paragraphs(
            "Print an execution record (status, timestamps, metadata, plan_json, error) as JSON.",
            f"Note: {_MEMORY_NOTE}.",
        ),
    )
    show.add_argument("id", metavar="ID", help="the execution id")
    show.add_argument("--events", action="store_true", help="include the event log")
    show.add_argument(
        "--diff-parent",
        action="store_true",
        help="instead, show what this refinement changed from the plan it refines (its parent)",
    )
    show.add_argument(
        "--json",
        action="store_true",
        help="print JSON (the record always is; with --diff-parent, the changes as JSON)",
    )
    show.set_defaults(handler=_cmd_show)

    listing = command(
        "list",
        help="list executions, newest first",
        description=_paragraphs(
            "List executions, newest first: id, status, created (UTC), strategy, and the "
            "plan's title (or the task).",
            f"Note: {_MEMORY_NOTE}.",
        ),
    )
    listing.add_argument(
        "--status", choices=[s.value for s in ExecutionStatus], help="only this status"
    )
    listing.add_argument(
        "--limit", type=_positive_int, default=20, help="at most N (default %(default)s)"
    )
    listing.add_argument(
        "--before", metavar="ID", help="only executions created before ID (the next page)"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=_cmd_list)

    plugins = command(
        "plugins",
        help="list the installed stores, executors and strategies",
        description="List the registered stores, executors and strategies, with the "
        "strategies bound by --strategy.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=_cmd_plugins)

    serve = command(
        "serve",
        help="serve the HTTP API (needs planner[http])",
        description=_paragraphs(
            "Serve the seed's HTTP API (POST /api/v1/plans/generate, resumable event streams, "
            "executions) with uvicorn until SIGINT or SIGTERM. Open streams then get a final "
            "'shutdown' event; generations in flight are left to the executor.",
            "Bearer tokens come from PLANNER_API_TOKENS (token=tenant,...), PLANNER_JWT_SECRET "
            "or PLANNER_JWT_PUBLIC_KEY; see docs/http.md.",
        ),
        epilog="examples:\n"
        "  PLANNER_API_TOKENS=s3cret=acme planner serve --port 8000\n"
        "  planner serve --store sqlite:///plans.db --executor threadpool\n\n" + _EPILOG,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port", type=_positive_int, default=8000, help="port to listen on (%(default)s)"
    )
    serve.add_argument(
        "--max-body-size",
        metavar="BYTES",
        type=_positive_int,
        default=1024 * 1024,
        help="larger request bodies get 413 (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (%(default)s)",
    )
    serve.set_defaults(handler=_cmd_serve)

    worker = command(
        "worker",
        help="run plan generations from a Temporal task queue (needs planner[temporal])",
        description=_paragraphs(
            "Poll a Temporal task queue and run the plan generations that API processes "
            "submit with the 'temporal' executor, writing their events to the shared store, "
            "until SIGINT or SIGTERM. Runs still going after the grace period are handed "
            "over to other workers.",
            "The store must be one every process can reach (sqlite:///file.db on one "
            "machine, postgresql://... across machines); --executor is ignored.",
        ),
        epilog="examples:\n"
        "  planner worker --temporal localhost:7233 --task-queue plans "
        "--store postgresql://db/planner\n"
        "  planner worker --store sqlite:///plans.db --strategy mine=my_plans:make_plan\n\n"
        + _EPILOG,
    )
    worker.add_argument(
        "--temporal",
        metavar="HOST:PORT",
        default=os.environ.get("PLANNER_TEMPORAL_ADDRESS") or "localhost:7233",
        help="the Temporal frontend (default: $PLANNER_TEMPORAL_ADDRESS, else %(default)s)",
    )
    worker.add_argument(
        "--namespace", default="default", help="the Temporal namespace (default %(default)s)"
    )
    worker.add_argument(
        "--task-queue", default="planner", help="the task queue to poll (default %(default)s)"
    )
    worker.add_argument(
        "--max-concurrent",
        metavar="N",
        type=_positive_int,
        default=100,
        help="plan generations run at once (default %(default)s)",
    )
    worker.add_argument(
        "--lease-ttl",
        metavar="SECONDS",
        type=_positive_float,
        help=f"how long a run's lease lasts unrenewed (default {Settings.lease_ttl:g})",
    )
    worker.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="on shutdown, how long runs may finish before they are handed over "
        "(default %(default)s)",
    )
    worker.set_defaults(handler=_cmd_worker)
    return parser


# -- building a Planner --------------------------------------------------------------------


def _load_strategy(name: str, target: str) -> Strategy:
    module_name, _, attr = target.partition(":")
    # The console script, unlike ``python -m``, does not put the current
    # directory on sys.path; a user's own module next to them must import.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Exit(
            EXIT_USAGE, f"--strategy {name}: cannot import {module_name!r}: {exc}"
        ) from None
    try:
        obj = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise _Exit(
            EXIT_USAGE, f"--strategy {name}: module {module_name!r} has no attribute {attr!r}"
        ) from None
    if inspect.isclass(obj) and hasattr(obj, "plan"):
        try:
            obj = obj()
        except TypeError as exc:
            raise _Exit(EXIT_USAGE, f"--strategy {name}: cannot build {target}(): {exc}") from None
    if not inspect.isclass(obj):
        if isinstance(obj, Strategy):
            return obj
        if callable(obj):
            return FunctionStrategy(obj, name=name)
    raise _Exit(
        EXIT_USAGE,
        f"--strategy {name}: {target} is a {type(obj).__name__}, not a Strategy "
        "or a function fn(request, ctx)",
    )


def _one_shot_options(registry: PluginRegistry, executor: str) -> dict[str, Any]:
    # A one-shot command must not adopt runs that other processes lost: it
    # would cancel them when it exits.  Executors that recover take ``recover``.
    factory = registry.registration("executor", executor).load()
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: pass nothing
        return {}
    return {"recover": False} if "recover" in parameters else {}


def _planner(args: argparse.Namespace, *, one_shot: bool = False) -> Planner:
    registry = default_registry()
    strategies = {name: _load_strategy(name, target) for name, target in args.strategy}
    executor_options = _one_shot_options(registry, args.executor) if one_shot else {}
    settings: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    try:
        return Planner(
            args.store,
            args.executor,
            strategies,
            registry=registry,
            executor_options=executor_options,
            **settings,
        )
    except ValueError as exc:  # a store or executor refusing its URL
        raise _Exit(EXIT_USAGE, str(exc)) from None


def _not_found(args: argparse.Namespace, exc: ExecutionNotFoundError) -> _Exit:
    note = f"\nnote: {_MEMORY_NOTE}" if args.store.startswith("memory:") else ""
    return _Exit(EXIT_USAGE, f"{exc}{note}")


# -- output ---------------------------------------------------------------------------------


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _describe(event: Event) -> str:
    return event_line(event, width=160)


def _rich_wanted() -> bool:
    """Whether readable progress is drawn with rich: stderr is a terminal and rich is installed."""
    if os.environ.get("TERM") == "dumb" or not sys.stderr.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:  # planner[cli] is not installed
        return False
    return True


_RICH_STYLES = {
    "error": "bold red",
    "validation_error": "yellow",
    "cancelled": "yellow",
    "complete": "bold green",
    "done": "green",
    "thinking": "dim",
    "step_started": "cyan",
    "step_completed": "cyan",
}


class _RichDisplay:
    """Progress on a terminal: the event lines (styled) above a live bar with the current step."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("submitted", total=100)
        self.started = False

    def note(self, text: str) -> None:
        self.console.print(f"[bold]planner:[/bold] {_escape_markup(text)}")

    def show(self, event: Event) -> None:
        from rich.text import Text

        if not self.started:
            self.progress.start()
            self.started = True
        data = event.data
        update: dict[str, Any] = {}
        label = data.get("step_name") or data.get("message") or data.get("current_step")
        if isinstance(label, str) and label and event.type not in ("thinking", "done"):
            update["description"] = _one_line(label, 60)
        progress = data.get("progress")
        if isinstance(progress, int | float) and event.type != "complete":
            update["completed"] = max(0.0, min(100.0, float(progress)))
        if event.type == "complete":
            update["completed"] = 100.0
        self.progress.update(self.task, **update)  # before the line: it redraws the bar
        self.console.print(Text(_describe(event), style=_RICH_STYLES.get(event.type, "")))
        if event.type == "done":
            self.close()

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False


def _escape_markup(text: str) -> str:
    """Return ``text`` with rich's markup brackets escaped (used only with rich installed)."""
    from rich.markup import escape

    return escape(text)


class _Progress:
    """Shows the events of one execution on stderr: readable lines, JSON lines, or nothing.

    Readable progress on a terminal is drawn with rich (``planner[cli]``) when it
    is installed: the same lines, styled, above a live bar; otherwise, and
    whenever stderr is a pipe or a file, plain lines.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.mode = "quiet" if args.quiet else "json" if args.json_events else "text"
        self.last_seq = 0
        self.final: Event | None = None
        self.rich = _RichDisplay() if self.mode == "text" and _rich_wanted() else None

    def note(self, text: str) -> None:
        if self.rich is not None:
            self.rich.note(text)
        elif self.mode == "text":
            print(f"planner: {text}", file=sys.stderr, flush=True)

    def show(self, event: Event) -> None:
        self.last_seq = event.seq
        if event.terminal:
            self.final = event
        if self.rich is not None:
            self.rich.show(event)
        elif self.mode != "quiet":
            line = event.model_dump_json() if self.mode == "json" else _describe(event)
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the live display, if any (the run ended, failed or was interrupted)."""
        if self.rich is not None:
            self.rich.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# -- generate -------------------------------------------------------------------------------


def _read_request(source: str) -> Any:
    name = "stdin" if source == "-" else source
    try:
        if source == "-":
            if sys.stdin.isatty():
                print("planner: reading the request from stdin (end with Ctrl-D)", file=sys.stderr)
            text = sys.stdin.read()
        else:
            text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _Exit(EXIT_USAGE, f"cannot read {name}: {reason}") from None
    if not text.strip():
        raise _Exit(EXIT_USAGE, f"no request in {name}: it is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Exit(
            EXIT_USAGE,
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None


def _check_strategy(planner: Planner, name: Any) -> str | None:
    if name is not None and not isinstance(name, str):
        return None  # request validation reports it
    wanted = name or planner.settings.default_strategy
    available = planner.strategy_names
    if wanted not in available:
        # Built from the Planner's names, own ones included, so "did you mean" sees them all.
        message = str(UnknownPluginError("strategy", wanted, available))
        message += (
            "\nchoose a strategy with --strategy-name NAME, bind one with "
            "--strategy NAME=MODULE:ATTR, or see 'planner plugins'"
        )
        raise _Exit(EXIT_USAGE, message)
    return wanted


async def _follow(
    planner: Planner,
    execution_id: str,
    progress: _Progress,
    signals: AsyncIterator[signal.Signals] | None,
) -> bool:
    """Show the events up to ``done``; return whether Ctrl-C came first."""
    interrupted = False
    async with anyio.create_task_group() as tg:

        async def on_ctrl_c(signals: AsyncIterator[signal.Signals]) -> None:
            nonlocal interrupted
            async for _ in signals:
                interrupted = True
                tg.cancel_scope.cancel()
                return

        if signals is not None:
            tg.start_soon(on_ctrl_c, signals)
        async for event in planner.stream(execution_id):
            progress.show(event)
        tg.cancel_scope.cancel()
    return interrupted


async def _generate(
    planner: Planner, request: TaskPlanRequest, progress: _Progress
) -> tuple[int, Execution]:
    async with planner:
        with contextlib.ExitStack() as stack:
            signals: AsyncIterator[signal.Signals] | None
            try:
                # Installed before the run exists, so no Ctrl-C slips past it.
                signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT))
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, not main thread
                signals = None
            with anyio.CancelScope(shield=True):  # a Ctrl-C now still yields the id to cancel
                response: PlanGenerationResponse = await planner.generate(request)
            execution_id = response.execution_id
            progress.note(f"execution {execution_id}")
            interrupted = await _follow(planner, execution_id, progress, signals)
        if not interrupted:
            return EXIT_OK, await planner.get(execution_id)
        progress.note(f"interrupted: cancelling execution {execution_id}")
        with contextlib.suppress(ExecutionFinishedError):  # it ended meanwhile
            await planner.cancel(execution_id)
        for event in await planner.events(execution_id, progress.last_seq):
            progress.show(event)
        return EXIT_INTERRUPTED, await planner.get(execution_id)


def _cmd_generate(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():  # fail now, not after the run
        raise _Exit(EXIT_USAGE, f"--output: the directory {str(output.parent)!r} does not exist")
    planner = _planner(args, one_shot=True)
    data = _read_request(args.request)
    name = None
    if isinstance(data, dict):
        if args.strategy_name:
            data["planning_strategy"] = args.strategy_name
        if args.quick:
            data["quick_mode"] = True
        name = _check_strategy(planner, data.get("planning_strategy"))
    request = planner.validate(data)  # also refuses a request that is not a JSON object
    if name is not None:
        planner.strategy(name)  # a missing extra fails here, before anything starts
    progress = _Progress(args)
    try:
        code, execution = anyio.run(_generate, planner, request, progress)
    finally:
        progress.close()
    if code == EXIT_INTERRUPTED:
        return code
    if execution.status is ExecutionStatus.COMPLETED:
        text = json.dumps(execution.plan_json, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            sys.stdout.write(text)
            return EXIT_OK
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            sys.stdout.write(text)  # nothing lost
            raise _Exit(
                EXIT_FAILED, f"cannot write {output}: {exc}; the plan is on stdout"
            ) from None
        progress.note(f"plan written to {output}")
        return EXIT_OK
    if progress.mode != "json":  # the error or cancelled event already says it in JSON
        if execution.error is not None:
            what = f"failed: {execution.error.type}: {execution.error.message}"
        else:
            final = progress.final
            reason = final.data.get("message") if final is not None else None
            what = f"{execution.status.value}" + (f": {reason}" if reason else "")
        print(f"planner: error: plan generation {execution.id} {what}", file=sys.stderr)
    return EXIT_FAILED


def _cmd_demo(args: argparse.Namespace) -> int:
    from planner.demo import demo_request, scripted_model

    request = demo_request(quick=args.quick)
    progress = _Progress(args)
    registry = default_registry()
    settings: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    with scripted_model(request) as fake:
        # The demo's own key and endpoint: ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL are not used.
        planner = Planner(
            args.store,
            args.executor,
            registry=registry,
            executor_options=_one_shot_options(registry, args.executor),
            api_key="planner-demo",
            base_url=fake.base_url,
            **settings,
        )
        planner.strategy("agno")  # a missing extra fails here, before anything starts
        progress.note(f"offline demo: the agno strategy against a scripted model at {fake.url}")
        try:
            code, execution = anyio.run(_generate, planner, request, progress)
        finally:
            progress.close()
    if code == EXIT_INTERRUPTED:
        return code
    if execution.status is ExecutionStatus.COMPLETED:
        sys.stdout.write(json.dumps(execution.plan_json, indent=2, ensure_ascii=False) + "\n")
        usage = execution.metadata.usage
        progress.note(
            f"model {', '.join(execution.metadata.models)}: {usage.input_tokens} input, "
            f"{usage.cache_creation_input_tokens} cache-write and {usage.output_tokens} output "
            f"tokens, about ${usage.cost_usd:.4f}"
        )
        if args.store.startswith("memory:"):
            note = f" ({_MEMORY_NOTE})"
        else:
            same = args.store == (os.environ.get("PLANNER_STORE") or DEFAULT_STORE)
            note = f"; see it with: planner show {execution.id}" + (
                "" if same else f" --store {args.store}"
            )
        progress.note(f"plan stored in {args.store} as execution {execution.id}{note}")
        return EXIT_OK
    error = execution.error
    what = f"{error.type}: {error.message}" if error else execution.status.value
    print(f"planner: error: demo plan generation {execution.id} {what}", file=sys.stderr)
    return EXIT_FAILED


# -- show, list, plugins ----------------------------------------------------------------------


async def _show(planner: Planner, execution_id: str, with_events: bool) -> dict[str, Any]:
    async with planner.store:
        record: dict[str, Any] = (await planner.get(execution_id)).model_dump(mode="json")
        if with_events:
            events = await planner.events(execution_id)
            record["events"] = [e.model_dump(mode="json") for e in events]
        return record


async def _parent_diff(planner: Planner, execution_id: str) -> PlanDiff:
    async with planner.store:
        execution = await planner.get(execution_id)
        parent_id = execution.parent_execution_id
        if parent_id is None:
            raise _Exit(
                EXIT_USAGE,
                f"execution {execution_id} has no parent: it is not a refinement "
                "(only executions made by refine have one)",
            )
        if execution.plan_json is None:
            raise _Exit(
                EXIT_USAGE,
                f"execution {execution_id} has no plan to compare (status "
                f"{execution.status.value})",
            )
        try:
            parent = await planner.get(parent_id)
        except ExecutionNotFoundError:
            raise _Exit(
                EXIT_USAGE, f"the parent execution {parent_id} is no longer in the store"
            ) from None
        try:
            return diff(parent, execution)
        except ExecutionStateError as exc:  # the parent has no plan
            raise _Exit(EXIT_USAGE, str(exc)) from None


def _cmd_show(args: argparse.Namespace) -> int:
    planner = _planner(args)
    if args.diff_parent:
        if args.events:
            raise _Exit(EXIT_USAGE, "--diff-parent and --events cannot be combined")
        try:
            changes = anyio.run(_parent_diff, planner, args.id)
        except ExecutionNotFoundError as exc:
            raise _not_found(args, exc) from None
        if getattr(args, "json", False):
            _print_json(changes.model_dump(mode="json"))
        else:
            sys.stdout.write(str(changes))
        return EXIT_OK
    try:
        record = anyio.run(_show, planner, args.id, args.events)
    except ExecutionNotFoundError as exc:
        raise _not_found(args, exc) from None
    _print_json(record)
    return EXIT_OK


async def _list(planner: Planner, args: argparse.Namespace) -> list[Execution]:
    async with planner.store:
        return await planner.list(status=args.status, limit=args.limit, before=args.before)


def _summary(execution: Execution) -> dict[str, Any]:
    title = (execution.plan_json or {}).get("title")
    return {
        "id": execution.id,
        "status": execution.status.value,
        "created_at": execution.created_at.isoformat(),
        "completed_at": execution.completed_at.isoformat() if execution.completed_at else None,
        "strategy": execution.metadata.planning_strategy,
        "title": title if isinstance(title, str) else None,
        "description": execution.request.description,
        "error": execution.error.model_dump(mode="json") if execution.error else None,
    }


def _cmd_list(args: argparse.Namespace) -> int:
    planner = _planner(args)
    try:
        executions = anyio.run(_list, planner, args)
    except ExecutionNotFoundError as exc:
        raise _not_found(args, exc) from None
    if args.json:
        _print_json([_summary(e) for e in executions])
    else:
        for e in executions:
            title = _one_line(_summary(e)["title"] or e.request.description, 70)
            created = e.created_at.strftime("%Y-%m-%d %H:%M:%S")
            strategy = e.metadata.planning_strategy
            print(f"{e.id}  {e.status.value:<9}  {created}  {strategy:<15}  {title}")
    if not executions and args.store.startswith("memory:"):
        print(f"planner: no executions; note: {_MEMORY_NOTE}", file=sys.stderr)
    return EXIT_OK


def _factory_name(factory: Any) -> str:
    if isinstance(factory, str):
        return factory
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry = default_registry()
    table: dict[str, list[dict[str, Any]]] = {}
    kinds: tuple[tuple[Kind, str], ...] = (
        ("store", "stores"),
        ("executor", "executors"),
        ("strategy", "strategies"),
    )
    for kind, title in kinds:
        rows: dict[str, dict[str, Any]] = {}
        for name in registry.names(kind):
            reg = registry.registration(kind, name)
            rows[name] = {
                "name": name,
                "factory": _factory_name(reg.factory),
                "extra": reg.extra,
                "plugin": reg.plugin,
            }
        if kind == "strategy":
            for name, target in args.strategy:
                _load_strategy(name, target)  # report a bad binding here too
                rows[name] = {
                    "name": name,
                    "factory": target,
                    "extra": None,
                    "plugin": "--strategy",
                }
        table[title] = [rows[n] for n in sorted(rows)]
    if args.json:
        _print_json(table)
        return EXIT_OK
    for title, rows_of_kind in table.items():
        print(f"{title}:")
        for row in rows_of_kind:
            extra = f"  (needs planner[{row['extra']}])" if row["extra"] else ""
            print(f"  {row['name']:<16} {row['factory']}{extra}  [{row['plugin']}]")
        if not rows_of_kind:
            print("  (none)")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from planner.http import create_app, serve, verifier_from_env

    try:
        verifier = verifier_from_env()
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    if verifier is None:
        raise _Exit(
            EXIT_USAGE,
            "no API tokens: set PLANNER_API_TOKENS=token=tenant[,token=tenant...], "
            "PLANNER_JWT_SECRET or PLANNER_JWT_PUBLIC_KEY",
        )
    planner = _planner(args)
    app = create_app(planner, verifier=verifier, max_body_size=args.max_body_size)
    serve(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


async def _run_worker(planner: Planner, where: str) -> int:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            await planner.start()
        except RuntimeError as exc:  # temporalio: "Failed client connect: ..."
            await planner.store.close()
            raise _Exit(EXIT_FAILED, f"cannot start the worker on {where}: {exc}") from None
        try:
            print(f"planner: worker polling {where}", file=sys.stderr, flush=True)
            async for _ in signals:
                print("planner: worker shutting down", file=sys.stderr, flush=True)
                break
        finally:
            with anyio.CancelScope(shield=True):
                await planner.close()
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    registry = default_registry()
    url = f"temporal://{args.temporal}/{args.namespace}"
    try:
        executor = registry.create(
            "executor",
            url,
            task_queue=args.task_queue,  # a keyword: the name is not URL-encoded
            worker=True,
            max_concurrent_activities=args.max_concurrent,
            graceful_shutdown_timeout=args.grace,
        )
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    strategies = {name: _load_strategy(name, target) for name, target in args.strategy}
    settings: dict[str, Any] = {}
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    if args.lease_ttl is not None:
        settings["lease_ttl"] = args.lease_ttl
    try:
        planner = Planner(args.store, executor, strategies, registry=registry, **settings)
    except ValueError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    where = f"task queue {args.task_queue!r} of {args.temporal}/{args.namespace}"
    code = anyio.run(_run_worker, planner, where)
    if sys.argv[1:2] == ["worker"]:  # this process is the worker program, not a caller of main()
        # After the clean shutdown, skip the interpreter's teardown: temporalio's native
        # threads may still call into Python then and abort the process
        # (temporalio/sdk-python#300), turning a clean exit into SIGABRT.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# -- main -------------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"planner: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the ``planner`` command and return its exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 success; 1 the generation failed or was cancelled; 2 bad usage, an
        invalid request, an unknown execution id or plugin, or a missing extra;
        130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed them
        return exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _Exit as exc:
        _error(str(exc))
        return exc.code
    except InvalidRequestError as exc:
        _error(f"invalid plan request ({len(exc.errors)} error(s)):")
        for e in exc.errors:
            loc = ".".join(str(part) for part in e["loc"]) or "(request)"
            print(f"  {loc}: {e['msg']} ({e['type']})", file=sys.stderr)
        return EXIT_USAGE
    except (PluginError, ExecutionNotFoundError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except SubmitError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``planner list | head``): say nothing more.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
