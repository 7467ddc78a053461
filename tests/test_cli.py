"""The ``planner`` command line, run in-process through ``main(argv)`` (and once as a process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planner import TaskPlan, cli, hookimpl, validate_plan
from planner.backends.stores.memory import MemoryStore
from planner.plugins import PluginRegistry
from planner.testing import sample_plan, sample_request

REPO = Path(__file__).resolve().parents[1]
S = "tests.cli_strategies"
AGNO = ["--strategy", f"agno={S}:plan_fn"]


DEFAULT_STORE = cli.DEFAULT_STORE


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The defaults under test come from these; a developer's shell must not change them.
    for name in ("PLANNER_STORE", "PLANNER_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    # The default store is ./planner.db: keep it out of the checkout.
    monkeypatch.setattr(cli, "DEFAULT_STORE", f"sqlite:///{tmp_path / 'default.db'}")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_request(tmp_path: Path, **fields: Any) -> Path:
    path = tmp_path / "request.json"
    path.write_text(sample_request(**fields).model_dump_json(), encoding="utf-8")
    return path


class SharedStorePlugin:
    """Registers ``shared://``: one MemoryStore for all commands of a test, like a database file."""

    def __init__(self) -> None:
        self.store = MemoryStore()

    @hookimpl
    def register_stores(self, register: Any) -> None:
        register("shared", lambda url, **options: self.store)


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--store shared://``: executions persist across main() calls within the test."""
    registry = PluginRegistry(plugins=[SharedStorePlugin()])
    monkeypatch.setattr(cli, "default_registry", lambda: registry)
    return ["--store", "shared://"]


def execution_id_of(err: str) -> str:
    """The execution id from --json-events output."""
    first = json.loads(err.splitlines()[0])
    return str(first["execution_id"])


# -- generate ------------------------------------------------------------------------


def test_generate_from_file_prints_the_plan_and_live_progress(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(capsys, "generate", str(path), *AGNO)

    assert code == 0, err
    request = sample_request(planning_strategy="agno")
    plan = TaskPlan.model_validate(json.loads(out))
    assert validate_plan(plan, request) == []
    assert plan.title == sample_plan(request).title
    lines = err.splitlines()
    assert "execution" in lines[0]
    events = [line.split() for line in lines[1:]]
    assert [int(e[0]) for e in events] == list(range(1, len(events) + 1))
    assert [e[1] for e in events][-3:] == ["step_completed", "complete", "done"]
    assert any("Reading the inventory" in line and "10%" in line for line in lines)
    assert any("tool_call" in line and "get_top_agents" in line for line in lines)
    assert any("step_started" in line and "Select agent" in line for line in lines)


def test_generate_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = sample_request(planning_strategy="agno").model_dump_json()
    monkeypatch.setattr(sys, "stdin", io.StringIO(body))

    code, out, err = run(capsys, "generate", "-", "--strategy", f"agno={S}:async_plan_fn")

    assert code == 0, err
    assert TaskPlan.model_validate_json(out).total_tasks == 3
    assert "Planning asynchronously" in err


@pytest.mark.parametrize("option", ["--strategy-name", "--planning-strategy"])
def test_generate_overrides_strategy_and_quick_mode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    path = write_request(tmp_path)  # planning_strategy claude_code_sdk, quick_mode false

    code, out, err = run(
        capsys, "generate", str(path), "--strategy", f"mine={S}:echo_fn", option, "mine", "--quick"
    )

    assert code == 0, err
    assert json.loads(out)["title"] == "quick=True strategy=mine"


def test_generate_binds_a_strategy_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(capsys, "generate", str(path), "--strategy", f"agno={S}:SampleStrategy")

    assert code == 0, err
    assert json.loads(out)["title"] == "from SampleStrategy"


def test_generate_output_file_and_quiet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_request(tmp_path, planning_strategy="agno")
    target = tmp_path / "plan.json"

    code, out, err = run(capsys, "generate", str(path), *AGNO, "--quiet", "--output", str(target))

    assert (code, out, err) == (0, "", "")
    TaskPlan.model_validate_json(target.read_text(encoding="utf-8"))


def test_generate_refuses_an_output_directory_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(capsys, "generate", str(path), *AGNO, "-o", str(tmp_path / "no/plan.json"))

    assert code == 2
    assert out == ""
    assert "--output" in err


def test_generate_json_events_are_gap_free_json_lines_ending_with_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(capsys, "generate", str(path), *AGNO, "--json-events")

    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-2:] == ["complete", "done"]
    assert [e["type"] for e in events].count("complete") == 1
    assert len({e["execution_id"] for e in events}) == 1
    assert events[-2]["data"]["plan"] == json.loads(out)
    assert any(e["type"] == "tool_call" for e in events)


