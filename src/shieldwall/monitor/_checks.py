"""One probe runs one check: the only place a check touches the network.

A fresh connection every time (no keep-alive): an outside monitor should pay
what a new shopper pays (DNS, TCP, TLS) and see the certificate every round.
The same function runs in local probe workers and in remote ``shieldwall
probe`` processes, so both judge "up" by the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from shieldwall.monitor._config import CheckSettings
from shieldwall.monitor._quorum import ProbeResult

BODY_LIMIT = 1 << 20  # bytes read for keyword checks; a shop page is far smaller
USER_AGENT = "shieldwall-monitor/0.1 (+uptime probe)"


_CONTEXTS: dict[tuple[bool, str | None], ssl.SSLContext] = {}


def _tls_context(check: CheckSettings) -> ssl.SSLContext:
    """One context per (verify, CA file), reused: building one loads the CA
    bundle, ~40 ms of CPU, which at short intervals would cost more than the
    probing itself. Plain-http checks get one too (unused, and cheap once)."""
    key = (check.verify_tls, check.ca_file)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=check.ca_file)
        if not check.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CONTEXTS[key] = ctx
    return ctx


def _peer_days_left(stream: Any, now: float) -> float | None:
    if stream is None:
        return None
    ssl_obj = stream.get_extra_info("ssl_object")
    if ssl_obj is None:
        return None
    cert = ssl_obj.getpeercert()
    if not cert or "notAfter" not in cert:
        return None
    return (ssl.cert_time_to_seconds(cert["notAfter"]) - now) / 86400.0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def run_check(
    check: CheckSettings,
    probe: str,
    *,
    source_address: str | None = None,
    wall: Callable[[], float] = time.time,
    mono: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Probe ``check`` once and judge it; never raises for network trouble."""
    at = wall()
    t0 = mono()
    status: int | None = None
    days_left: float | None = None

    def result(ok: bool, reason: str = "") -> ProbeResult:
        return ProbeResult(
            check=check.name,
            probe=probe,
            at=at,
            ok=ok,
            reason=reason,
            latency=mono() - t0,
            status=status,
            tls_days_left=round(days_left, 3) if days_left is not None else None,
        )

    transport = httpx.AsyncHTTPTransport(
        verify=_tls_context(check),
        local_address=source_address,
        retries=0,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    body = b""
    try:
        async with (
            asyncio.timeout(check.timeout),
            httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(check.timeout),
                follow_redirects=False,
                headers={"user-agent": USER_AGENT, **check.headers},
            ) as client,
            client.stream(check.method, check.url) as resp,
        ):
            status = resp.status_code
            days_left = _peer_days_left(resp.extensions.get("network_stream"), wall())
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) >= BODY_LIMIT:
                    break
    except TimeoutError:
        return result(False, f"timeout after {check.timeout:g}s")
    except httpx.ConnectError as e:
        text = _short(e)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return result(False, f"TLS error: {text}")
        return result(False, f"cannot connect: {text}")
    except httpx.TimeoutException:
        return result(False, f"timeout after {check.timeout:g}s")
    except (httpx.HTTPError, OSError, ssl.SSLError) as e:
        return result(False, f"{type(e).__name__}: {_short(e)}")
    latency = mono() - t0
    if not check.accepts(status):
        want = "200-399" if check.expect_status is None else ", ".join(map(str, check.expect_status))
        return result(False, f"status {status} (expected {want})")
    text = body.decode("utf-8", "replace")
    if check.body_contains is not None and check.body_contains not in text:
        return result(False, f"body lacks {check.body_contains!r}")
    if check.body_excludes is not None and check.body_excludes in text:
        return result(False, f"body contains {check.body_excludes!r}")
    if check.max_latency is not None and latency > check.max_latency:
        return result(False, f"slow: {latency:.2f}s > {check.max_latency:g}s")
    if check.tls_min_days is not None:
        if days_left is None:
            return result(False, "TLS certificate expiry unknown (not an https URL?)")
        if days_left < check.tls_min_days:
            return result(False, f"TLS certificate expires in {days_left:.1f} days (< {check.tls_min_days:g})")
    return result(True)


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
