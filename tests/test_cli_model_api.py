"""``planner generate`` reaches the model API its environment names, as a user runs it.

With ``ANTHROPIC_API_KEY`` set and no ``ANTHROPIC_BASE_URL``, the strategies
call the SDKs' default endpoint, the real API.  The real API is out of reach
here, so the endpoint is checked in two ways, both with the real command in a
subprocess: ``ANTHROPIC_BASE_URL`` pointed at FakeAnthropic (the key from the
environment arrives there and a plan comes back), and, without it, an HTTPS
proxy that records where the SDK (or the Claude CLI) tries to connect and
refuses to forward anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.plan import TaskPlan, validate_plan
from planner.strategies.base import default_models
from planner.testing.fake_anthropic import Block, FakeAnthropic, json_reply, structured_output
from planner.testing.samples import sample_plan, sample_request

STRATEGIES = ["agno", "claude_code_sdk"]


def planner_command() -> list[str]:
    script = shutil.which("planner")
    return [script] if script else [sys.executable, "-m", "planner"]


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The test process's environment without planner, Anthropic or proxy settings."""
    drop = ("PLANNER_", "ANTHROPIC_", "CLAUDE_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k.lower() not in ("https_proxy", "http_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = ""
    env["AGNO_TELEMETRY"] = "false"
    env["HOME"] = str(tmp_path)  # nothing of the user's own configuration
    return env


def generate(
    strategy: str, tmp_path: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    request = sample_request(planning_strategy=strategy, quick_mode=True)
    path = tmp_path / "request.json"
    path.write_text(request.model_dump_json())
    return subprocess.run(
        [*planner_command(), "generate", str(path), "--store", "memory://", *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=90,
        check=False,
    )


def plan_reply(strategy: str) -> Block:
    plan = sample_plan(sample_request(planning_strategy=strategy, quick_mode=True))
    data = plan.model_dump(mode="json")
    return structured_output(data) if strategy == "claude_code_sdk" else json_reply(data)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_key_and_endpoint_come_from_the_environment(
    strategy: str, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    if strategy == "claude_code_sdk":
        pytest.importorskip("claude_agent_sdk")
    fake_anthropic.api_key = "key-from-the-environment"  # any other key gets 401
    fake_anthropic.add(plan_reply(strategy))
    env = clean_env(tmp_path)
    env["ANTHROPIC_API_KEY"] = "key-from-the-environment"
    env["ANTHROPIC_BASE_URL"] = fake_anthropic.base_url

    result = generate(strategy, tmp_path, env)

    assert result.returncode == 0, result.stderr
    plan = TaskPlan.model_validate_json(result.stdout)
    assert validate_plan(plan, sample_request(planning_strategy=strategy)) == []
    sent = fake_anthropic.messages_requests
    assert sent and {r.api_key for r in sent} == {"key-from-the-environment"}
    assert {r.model for r in sent} == {default_models()[1]}
    fake_anthropic.assert_exhausted()


class ConnectRecorder:
    """An HTTP proxy that records each ``CONNECT host:port`` and forwards nothing."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self.asked = threading.Event()
        """Set when the first request arrived."""
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    method, target, *_ = head.split(b"\r\n", 1)[0].decode().split(" ")
                    self.targets.append(f"{method} {target}")
                    self.asked.set()
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except (OSError, ValueError):
                    continue

    def __enter__(self) -> ConnectRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


@pytest.fixture
def proxy() -> Iterator[ConnectRecorder]:
    with ConnectRecorder() as recorder:
        yield recorder


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_without_a_base_url_the_real_api_is_called(
    strategy: str, proxy: ConnectRecorder, tmp_path: Path
) -> None:
    if strategy == "claude_code_sdk":
        pytest.importorskip("claude_agent_sdk")
    env = clean_env(tmp_path)
    env["ANTHROPIC_API_KEY"] = "a-real-looking-key"
    env["HTTPS_PROXY"] = env["https_proxy"] = proxy.url
    path = tmp_path / "request.json"
    path.write_text(sample_request(planning_strategy=strategy).model_dump_json())

    # The proxy refuses every tunnel, so the run could only retry and fail: once the
    # first tunnel was asked for, Ctrl-C ends it.
    process = subprocess.Popen(
        [*planner_command(), "generate", str(path), "--store", "memory://"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert proxy.asked.wait(60), "no connection was attempted"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert proxy.targets[0] == "CONNECT api.anthropic.com:443", proxy.targets
    assert process.returncode == 130, err
    assert out == ""
