"""Helpers shared by the guard tests: a settable clock, request facts, and
reading the guard's prebuilt HTTP responses."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shieldwall.guard.decision import RequestFacts
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def runtime(clock: Callable[[], float], **settings: Any) -> GuardRuntime:
    settings.setdefault("allow_crawlers", False)
    return GuardRuntime.from_settings(GuardSettings.model_validate(settings), clock=clock)


def facts(client: str = "192.0.2.10", path: str = "/", query: str = "",
          cookie: str = "", method: str = "GET") -> RequestFacts:
    return RequestFacts(client=client, method=method, path=path, query=query, cookie=cookie)


@dataclass
class Parsed:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers[name.lower()][0]


def parse(raw: bytes | None) -> Parsed:
    assert raw is not None
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 ")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    assert int(headers["content-length"][0]) == len(body)
    return Parsed(status, headers, body)


_META = re.compile(rb'<meta name="shieldwall-challenge" content="([^"]*)">')


def challenge_of(raw: bytes | None) -> dict[str, Any]:
    p = parse(raw)
    m = _META.search(p.body)
    assert m is not None, "no challenge meta in page"
    data: dict[str, Any] = json.loads(html.unescape(m.group(1).decode()))
    return data


def cookie_pair(set_cookie: str) -> str:
    """The name=value part of a Set-Cookie header value."""
    return set_cookie.split(";", 1)[0]


REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisProc:
    def __init__(self, procs: object, sock: Path) -> None:
        self.procs = procs
        self.sock = sock
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        self.proc = self.procs.start(  # type: ignore[attr-defined]
            [REDIS, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.sock.parent)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, 9)
        self.proc.wait(timeout=5)
        if self.sock.exists():
            self.sock.unlink()


async def fetch(port: int, source: str, target: str,
                cookie: str = "") -> tuple[int, dict[str, list[str]], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        writer.write(f"GET {target} HTTP/1.1\r\nHost: shop\r\n{extra}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        body = await reader.readexactly(int(headers["content-length"][0]))
        return int(lines[0].split()[1]), headers, body
    finally:
        writer.close()


def cookies_from(headers: dict[str, list[str]], jar: dict[str, str]) -> str:
    for sc in headers.get("set-cookie", []):
        name, _, value = sc.split(";", 1)[0].partition("=")
        jar[name] = value
    return "; ".join(f"{k}={v}" for k, v in jar.items())
