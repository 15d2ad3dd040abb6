"""A real redis-server per test, on a unix socket under tmp_path, stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_helpers import REDIS, RedisProc


@pytest.fixture
def redis_server(procs: object, tmp_path: Path) -> Iterator[RedisProc]:
    if not os.path.exists(REDIS):
        pytest.skip("redis-server not installed (make installs it)")
    r = RedisProc(procs, tmp_path / "redis.sock")
    r.start()
    yield r
