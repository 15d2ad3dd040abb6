"""The proxy tests' shop: one loopback backend answering every request (a test
module that needs other answers defines its own ``backend``)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from proxy_backends import Backend


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend().start()
    yield b
    await b.stop()
