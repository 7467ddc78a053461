from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from planner.backends.stores.memory import MemoryStore
from planner.testing.contracts import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        async with MemoryStore() as store:
            yield store


def test_memory_store_rejects_other_urls() -> None:
    with pytest.raises(ValueError, match="memory://"):
        MemoryStore("sqlite:///x.db")
