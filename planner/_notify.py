"""Wake async waiters on any thread's event loop when a key changes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import anyio
import anyio.lowlevel

__all__ = ["Notifier"]


class _Waiter:
    """One waiting task: woken from its own thread directly, from others thread-safely.

    On asyncio (the common case, and the hot path of every stream) it is a bare
    future of the running loop; on other anyio backends an ``anyio.Event``.
    """

    __slots__ = ("_call_soon", "_event", "_future", "_thread")

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._future: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio through anyio
            self._event = anyio.Event()
            native = anyio.lowlevel.current_token().native_token
            self._call_soon: Callable[[Callable[[], object]], object] = native.run_sync_soon  # type: ignore[attr-defined]
        else:
            self._future = loop.create_future()
            self._call_soon = loop.call_soon_threadsafe

    def _set(self) -> None:
        if self._future is not None:
            if not self._future.done():
                self._future.set_result(None)
        elif self._event is not None:
            self._event.set()

    def wake(self) -> None:
        if threading.get_ident() == self._thread:
            self._set()
        else:
            try:
                self._call_soon(self._set)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    async def wait(self, timeout: float) -> None:
        if self._future is None:
            assert self._event is not None
            with anyio.move_on_after(timeout):
                await self._event.wait()
            return
        loop = self._future.get_loop()
        timer = loop.call_later(timeout, self._set)
        try:
            await self._future
        finally:
            timer.cancel()


class Notifier:
    """Lets tasks wait for a key (an execution id) and others wake them, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}

    def notify(self, key: str) -> None:
        """Wake every task waiting on ``key``."""
        with self._lock:
            waiters = self._waiters.pop(key, None)
        if waiters:
            for waiter in waiters:
                waiter.wake()

    def notify_all(self) -> None:
        """Wake every waiting task, whatever its key."""
        with self._lock:
            keys = list(self._waiters)
        for key in keys:
            self.notify(key)

    async def wait(self, key: str, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` is true, re-checking after each notification of ``key``.

        Returns:
            ``ready()`` at the end: False when ``timeout`` seconds passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            waiter = _Waiter()
            with self._lock:
                self._waiters.setdefault(key, set()).add(waiter)
            try:
                if ready():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await waiter.wait(remaining)
            finally:
                with self._lock:
                    waiters = self._waiters.get(key)
                    if waiters is not None:
                        waiters.discard(waiter)
                        if not waiters:
                            del self._waiters[key]