def test_strategy_that_raises_exits_1_with_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(capsys, "generate", str(path), "--strategy", f"agno={S}:failing_fn")

    assert code == 1
    assert out == ""
    assert "About to fail" in err
    last = err.splitlines()[-1]
    assert "StrategyError" in last
    assert "the model refused to plan" in last


def test_strategy_that_raises_with_json_events_keeps_stderr_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, _, err = run(
        capsys, "generate", str(path), "--strategy", f"agno={S}:failing_fn", "--json-events"
    )

    assert code == 1
    events = [json.loads(line) for line in err.splitlines()]
    (error,) = [e for e in events if e["type"] == "error"]
    assert error["data"]["error"] == "StrategyError"
    assert events[-1]["type"] == "done"


def test_timeout_fails_the_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(
        capsys, "generate", str(path), "--strategy", f"agno={S}:slow_fn", "--timeout", "0.2"
    )

    assert code == 1
    assert out == ""
    assert "timeout" in err.splitlines()[-1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_the_execution_and_exits_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shared: list[str]
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, out, err = run(
        capsys,
        "generate",
        str(path),
        *shared,
        "--strategy",
        f"agno={S}:interrupting_fn",
        "--json-events",
    )

    assert code == 130
    assert out == ""
    lines = err.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-2:] == ["cancelled", "done"]
    assert events[-2]["data"]["reason"] == "requested"
    code, out, _ = run(capsys, "show", events[0]["execution_id"], *shared)
    assert code == 0
    assert json.loads(out)["status"] == "cancelled"


# -- bad input -------------------------------------------------------------------------


def test_invalid_json_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text('{"description": "x",\n  oops}', encoding="utf-8")

    code, out, err = run(capsys, "generate", str(path), *AGNO)

    assert code == 2
    assert out == ""
    assert "not valid JSON" in err
    assert "line 2" in err
    assert "Traceback" not in err


def test_empty_stdin_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))

    code, _, err = run(capsys, "generate", "-", *AGNO)

    assert code == 2
    assert "stdin" in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "generate", str(tmp_path / "absent.json"), *AGNO)

    assert code == 2
    assert "cannot read" in err
    assert "absent.json" in err


def test_invalid_request_lists_each_error_with_loc_msg_and_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = sample_request(planning_strategy="agno").model_dump(mode="json")
    del data["description"]
    data["priority"] = "urgent"
    del data["agents"][0]["id"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    code, out, err = run(capsys, "generate", str(path), *AGNO)

    assert code == 2
    assert out == ""
    assert "description: Field required (missing)" in err
    assert "agents.0.id: Field required (missing)" in err
    assert any(
        line.strip().startswith("priority: Input should be") and line.endswith("(literal_error)")
        for line in err.splitlines()
    )
    assert "Traceback" not in err


def test_a_request_that_is_not_an_object_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "request.json"
    path.write_text("[1, 2]", encoding="utf-8")

    code, _, err = run(capsys, "generate", str(path), *AGNO)

    assert code == 2
    assert "(request): " in err
    assert "(model_type)" in err


def test_unknown_strategy_name_suggests_the_close_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path)

    code, out, err = run(capsys, "generate", str(path), *AGNO, "--strategy-name", "agnoo")

    assert code == 2
    assert out == ""
    assert "unknown strategy 'agnoo'" in err
    assert "Did you mean 'agno'?" in err
    assert "Traceback" not in err


