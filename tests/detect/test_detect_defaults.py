"""``shieldwall analyze`` without ``--config`` runs on the default settings without
building the pydantic model: the cached defaults are the model's, field for field,
and a cache of another ``settings.py`` (or none, or a broken one) is never used."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from shieldwall.detect import _defaults
from shieldwall.detect.settings import DetectSettings


def test_the_cached_defaults_are_the_models_field_for_field(tmp_path: Path) -> None:
    cache = tmp_path / "c.json"
    first = _defaults.default_settings(cache=cache)
    assert isinstance(first, DetectSettings)  # no cache yet: the model itself, and the cache written
    again = _defaults.default_settings(cache=cache)
    assert isinstance(again, SimpleNamespace)
    model = DetectSettings().model_dump()
    assert vars(again) == model
    assert {k: type(v) for k, v in vars(again).items()} == {k: type(v) for k, v in model.items()}


def test_a_cache_of_another_settings_source_or_a_broken_one_is_not_used(tmp_path: Path) -> None:
    src, cache = tmp_path / "settings.py", tmp_path / "c.json"
    src.write_bytes(_defaults.SOURCE.read_bytes())
    _defaults.default_settings(src, cache)
    assert isinstance(_defaults.default_settings(src, cache), SimpleNamespace)
    src.write_bytes(src.read_bytes() + b"\n# a default changed\n")
    assert isinstance(_defaults.default_settings(src, cache), DetectSettings)  # stale: rebuilt
    assert isinstance(_defaults.default_settings(src, cache), SimpleNamespace)  # and re-cached
    cache.write_text("{not json")
    assert isinstance(_defaults.default_settings(src, cache), DetectSettings)
    data = json.loads(json.dumps({"key": _defaults._key(src.read_bytes()), "values": [1]}))
    cache.write_text(json.dumps(data))
    assert isinstance(_defaults.default_settings(src, cache), DetectSettings)


def test_values_json_cannot_give_back_exactly_are_never_cached() -> None:
    assert _defaults._exact({"a": [1, "x"], "b": 0.1, "c": True})
    assert not _defaults._exact({"a": (1, 2)})
    assert not _defaults._exact({"a": {1: "x"}})  # int keys come back as strings
