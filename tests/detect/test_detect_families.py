"""The labelled traffic families, and the detector scored on their TEST split.

The families (src/shieldwall/detect/families) are written from how shops,
people, bots and failures behave, not from the detector's rules. The test split
is never used to tune; its scores here are a REGRESSION FLOOR: what the detector
on main achieved when the floor was set. The issue's goal is beside each floor;
whoever improves the detector raises the floor to what it then achieves.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from shieldwall.detect.families import (
    FAMILIES,
    TEST_SEEDS,
    TRAIN_SEEDS,
    TUNING_POOL_SEEDS,
    Labels,
    Log,
    small_shop,
)
from shieldwall.detect.families._log import Rows, Style
from shieldwall.detect.families.score import DRAIN, LogScore, Summary, score_log
from shieldwall.detect.readers import LineParser

DATA = Path(__file__).resolve().parents[1] / "data"

# (family, seed, minutes or None for the full length): a few TEST seeds, short enough for `make test`
SCORED = [("small_shop", 1000, None), ("small_shop", 1001, None), ("small_shop", 1002, None),
          ("small_shop", 1003, None), ("cdn_origin", 1002, 35), ("cdn_origin", 1005, 35),
          ("mid_shop", 1004, 35)]

# Session 9 (det11a): c6ca703's own_fail_share back (the demo's recovery at ddos had another cause: an attack's
# clients still in the 10 s view after it stopped, fixed in the detector), with its learn and slow-kind rules:
# small_shop 1001's slow POST is one incident again, the ceiling 1 -> 0.
# c6ca703 (session 8: a per-address cap's refusals of a slow tool's few busy addresses are not a backend
# failure) made small_shop 1001's slow POST one incident (0 splits), but live it kept `make demo`'s recovery
# at ddos after the flood ended (2 of 2 runs; 57ec037 and the take-out back to normal in 3 of 3): taken out, the
# ceiling back at 1.
# 49ad73c (families: every split goes through its menu, a day keeps its events): the same 7 logs now 8.2 h, 13
# labelled incidents: found 1.0, kind 1.0 (7 of 7), 1 split -- small_shop 1001's slow POST behind a per-address
# cap --, 0 invented, 0 on the quiet day, 0 crossed: the floors hold unchanged.
# Regression floors on the scored TEST logs: what main achieved on 2026-12-03 08:31 UTC, after 30b4698 (7 logs,
# 7.1 h, 8 labelled incidents: found 1.0, kind 1.0 = 7 of 7, 1 split -- cdn_origin 1005's hang, cut at 35 min, is
# two backend_failure records; 0 invented, 0 on the quiet day, 0 crossed). Before (c38cde3): found 0.875, kind 0.714,
# 2 splits, 0.32 invented / 2 h, 1 on the quiet day, 1 ddos called a crowd. The goal beside each. Raise them
# as the detector improves.
FLOOR_FOUND_SHARE = 1.0        # goal 1.0: every labelled incident found with its verdict
FLOOR_KIND_SHARE = 1.0         # goal >= 0.9: the ddos kind right
CEIL_SPLIT_EVENTS = 0          # goal 0: at most one reported incident per labelled event
CEIL_INVENTED_PER_2H = 0.0     # goal <= 1 per two hours of unlabelled traffic
CEIL_QUIET_DAY_INCIDENTS = 0   # goal 0 on quiet days
CEIL_CROSSED = 0                # goal 0: a crowd never called ddos, a ddos never called a crowd


@pytest.fixture(scope="module")
def generated() -> list[tuple[Log, Labels]]:
    return [FAMILIES[f](seed, minutes) for f, seed, minutes in SCORED]


@pytest.fixture(scope="module")
def scores(generated: list[tuple[Log, Labels]], tmp_path_factory: pytest.TempPathFactory) -> list[LogScore]:
    tmp = tmp_path_factory.mktemp("families")
    return [score_log(log, labels, tmp) for log, labels in generated]


def _digest(lines: Iterator[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
    return h.hexdigest()


def test_a_seed_makes_the_same_log_and_labels_every_time() -> None:
    a_log, a_lab = small_shop(1005, 25)
    b_log, b_lab = small_shop(1005, 25)
    assert _digest(iter(a_log)) == _digest(iter(b_log))
    assert a_lab.as_json() == b_lab.as_json()
    c_log, _ = small_shop(1006, 25)
    assert _digest(iter(c_log)) != _digest(iter(a_log))


def test_a_seed_makes_the_same_log_in_every_process() -> None:
    """Not only within one process: string hashing differs between processes (a set of
    addresses iterated in hash order gave each run of a bench its own botnet)."""
    code = ("import hashlib; from shieldwall.detect.families import small_shop; "
            "log, _ = small_shop(1001, 20); h = hashlib.sha256(); "
            "[h.update(line.encode()) for line in log]; print(h.hexdigest())")
    out = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True, timeout=120).stdout.strip())
    assert len(out) == 1


def test_a_full_day_keeps_every_event_it_drew_and_a_split_covers_the_menu() -> None:
    """A day's events never wait for another seed: one that does not fit makes the day
    longer (the stepped crowd the CDN family's train split never had was left out so);
    and a split's eight seeds go through the family's whole menu."""
    from shieldwall.detect.families._shops import SMALL
    seen: set[str] = set()
    for seed in TRAIN_SEEDS:
        _, lab = small_shop(seed)
        names = [e.name for e in lab.events if e.name != "deploy_blip"]
        assert len(names) in ((2,) if lab.quiet_day else (3, 4)), (seed, names)
        assert lab.end - max(e.end for e in lab.events) >= 5 * 60 - 1, seed
        seen |= set(names)
    assert set(SMALL.menu) <= seen


def test_splits_do_not_share_seeds() -> None:
    assert not set(TRAIN_SEEDS) & set(TEST_SEEDS)
    # the tuning pool is more training data: disjoint from test and from the held-out families (5000+)
    assert not set(TUNING_POOL_SEEDS) & (set(TEST_SEEDS) | set(TRAIN_SEEDS))
    assert max(TUNING_POOL_SEEDS) < min(TEST_SEEDS)
    assert len(TRAIN_SEEDS) >= 8 and len(TEST_SEEDS) >= 8


def test_labels_are_consistent(generated: list[tuple[Log, Labels]]) -> None:
    for _, lab in generated:
        where = f"{lab.family} {lab.seed}"
        evs = sorted(lab.events, key=lambda e: e.start)
        for e in evs:
            assert lab.start <= e.start < e.end <= lab.end, where
            assert e.start <= e.seen_from <= e.end, where
        for a, b in pairwise(evs):
            assert b.start >= a.end + DRAIN, f"{where}: {a.name} and {b.name} too close to score apart"
        if lab.quiet_day:
            assert lab.events and not lab.incidents, where
        assert re.fullmatch(r"[+-]\d{4}", lab.tz)
        stretches = lab.quiet_stretches(DRAIN)
        assert all(a < b for a, b in stretches)


def test_every_line_parses_with_the_projects_readers(scores: list[LogScore],
                                                     generated: list[tuple[Log, Labels]]) -> None:
    for s, (log, _) in zip(scores, generated, strict=True):
        assert s.unparsed == 0 and s.lines == len(log), (s.labels.family, s.labels.seed)


def test_a_family_line_reads_like_a_line_of_the_real_2015_log(generated: list[tuple[Log, Labels]]) -> None:
    p = LineParser("combined")
    real = p.parse(next(iter((DATA / "real-apache-2015.log").open(encoding="utf-8"))).rstrip("\n"))
    assert real is not None
    log, lab = generated[0]
    ours = [p.parse(line) for line in list(log)[:2000]]
    assert all(o is not None for o in ours)
    for o in ours:
        assert o is not None
        assert [type(x) for x in o] == [type(x) for x in real]
        assert abs(o[0] - lab.start) < 4 * 3600 + 600  # the server's offset was honoured


def _cols(log: Log) -> dict[str, np.ndarray]:
    return log.cols


def test_the_traffic_has_what_real_shops_have(generated: list[tuple[Log, Labels]]) -> None:
    """IPv6, carrier NAT, crawlers, monitors, app clients without assets, "-" 408 lines,
    timezone offsets, out-of-order lines, empty seconds in a small shop; no asset behind a CDN."""
    tzs = set()
    for log, lab in generated:
        c = _cols(log)
        where = f"{lab.family} {lab.seed}"
        tzs.add(lab.tz)
        ua = c["ua"].astype(str)
        tgt = c["target"].astype(str)
        assert (np.char.find(ua, "Googlebot") >= 0).any() or (np.char.find(ua, "bingbot") >= 0).any(), where
        assert np.isin(tgt, ["/", "/healthz", "/status"]).any(), where
        app = (np.char.find(ua, "okhttp") >= 0) | (np.char.find(ua, "Dalvik") >= 0)
        assert app.any(), where
        assert not (np.char.startswith(tgt[app], "/static/") | np.char.startswith(tgt[app], "/media/")).any()
        assets = np.char.startswith(tgt, "/static/") | np.char.startswith(tgt, "/media/")
        if lab.notes["cdn"]:
            assert not assets.any(), where
            continue
        # (outside the labelled incidents: a slow attack's 408s and 503s are most lines)
        calm = np.ones(len(tgt), bool)
        for e in lab.incidents:
            calm &= ~((c["t"] >= e.start) & (c["t"] < e.end + DRAIN))
        assert assets[calm].mean() > 0.3, where
        client = c["client"].astype(str)
        assert (np.char.find(client, ":") >= 0).any(), f"{where}: no IPv6 client"
        # carrier NAT: one address, many different browsers at once
        page = c["page"]
        uas_per_addr: dict[str, set[str]] = {}
        for a, u in zip(client[page], ua[page], strict=True):
            uas_per_addr.setdefault(a, set()).add(u)
        assert max(len(v) for v in uas_per_addr.values()) >= 5, where
    assert len(tzs) >= 2 and tzs != {"+0000"}
    # "-" 408 lines, out of order stamps and empty seconds in the small shops
    small = [(log, lab) for log, lab in generated if lab.family == "small_shop"]
    lines = [line for log, _ in small for line in log]
    assert any('"-" 408 0' in line for line in lines)
    p = LineParser("combined")
    disorder = 0
    for log, lab in small:
        t = np.array([r[0] for r in (p.parse(x) for x in log) if r is not None])
        disorder += int((np.diff(t) < 0).sum())
        counts = np.bincount((t - t.min()).astype(int))
        if lab.notes["rps"] < 15:
            assert (counts == 0).mean() > 0.01, f"{lab.seed}: no second without a line"
    assert disorder > 0, "every line in time order"


def test_nginx_stamps_completion_and_apache_stamps_the_start() -> None:
    rows = Rows()
    rows.add(100.2, 61.0, "192.0.2.1", "GET", "/slow", 504, 167, "-", "ua", dyn=True)
    rows.add(130.5, 0.1, "192.0.2.2", "GET", "/fast", 304, 0, "-", "ua", dyn=False)
    rng = np.random.default_rng(0)
    nginx = list(Log(rows.columns(), Style("nginx", 60), rng))
    apache = list(Log(rows.columns(), Style("apache", -300, dash_zero_bytes=True), rng))
    assert nginx[0].startswith('192.0.2.2 - - [01/Jan/1970:01:02:10 +0100] "GET /fast HTTP/1.1" 304 0 ')
    assert "[01/Jan/1970:01:02:41 +0100]" in nginx[1]
    assert apache[0].startswith('192.0.2.2 - - [31/Dec/1969:19:02:10 -0500] "GET /fast HTTP/1.1" 304 - ')
    assert "[31/Dec/1969:19:01:40 -0500]" in apache[1]  # written after, stamped before


def test_detector_on_the_test_split_holds_its_floor(scores: list[LogScore]) -> None:
    s = Summary.of(scores)
    report = "\n".join(s.misses)
    assert s.events >= 8 and s.quiet_days >= 1
    assert s.found / s.events >= FLOOR_FOUND_SHARE, report
    assert s.kind_right / max(s.ddos, 1) >= FLOOR_KIND_SHARE, report
    assert s.split <= CEIL_SPLIT_EVENTS, report
    assert s.invented_per_2h <= CEIL_INVENTED_PER_2H, report
    assert s.quiet_day_incidents <= CEIL_QUIET_DAY_INCIDENTS, report
    assert s.flash_called_ddos + s.ddos_called_flash <= CEIL_CROSSED, report