def test_strategy_not_available_says_how_to_choose_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_request(tmp_path)

    code, _, err = run(capsys, "generate", str(path), *AGNO, "--strategy-name", "agnoo")

    assert code == 2
    assert "'agnoo'" in err
    assert "Did you mean 'agno'?" in err
    assert "--strategy-name" in err


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--store", "memroy://", "Did you mean 'memory'?"),
        ("--executor", "inproces", "Did you mean 'inprocess'?"),
    ],
)
def test_unknown_store_or_executor_suggests_the_close_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str, expected: str
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, _, err = run(capsys, "generate", str(path), *AGNO, option, value)

    assert code == 2
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PLANNER_STORE", "memroy://", "Did you mean 'memory'?"),
        ("PLANNER_EXECUTOR", "inproces", "Did you mean 'inprocess'?"),
    ],
)
def test_store_and_executor_defaults_come_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)

    code, _, err = run(capsys, "list")

    assert code == 2
    assert expected in err


def test_a_store_url_the_store_refuses_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "--store", "memory")  # the scheme without "://"

    assert code == 2
    assert "memory://" in err
    assert "Traceback" not in err


def test_missing_extra_exits_2_with_the_pip_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A store plugin whose module exists but needs a package that is not installed.
    (tmp_path / "cli_vault_store.py").write_text(
        "import planner_cli_test_absent_package\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class VaultPlugin:
        @hookimpl
        def register_stores(self, register: Any) -> None:
            register("vault", "cli_vault_store:VaultStore", extra="vault")

    registry = PluginRegistry(plugins=[VaultPlugin()])
    monkeypatch.setattr(cli, "default_registry", lambda: registry)

    code, _, err = run(capsys, "list", "--store", "vault://secrets")

    assert code == 2
    assert 'pip install "planner[vault]"' in err
    assert "planner_cli_test_absent_package" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("agno", "NAME=MODULE:ATTRIBUTE"),
        (f"agno={S}", "NAME=MODULE:ATTRIBUTE"),
        ("agno=tests.no_such_module_for_cli:fn", "cannot import"),
        (f"agno={S}:no_such_function", "no attribute"),
        (f"agno={S}:NOT_CALLABLE", "not a Strategy"),
    ],
)
def test_bad_strategy_option_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str, expected: str
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")

    code, _, err = run(capsys, "generate", str(path), "--strategy", spec)

    assert code == 2
    assert expected in err
    assert "Traceback" not in err


# -- show and list ---------------------------------------------------------------------


def test_show_and_list_read_the_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shared: list[str]
) -> None:
    first = write_request(tmp_path, planning_strategy="agno")
    code, first_plan, err = run(capsys, "generate", str(first), *shared, *AGNO, "--json-events")
    assert code == 0, err
    first_id = execution_id_of(err)
    second = tmp_path / "second.json"
    second.write_text(
        sample_request("Upgrade the staging cluster", planning_strategy="agno").model_dump_json(),
        encoding="utf-8",
    )
    code, _, err = run(capsys, "generate", str(second), *shared, *AGNO, "--json-events")
    assert code == 0, err
    second_id = execution_id_of(err)

    code, out, _ = run(capsys, "show", first_id, *shared)
    assert code == 0
    record = json.loads(out)
    assert record["id"] == first_id
    assert record["status"] == "completed"
    assert record["plan_json"] == json.loads(first_plan)
    assert record["metadata"]["planning_strategy"] == "agno"
    assert record["error"] is None
    assert record["completed_at"] is not None
    assert "events" not in record

    code, out, _ = run(capsys, "show", first_id, "--events", *shared)
    events = json.loads(out)["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "done"

    code, out, _ = run(capsys, "list", *shared)
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [second_id, first_id]  # newest first
    assert lines[0].split()[1] == "completed"
    assert "agno" in lines[0]
    assert "Upgrade the staging cluster" in lines[0]  # the plan's title names the task

    code, out, _ = run(capsys, "list", "--limit", "1", *shared)
    assert [line.split()[0] for line in out.splitlines()] == [second_id]
    code, out, _ = run(capsys, "list", "--before", second_id, *shared)
    assert [line.split()[0] for line in out.splitlines()] == [first_id]
    code, out, _ = run(capsys, "list", "--status", "failed", *shared)
    assert (code, out) == (0, "")

    code, out, _ = run(capsys, "list", "--json", *shared)
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [second_id, first_id]
    assert rows[1]["title"] == json.loads(first_plan)["title"]
    assert rows[1]["description"] == sample_request().description
    assert rows[1]["strategy"] == "agno"
    assert rows[1]["status"] == "completed"


def test_list_before_an_unknown_id_exits_2(
    capsys: pytest.CaptureFixture[str], shared: list[str]
) -> None:
    code, _, err = run(capsys, "list", "--before", "nope", *shared)

    assert code == 2
    assert "nope" in err


def test_failed_execution_shows_its_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shared: list[str]
) -> None:
    path = write_request(tmp_path, planning_strategy="agno")
    strategy = ["--strategy", f"agno={S}:failing_fn"]
    code, _, err = run(capsys, "generate", str(path), *shared, *strategy, "--json-events")
    assert code == 1
    execution_id = execution_id_of(err)

    code, out, _ = run(capsys, "show", execution_id, *shared)
    record = json.loads(out)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "StrategyError"
    assert record["plan_json"] is None
    code, out, _ = run(capsys, "list", "--status", "failed", "--json", *shared)
    assert [r["id"] for r in json.loads(out)] == [execution_id]


