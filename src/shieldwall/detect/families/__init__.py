"""Labelled traffic the detector is judged on, written independently of it.

Layout: ``_world`` (addresses, agents, catalogue), ``_traffic`` (shoppers,
app clients, crawlers, monitors, scanners), ``_incidents`` (attacks, crowds,
outages, bumps), ``_log`` (columns -> the server's log lines), ``_shops``
(the families), ``score`` (runs ``shieldwall analyze``'s code path on a
written log and scores it against the labels).

Discipline: each family is written from a plain description of how shops,
people, bots and failures behave, never from the detector's rules, and is
never changed to make the detector pass. Thresholds may be tuned on
``TRAIN_SEEDS`` only; ``TEST_SEEDS`` are never used to tune (they are scored
in ``make test`` with a regression floor).
"""

from __future__ import annotations

from collections.abc import Callable

from shieldwall.detect.families._labels import KINDS, VERDICTS, Event, Labels
from shieldwall.detect.families._log import Log
from shieldwall.detect.families._shops import cdn_origin, mid_shop, small_shop

Family = Callable[..., tuple[Log, Labels]]

FAMILIES: dict[str, Family] = {"small_shop": small_shop, "mid_shop": mid_shop, "cdn_origin": cdn_origin}
TRAIN_SEEDS = tuple(range(0, 8))
"""Tune on these."""
TEST_SEEDS = tuple(range(1000, 1008))
"""Never used to tune: scored as they come."""
TUNING_POOL_SEEDS = tuple(range(8, 32))
"""More tuning data (session 8): three more blocks of eight train days, each through the
family's whole menu from its own start. Disjoint from ``TEST_SEEDS`` and from the held-out
families' seeds (5000 and up); tune on these as on ``TRAIN_SEEDS``."""

__all__ = ["FAMILIES", "KINDS", "TEST_SEEDS", "TRAIN_SEEDS", "TUNING_POOL_SEEDS", "VERDICTS", "Event", "Family", "Labels", "Log",
           "cdn_origin", "mid_shop", "small_shop"]
