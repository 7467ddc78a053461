"""PostgreSQL test helpers: schema clean-up, a reply-losing proxy, child-process entry points.

The server is the one on 127.0.0.1:5432 (``PLANNER_TEST_POSTGRES_URL`` overrides it).
Child processes run ``python -m tests.pg_support COMMAND ...``:

- ``stream URL SCHEMA EXECUTION_ID AFTER``: print each streamed event as a JSON line.
- ``generate URL SCHEMA LEASE_TTL``: start a generation whose strategy emits two
  progress events and then hangs; print the execution id, then wait to be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg

from planner.backends.stores.postgres import PostgresStore
from planner.context import RunContext
from planner.models import TaskPlanRequest
from planner.plan import TaskPlan
from planner.planner import Planner
from planner.testing import FunctionStrategy, sample_plan, sample_request

PG_URL = os.environ.get("PLANNER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


PG_BIN = Path(os.environ.get("PLANNER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ThrowawayCluster:
    """A PostgreSQL server of a test's own (``initdb``, ``fsync=off``), to restart at will.

    ``initdb`` refuses root, so as root the server runs as the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="planner-pg-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        """Start the server (waits until it accepts connections)."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l",
                  str(self.dir / "log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session, as a restart does."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def __enter__(self) -> ThrowawayCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class LostReplyProxy:
    """A TCP proxy to the server that can lose one reply, as a dying connection would.

    :meth:`arm` names byte strings; the first connection whose client bytes
    contain them all, in order, has the server's next reply thrown away and is
    cut: the server has done (and committed) the work, the client never hears.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self.port = 0
        self.cuts = 0
        self._markers: list[bytes] = []
        self._armed_by: object | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    def arm(self, *markers: bytes) -> None:
        """Lose the reply that follows the client sending ``markers``."""
        self._markers = list(markers)
        self._armed_by = None

    async def __aenter__(self) -> LostReplyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers)
        await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.add(server_w)
        me = object()
        seen = 0

        async def upstream() -> None:
            nonlocal seen
            while data := await client_r.read(65536):
                if self._markers and self._armed_by in (None, me):
                    while seen < len(self._markers) and self._markers[seen] in data:
                        self._armed_by = me
                        seen += 1
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if self._markers and self._armed_by is me and seen == len(self._markers):
                    self._markers = []
                    self.cuts += 1
                    return  # the reply is lost with the connection
                client_w.write(data)
                await client_w.drain()

        try:
            async with anyio.create_task_group() as tg:

                async def run(job: Callable[[], Awaitable[None]]) -> None:
                    with contextlib.suppress(OSError):
                        await job()
                    tg.cancel_scope.cancel()

                tg.start_soon(run, upstream)
                tg.start_soon(run, downstream)
        finally:
            for writer in (client_w, server_w):
                writer.transport.abort()
                self._writers.discard(writer)
            self._handlers.discard(task)


def request_for_tests() -> TaskPlanRequest:
    """A valid request for the ``agno`` strategy name (bound to test functions)."""
    return sample_request(planning_strategy="agno")


async def _two_steps_then_hang(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    await ctx.emit("progress", message="step 1")
    await ctx.emit("progress", message="step 2")
    await anyio.sleep_forever()
    return sample_plan(request)  # pragma: no cover


async def _generate_and_hang(url: str, schema: str, lease_ttl: float) -> None:
    store = PostgresStore(url, schema=schema, pool_max_size=2)
    async with Planner(
        store, strategies={"agno": FunctionStrategy(_two_steps_then_hang)}, lease_ttl=lease_ttl
    ) as planner:
        response = await planner.generate(request_for_tests())
        async for event in planner.stream(response.execution_id):
            if event.type == "progress" and event.data.get("message") == "step 2":
                break
        print(response.execution_id, flush=True)
        await anyio.sleep_forever()


async def _stream(url: str, schema: str, execution_id: str, after: int) -> None:
    store = PostgresStore(url, schema=schema, pool_max_size=2, verify_only=True)
    async with Planner(store, executor_options={"recover": False}) as planner:
        print("ready", flush=True)
        async for event in planner.stream(execution_id, after=after):
            print(event.model_dump_json(), flush=True)


def main(argv: list[str]) -> None:
    """Run a child-process command (see the module docstring)."""
    command, *args = argv
    if command == "stream":
        url, schema, execution_id, after = args
        anyio.run(_stream, url, schema, execution_id, int(after))
    elif command == "generate":
        url, schema, ttl = args
        anyio.run(_generate_and_hang, url, schema, float(ttl))
    else:
        raise SystemExit(f"unknown command {command!r}")


def event_lines(text: str) -> list[dict[str, object]]:
    """Parse the JSON lines a ``stream`` child printed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


if __name__ == "__main__":
    main(sys.argv[1:])
