"""``shieldwall probe``: a probe on another host. It pulls its check list from
the monitor, runs the same checks as the local probes, and posts each result
at once (the round is short; a batch would arrive too late to count).

The monitor owns the schedule's meaning; the probe only keeps each check's
interval. It refreshes its list now and then, so adding a check to the
monitor reaches every probe without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from shieldwall.monitor._checks import run_check
from shieldwall.monitor._config import CheckSettings

log = logging.getLogger("shieldwall.monitor.probe")


class ProbeAuthError(Exception):
    pass


class RemoteProbe:
    def __init__(self, monitor_url: str, token: str, *, name: str | None = None, refresh: float = 60.0) -> None:
        self.monitor_url = monitor_url.rstrip("/")
        self.token = token
        self.wanted_name = name
        self.name = name or ""
        self.refresh = refresh
        self.sent = 0
        self.failed_posts = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _fetch(self, client: httpx.AsyncClient) -> list[CheckSettings]:
        resp = await client.get("/api/probe/checks")
        if resp.status_code == 401:
            raise ProbeAuthError(f"the monitor at {self.monitor_url} refused the token")
        resp.raise_for_status()
        data = resp.json()
        name = str(data["probe"])
        if self.wanted_name and name != self.wanted_name:
            raise ProbeAuthError(f"this token belongs to probe {name!r}, not {self.wanted_name!r}")
        self.name = name
        return [CheckSettings.model_validate(c) for c in data["checks"]]

    async def _check_loop(self, client: httpx.AsyncClient, check: CheckSettings) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        while True:
            start = t0 + n * check.interval
            await asyncio.sleep(max(0.0, start - loop.time()))
            result = await run_check(check, self.name)
            try:
                resp = await client.post("/api/probe/report", json={"results": [result.to_json()]})
                resp.raise_for_status()
                self.sent += 1
            except httpx.HTTPError as e:
                self.failed_posts += 1
                log.warning("could not report to %s: %s", self.monitor_url, e)
            n = max(n + 1, int((loop.time() - t0) // check.interval))

    async def run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.monitor_url, headers=headers, timeout=10.0) as client:
            tasks: dict[str, tuple[CheckSettings, asyncio.Task[Any]]] = {}
            try:
                while not self._stop.is_set():
                    try:
                        checks = await self._fetch(client)
                    except ProbeAuthError:
                        raise
                    except (httpx.HTTPError, ValueError, KeyError) as e:
                        log.warning("cannot get the check list from %s: %s", self.monitor_url, e)
                        checks = [c for c, _ in tasks.values()]
                    wanted = {c.name: c for c in checks}
                    for name in list(tasks):
                        if name not in wanted or wanted[name] != tasks[name][0]:
                            tasks.pop(name)[1].cancel()
                    for name, c in wanted.items():
                        if name not in tasks:
                            tasks[name] = (c, asyncio.create_task(self._check_loop(client, c)))
                    log.info("probe %s runs %d checks for %s", self.name, len(tasks), self.monitor_url)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=self.refresh)
            finally:
                for _, t in tasks.values():
                    t.cancel()
                for _, t in tasks.values():
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
