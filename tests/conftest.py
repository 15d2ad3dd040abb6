"""Shared test helpers: every process a test starts is stopped by its PID,
also when the test fails; every port comes from the OS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab_procs import Procs


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()
