"""Bans pushed into an nftables drop set, inside a network namespace the test
creates (the host's own ruleset is never touched)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from guard_helpers import runtime

NS = f"swguard{os.getpid()}"

# Inside the namespace: listen on 127.0.0.1, connect from the given source
# address; print "open" or "dropped".
PROBE = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.socket(); c.settimeout(0.5); c.bind((sys.argv[1], 0))
try:
    c.connect(srv.getsockname()); print("open")
except OSError:
    print("dropped")
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip to create a network namespace")
    made = _ip("netns", "add", NS)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        _ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
        check = subprocess.run(["ip", "netns", "exec", NS, "nft", "list", "ruleset"],
                               capture_output=True, text=True, timeout=10)
        if check.returncode != 0:
            pytest.skip(f"nft does not work in a namespace here: {check.stderr.strip()}")
        yield NS
    finally:
        _ip("netns", "del", NS)


def _probe(ns: str, source: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, source],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def _nft_set(ns: str, name: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "set", "inet",
                           "shieldwall", name], capture_output=True, text=True,
                          timeout=10).stdout


async def _until_probe(ns: str, source: str, want: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := await asyncio.to_thread(_probe, ns, source)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{source}: {got}, wanted {want}")
        await asyncio.sleep(0.1)


async def test_banned_address_is_dropped_by_the_kernel_and_freed_on_unban(netns: str) -> None:
    assert _probe(netns, "127.0.0.2") == "open"
    rt = runtime(time.time, nftables="on", nftables_netns=netns)
    rt.ban("127.0.0.2", ttl=600, reason="before start")  # present at start: installed too
    await rt.start()
    try:
        assert rt.status()["nftables"]["enabled"]
        await _until_probe(netns, "127.0.0.2", "dropped")
        assert _probe(netns, "127.0.0.3") == "open"
        rt.ban("127.0.0.128/25", ttl=60)
        await _until_probe(netns, "127.0.0.200", "dropped")
        assert "127.0.0.128/25" in _nft_set(netns, "ban4")
        rt.ban("2001:db8:1::/48", ttl=60)
        await asyncio.sleep(0.6)
        assert "2001:db8:1::/48" in _nft_set(netns, "ban6")
        rt.unban("127.0.0.2")
        await _until_probe(netns, "127.0.0.2", "open")
    finally:
        await rt.stop()
    # a clean stop removes our table, and only ours
    gone = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                          capture_output=True, text=True, timeout=10).stdout
    assert "shieldwall" not in gone


async def test_required_nftables_that_cannot_work_fails_at_start() -> None:
    rt = runtime(time.time, nftables="on", nftables_netns="no-such-namespace-sw")
    with pytest.raises(RuntimeError, match="nftables drop set not available"):
        await rt.start()
    await rt.stop()


async def test_auto_nftables_that_cannot_work_is_logged_and_skipped(
        caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime(time.time, nftables="auto", nftables_netns="no-such-namespace-sw")
    await rt.start()
    try:
        assert rt.status()["nftables"]["enabled"] is False
        assert "bans stay in user space" in caplog.text
    finally:
        await rt.stop()
