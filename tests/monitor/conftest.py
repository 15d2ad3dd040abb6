"""Fixtures for the monitor's tests (the servers live in monitor_helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import Running, Shop, Webhook, start_monitor

from shieldwall.monitor._config import MonitorSettings


@pytest.fixture
def shop() -> Iterator[Shop]:
    s = Shop()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    w = Webhook()
    try:
        yield w
    finally:
        w.close()




@pytest.fixture
async def monitors() -> AsyncIterator[Callable[[MonitorSettings, Path], Any]]:
    """Start in-process monitors; all are stopped at teardown."""
    started: list[Running] = []

    async def start(settings: MonitorSettings, data: Path) -> Running:
        r = await start_monitor(settings, data)
        started.append(r)
        return r

    try:
        yield start
    finally:
        for r in started:
            if not r.task.done():
                await r.stop()
