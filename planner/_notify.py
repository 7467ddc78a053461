"""Wake async waiters on any thread's event loop when a key changes."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel

__all__ = ["Notifier"]


class _Waiter:
    __slots__ = ("_call_soon", "_thread", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self._thread = threading.get_ident()
        native = anyio.lowlevel.current_token().native_token
        # asyncio's token is the loop, trio's a TrioToken: both schedule without blocking.
        call_soon = getattr(native, "call_soon_threadsafe", None) or native.run_sync_soon  # type: ignore[attr-defined]
        self._call_soon: Callable[[Callable[[], object]], object] = call_soon

    def wake(self) -> None:
        if threading.get_ident() == self._thread:
            self.event.set()
        else:
            try:
                self._call_soon(self.event.set)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


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

    async def wait(self, key: str, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` is true, re-checking after each notification of ``key``.

        Returns:
            ``ready()`` at the end: False when ``timeout`` seconds passed first.
        """
        with anyio.move_on_after(timeout):
            while True:
                waiter = _Waiter()
                with self._lock:
                    self._waiters.setdefault(key, set()).add(waiter)
                try:
                    if ready():
                        return True
                    await waiter.event.wait()
                finally:
                    with self._lock:
                        waiters = self._waiters.get(key)
                        if waiters is not None:
                            waiters.discard(waiter)
                            if not waiters:
                                del self._waiters[key]
        return ready()
