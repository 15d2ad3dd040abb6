"""Two small rules for many people on few addresses and for new visitors
(issue 9, the live drills): a carrier NAT's busy address is not a heavy bot, and
a new client's first second of pages does not make it a suspect."""

from __future__ import annotations

from shieldwall.detect.detector import pages_without_assets
from shieldwall.detect.features import shared_browsers


def test_a_busy_address_whose_pages_come_with_assets_is_shared_and_a_page_only_one_is_not() -> None:
    counts = {"nat": 120, "bot": 120, "shopper": 9, "assets-now-and-then": 120}
    pages = {"nat": 10, "bot": 10, "shopper": 3, "assets-now-and-then": 10}
    assets = {"nat": 9, "shopper": 3, "assets-now-and-then": 2}
    assert shared_browsers(counts, pages, assets, heavy=15) == {"nat"}
    # below the heavy mark nothing is left out (a single shopper stays in the p99)
    assert shared_browsers(counts, pages, assets, heavy=200) == set()


def test_one_second_of_pages_is_not_yet_pages_without_assets() -> None:
    assert not pages_without_assets("new", {"new": 1}, {})
    assert pages_without_assets("bot", {"bot": 2}, {})
    assert not pages_without_assets("shopper", {"shopper": 3}, {"shopper": 1})
