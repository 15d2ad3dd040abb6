"""Ask the shield what it thinks is happening (attack, flash crowd, backend
failure) so the page says more than "down". Optional: an absent, slow or
broken shield yields None and changes nothing else."""

from __future__ import annotations

import httpx

VERDICT_TIMEOUT = 1.0


async def fetch_verdict(admin_url: str, token: str | None) -> tuple[str, str | None] | None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=VERDICT_TIMEOUT) as client:
            resp = await client.get(admin_url.rstrip("/") + "/api/verdict", headers=headers)
        if resp.status_code != 200:
            return None
        data = resp.json()
    except (httpx.HTTPError, ValueError, OSError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), str):
        return None
    kind = data.get("kind")
    return data["verdict"][:64], kind[:64] if isinstance(kind, str) and kind else None
