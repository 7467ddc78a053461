"""How ``planner generate`` shows progress: rich on a terminal, plain lines on pipes.

Each test runs the real program (``python -m planner``) in a subprocess.  The
terminal case gives it a pseudo-terminal (:mod:`pty`) as stderr, the way a
shell does, while stdout stays a pipe, so the plan can still be parsed; the
plain case connects both to pipes.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from planner import TaskPlan, validate_plan
from planner.testing import sample_request

REPO = Path(__file__).resolve().parents[1]
S = "tests.cli_strategies"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEADLINE = 90.0


@dataclass
class Run:
    code: int
    out: str
    err: str


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env.pop("NO_COLOR", None)
    env.update(PLANNER_STORE=f"sqlite:///{tmp_path / 'planner.db'}", TERM="xterm-256color")
    env.update(COLUMNS="120", LINES="40")
    env.update(extra)
    return env


def command(tmp_path: Path, strategy: str, *options: str) -> list[str]:
    request = tmp_path / "request.json"
    request.write_text(sample_request(planning_strategy="agno").model_dump_json())
    return [
        sys.executable,
        "-m",
        "planner",
        "generate",
        str(request),
        "--strategy",
        f"agno={S}:{strategy}",
        *options,
    ]


def run_on_a_terminal(argv: list[str], env: dict[str, str]) -> Run:
    """Run ``argv`` with a pseudo-terminal as stderr and a pipe as stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, out.decode(), b"".join(chunks).decode())


def run_on_pipes(argv: list[str], env: dict[str, str]) -> Run:
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=DEADLINE, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def plain_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def screen(err: str) -> str:
    """What a terminal shows at the end: colours dropped, each line as last overwritten."""
    lines = ANSI.sub("", err).replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in lines)


def test_a_terminal_gets_a_live_bar_and_styled_lines(tmp_path: Path) -> None:
    argv = command(tmp_path, "plan_fn")

    result = run_on_a_terminal(argv, environment(tmp_path))

    assert result.code == 0, result.err
    # stdout is still the plan and nothing else.
    plan = TaskPlan.model_validate_json(result.out)
    assert validate_plan(plan, sample_request(planning_strategy="agno")) == []
    # Drawn by rich: escape sequences, the bar, the cursor hidden then shown again.
    assert "\x1b[" in result.err
    assert "━" in result.err
    assert "\x1b[?25l" in result.err
    assert result.err.rstrip().endswith("\x1b[?25h")
    text = screen(result.err)
    # Every event is still listed, the step shows in the bar, and the bar ends full.
    for seq, kind in enumerate(
        ["status", "status", "progress", "step_started", "tool_call", "tool_result"], 1
    ):
        assert re.search(rf"^\s*{seq}\s+{kind}\s", text, re.M), (seq, kind, text)
    assert "Select agent" in text
    assert re.search(r"Plan generated successfully\s.*━+\s+100%", text)
    assert re.search(r"^\s*9\s+done\s+Plan generation completed", text, re.M)


def test_pipes_get_plain_lines(tmp_path: Path) -> None:
    argv = command(tmp_path, "plan_fn")

    result = run_on_pipes(argv, environment(tmp_path))

    assert result.code == 0, result.err
    TaskPlan.model_validate_json(result.out)
    assert "\x1b" not in result.err
    assert "━" not in result.err
    lines = plain_lines(result.err)
    assert lines[0].startswith("planner: execution ")
    assert [line.split()[1] for line in lines[1:]] == [
        "status",
        "status",
        "progress",
        "step_started",
        "tool_call",
        "tool_result",
        "step_completed",
        "complete",
        "done",
    ]
    assert lines[3] == "   3  progress         Reading the inventory - 10%"


def test_a_dumb_terminal_gets_plain_lines(tmp_path: Path) -> None:
    argv = command(tmp_path, "plan_fn")

    result = run_on_a_terminal(argv, environment(tmp_path, TERM="dumb"))

    assert result.code == 0, result.err
    assert "\x1b" not in result.err
    assert "━" not in result.err
    assert plain_lines(result.err)[-1].split()[1] == "done"


