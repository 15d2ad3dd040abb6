"""A serving worker's cyclic collector: startup objects frozen out of every
later collection, young collections far rarer than CPython's default (a
request in flight keeps its objects young and alive, and each young
collection walked them all), and garbage in a cycle still collected.

Run in a fresh interpreter: the settings are process-wide, and a test
process is not a server."""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import gc
from shieldwall.proxy.worker import GC_YOUNG_THRESHOLD, serving_gc
default_young = gc.get_threshold()[0]
serving_gc()
young, middle, old = gc.get_threshold()
assert gc.isenabled(), "collection stays on"
assert young == GC_YOUNG_THRESHOLD > 10 * default_young, (young, default_young)
assert gc.get_freeze_count() > 1000, "startup objects are frozen"

class Node:
    def __init__(self) -> None:
        self.other: Node | None = None

a, b = Node(), Node()
a.other, b.other = b, a
del a, b
assert gc.collect() >= 2, "a cycle made after startup is still collected"
print("ok")
"""


def test_serving_worker_freezes_startup_and_collects_young_objects_rarely() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
