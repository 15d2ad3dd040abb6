"""The active health probe: one ``GET <path>`` to a backend, its status.

Shared by the workers' periodic checks and by ``check-config``, so that what
the operator is warned about at check time is exactly what the shield will
see. A 4xx answer means the path is wrong far more often than the backend
being sick; it is reported (the panic threshold in
:mod:`shieldwall.proxy.balancer` keeps the shop open meanwhile).
"""

from __future__ import annotations

import asyncio

USER_AGENT = b"shieldwall-health"


async def probe_status(host: str, port: int, path: str, host_header: str,
                       timeout: float) -> int | None:
    """The status the backend answers ``GET path`` with; None when it could
    not be reached or did not answer HTTP/1.x in ``timeout`` seconds."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
                         b"Connection: close\r\n\r\n"
                         % (path.encode(), host_header.encode(), USER_AGENT))
            parts = (await reader.readline()).split()
            if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
                return int(parts[1])
            return None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


def passes(status: int | None) -> bool:
    return status is not None and 200 <= status < 400


def wrong_path_warning(backend: str, path: str, status: int | None) -> str | None:
    """The warning for a health path the backend does not serve, or None."""
    if status is None or not 400 <= status < 500:
        return None
    return (f"warning: backend {backend} answers {status} to the health check GET {path}: "
            f"upstream.health.path is probably wrong (set it to a path the shop serves, "
            f"like /healthz); until it passes, the backend counts as down")


def check_paths(targets: list[tuple[str, str, int]], path: str, timeout: float) -> list[str]:
    """Probe each reachable backend once (``check-config``); the warnings.
    A backend that cannot be reached from here is not a config problem."""

    async def run() -> list[int | None]:
        return list(await asyncio.gather(*(probe_status(h, p, path, key, timeout)
                                           for key, h, p in targets)))

    out: list[str] = []
    for (key, _, _), status in zip(targets, asyncio.run(run()), strict=True):
        warning = wrong_path_warning(key, path, status)
        if warning is not None:
            out.append(warning)
    return out