def test_a_terminal_without_rich_gets_plain_lines(tmp_path: Path) -> None:
    # The interpreter runs main() with rich made unimportable, as without planner[cli].
    code = "import sys; sys.modules['rich'] = None; from planner.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, *command(tmp_path, "plan_fn")[3:]]

    result = run_on_a_terminal(argv, environment(tmp_path))

    assert result.code == 0, result.err
    assert "\x1b" not in result.err
    assert [line.split()[1] for line in plain_lines(result.err)[1:]][-2:] == ["complete", "done"]


def test_json_events_on_a_terminal_stay_json_lines(tmp_path: Path) -> None:
    argv = command(tmp_path, "plan_fn", "--json-events")

    result = run_on_a_terminal(argv, environment(tmp_path))

    assert result.code == 0, result.err
    events = [json.loads(line) for line in plain_lines(result.err)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "done"


def test_a_failure_on_a_terminal_ends_the_bar_and_says_why(tmp_path: Path) -> None:
    argv = command(tmp_path, "failing_fn")

    result = run_on_a_terminal(argv, environment(tmp_path))

    assert result.code == 1
    assert result.out == ""
    text = screen(result.err)
    assert re.search(r"^\s*\d+\s+error\s+.*the model refused to plan", text, re.M)
    assert "\x1b[1;31m" in result.err  # the error line is bold red
    last = plain_lines(text)[-1]
    assert last.startswith("planner: error: plan generation ")
    assert "failed: StrategyError: the model refused to plan" in last
    assert result.err.count("\x1b[?25l") == result.err.count("\x1b[?25h") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_on_a_terminal_cancels_and_restores_the_cursor(tmp_path: Path) -> None:
    argv = command(tmp_path, "interrupting_fn")

    result = run_on_a_terminal(argv, environment(tmp_path))

    assert result.code == 130
    text = screen(result.err)
    assert "interrupted: cancelling execution" in text
    assert re.search(r"^\s*\d+\s+cancelled\s", text, re.M)
    assert result.err.count("\x1b[?25l") == result.err.count("\x1b[?25h") == 1


# -- output for scripts: --json, exit codes ----------------------------------------------


def test_every_command_that_prints_data_prints_json_for_scripts(tmp_path: Path) -> None:
    env = environment(tmp_path)
    generated = run_on_pipes(command(tmp_path, "plan_fn", "--json-events"), env)
    assert generated.code == 0, generated.err
    plan = json.loads(generated.out)
    execution_id = json.loads(plain_lines(generated.err)[0])["execution_id"]

    def planner(*argv: str) -> Run:
        return run_on_pipes(
            [sys.executable, "-m", "planner", *argv, "--strategy", f"agno={S}:plan_fn"], env
        )

    shown = planner("show", execution_id, "--json")
    assert shown.code == 0, shown.err
    record = json.loads(shown.out)
    assert record["id"] == execution_id and record["plan_json"] == plan
    listed = planner("list", "--json")
    assert listed.code == 0, listed.err
    assert [(e["id"], e["status"]) for e in json.loads(listed.out)] == [(execution_id, "completed")]
    plugins = planner("plugins", "--json")
    assert plugins.code == 0, plugins.err
    table = json.loads(plugins.out)
    assert "sqlite" in [row["name"] for row in table["stores"]]
    assert "agno" in [row["name"] for row in table["strategies"]]
    missing = planner("show", "no-such-id", "--json")
    assert (missing.code, missing.out) == (2, "")
    assert "no execution with id 'no-such-id'" in missing.err


def test_the_commands_that_print_data_accept_json() -> None:
    from planner.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    options = {
        name: {o for a in sub._actions for o in a.option_strings} for name, sub in commands.items()
    }
    for name in ("show", "list", "plugins"):
        assert "--json" in options[name], name
    for name in ("generate", "demo"):  # stdout is the plan as JSON; these make stderr JSON too
        assert "--json-events" in options[name], name


def test_exit_codes_are_documented_where_users_look() -> None:
    from planner import cli

    help_text = cli.build_parser().format_help()
    table = (REPO / "docs" / "cli.md").read_text(encoding="utf-8").split("## Exit codes", 1)[1]
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED):
        assert re.search(rf"^\s+{code}\s+\S", help_text, re.M), code
        assert re.search(rf"^\| {code} \| \S", table, re.M), code
