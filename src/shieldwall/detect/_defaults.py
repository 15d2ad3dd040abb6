"""The default detect settings without pydantic, for ``shieldwall analyze`` with no
``--config``.

Importing pydantic and building :class:`~shieldwall.detect.settings.DetectSettings`
(sixty-odd constrained fields, and pydantic's plugin look-up through every installed
package's metadata) took about a third of the analyzer's start-up, all of it before
the parsing process was told how to count. Defaults need no validation: the model
is their one source, and its dumped values are kept in a cache beside the compiled
``settings`` module (``__pycache__/settings-defaults.json``), valid while
``settings.py`` is byte for byte the source they were dumped from. A missing, stale
or unreadable cache costs the model's build once (and is written again where the
directory allows); anything the cache cannot hold exactly (a value JSON would not
give back equal and of the same type) is never cached.

What it gives is a plain object with the model's fields as attributes: the detector,
the features and the rules only read them. ``tests/detect/test_detect_defaults.py``
holds it equal to ``DetectSettings()`` field by field.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from shieldwall.detect.settings import DetectSettings

SOURCE = Path(__file__).with_name("settings.py")
CACHE = Path(__file__).with_name("__pycache__") / "settings-defaults.json"
VERSION = 1


def _key(source: bytes) -> dict[str, int]:
    return {"version": VERSION, "size": len(source), "crc32": zlib.crc32(source)}


def _exact(values: dict[str, Any]) -> bool:
    """Whether JSON gives ``values`` back equal and of the same types."""
    back = json.loads(json.dumps(values))

    def same(a: Any, b: Any) -> bool:
        if type(a) is not type(b):
            return False
        if isinstance(a, list):
            return len(a) == len(b) and all(map(same, a, b))
        return bool(a == b)

    return same(values, back)


def default_settings(source: Path = SOURCE, cache: Path = CACHE) -> DetectSettings:
    """``DetectSettings()``, from the cache when it is of this ``settings.py``."""
    try:
        src = source.read_bytes()
    except OSError:
        src = None
    if src is not None:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("key") == _key(src) and isinstance(data.get("values"), dict):
                return cast("DetectSettings", SimpleNamespace(**data["values"]))
        except (OSError, ValueError):
            pass
    from shieldwall.detect.settings import DetectSettings

    settings = DetectSettings()
    if src is not None:
        values = settings.model_dump()
        if _exact(values):
            _write(cache, {"key": _key(src), "values": values})
    return settings


def _write(cache: Path, data: dict[str, Any]) -> None:
    """Write the cache whole or not at all (a reader never sees half of it)."""
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