def test_show_unknown_id_exits_2_and_explains_the_memory_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "show", "0f0f0f0f-no-such-id", "--store", "memory://")

    assert code == 2
    assert out == ""
    assert "no execution with id '0f0f0f0f-no-such-id'" in err
    assert "memory store" in err


def test_list_on_the_memory_store_is_empty_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "list", "--store", "memory://")

    assert code == 0
    assert out == ""
    assert "memory store" in err
    code, out, _ = run(capsys, "list", "--json", "--store", "memory://")
    assert json.loads(out) == []


def test_the_default_store_is_planner_db_in_the_current_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DEFAULT_STORE == "sqlite:///planner.db"
    monkeypatch.setattr(cli, "DEFAULT_STORE", DEFAULT_STORE)
    monkeypatch.syspath_prepend(str(REPO))  # for tests.cli_strategies
    monkeypatch.chdir(tmp_path)
    path = write_request(tmp_path, planning_strategy="agno")

    code, _, err = run(capsys, "generate", str(path), *AGNO, "--json-events")
    assert code == 0, err
    execution_id = execution_id_of(err)
    assert (tmp_path / "planner.db").exists()

    # A new command (as a new process would) finds it in the same file.
    code, out, err = run(capsys, "show", execution_id)
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    code, out, _ = run(capsys, "list", "--json")
    assert [r["id"] for r in json.loads(out)] == [execution_id]


# -- plugins and help ------------------------------------------------------------------


def test_plugins_lists_what_is_installed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", *AGNO)

    assert code == 0
    assert "memory" in out
    assert "inprocess" in out
    assert f"{S}:plan_fn" in out

    code, out, _ = run(capsys, "plugins", "--json")
    table = json.loads(out)
    assert "memory" in [row["name"] for row in table["stores"]]
    assert "inprocess" in [row["name"] for row in table["executors"]]
    assert isinstance(table["strategies"], list)


def test_help_names_the_commands_and_the_memory_caveat(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("generate", "show", "list", "plugins"):
        assert command in out
    assert "130" in out  # the exit codes

    code, out, _ = run(capsys, "show", "--help")
    assert code == 0
    assert "memory://" in out
    assert "PLANNER_STORE" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)

    assert code == 2
    assert "usage:" in err


# -- a real process ----------------------------------------------------------------------


def test_python_m_planner_generate_in_a_subprocess(tmp_path: Path) -> None:
    request = sample_request(planning_strategy="agno")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env["PLANNER_STORE"] = f"sqlite:///{tmp_path / 'planner.db'}"  # not in the checkout

    result = subprocess.run(
        [sys.executable, "-m", "planner", "generate", "-", *AGNO],
        input=request.model_dump_json(),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    plan = TaskPlan.model_validate_json(result.stdout)
    assert validate_plan(plan, request) == []
    assert "Reading the inventory" in result.stderr
    assert result.stderr.splitlines()[-1].split()[1] == "done"
