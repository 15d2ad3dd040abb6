"""The column-wise window counting (``analyze(engine="columns")``, the default) leaves
every window exactly as the per-line loop (``engine="rows"``, the live feed's
``WindowBuilder.add_rows``) leaves it: same counts, same float sums, same dict
contents in the same first-seen order; so the same features, the same per-second
state and the same incidents. Checked on the real 2015 log, generated access and
combined logs with every attack, one log of each labelled family, and a log with
odd lines, late lines and a long silence (rows and columns interleaved)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shieldwall.detect.analyze import analyze
from shieldwall.detect.columns import add_columns
from shieldwall.detect.detector import StepResult
from shieldwall.detect.families import FAMILIES, TEST_SEEDS, TRAIN_SEEDS
from shieldwall.detect.readers import ReadStats, read_column_batches
from shieldwall.detect.synth import generate, make_scenario, write_log
from shieldwall.detect.windows import FIELDS, Window, WindowBuilder

DATA = Path(__file__).parent.parent / "data"


def _snap(w: Window) -> dict[str, Any]:
    """Everything a window holds; dicts as item lists (their order is part of it)."""
    out: dict[str, Any] = {}
    for k in FIELDS:
        v = getattr(w, k)
        if isinstance(v, dict):
            v = [(a, sorted(b) if isinstance(b, set) else b) for a, b in v.items()]
        elif isinstance(v, set):
            v = sorted(v)
        out[k] = v
    return out


def _run(log: Path, engine: str) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any], int, int]:
    windows: list[dict[str, Any]] = []
    steps: list[Any] = []

    def keep(w: Window, r: StepResult) -> None:
        windows.append(_snap(w))
        steps.append((r.features, r.raw, r.state, r.kind, r.mode))

    rep = analyze([log], "auto", on_step=keep, engine=engine)
    return windows, steps, rep.as_json(), rep.late, rep.stats.fast_lines


def _assert_same(log: Path) -> tuple[int, dict[str, Any]]:
    rows = _run(log, "rows")
    cols = _run(log, "columns")
    assert len(rows[0]) == len(cols[0]) > 0
    for i, (a, b) in enumerate(zip(rows[0], cols[0], strict=True)):
        assert a == b, f"window {i} (second {a['sec']}) differs"
    assert rows[1] == cols[1]
    assert rows[2] == cols[2]
    assert rows[3:] == cols[3:]
    return len(rows[0]), cols[2]


def test_the_real_2015_log_gives_the_same_windows_and_verdicts() -> None:
    assert _assert_same(DATA / "real-apache-2015.log")[0] > 10_000


@pytest.mark.parametrize("fmt", ["access", "combined"])
def test_a_generated_log_with_every_attack_gives_the_same_windows_and_incidents(
        tmp_path: Path, fmt: str) -> None:
    sc = make_scenario(4, ["flash_crowd", "flood", "randomized", "cache_bust", "slow",
                           "backend_failure"], family="train", warmup=40, phase_len=(8, 10),
                       gap=(10, 12))
    events = generate(sc)
    # some sessions and passes, and request times long enough to be slow
    events = [dataclasses.replace(e, session=e.session or i % 11 == 0, verified=i % 13 == 0)
              for i, e in enumerate(events)]
    log = tmp_path / f"all.{fmt}.log"
    write_log(events, log, fmt)
    n, report = _assert_same(log)
    assert n > 100
    assert report["incidents"]  # the attacks are in there


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_log_gives_the_same_windows_and_incidents(tmp_path: Path, family: str) -> None:
    # one train and one test seed across the three families (the test split only scored)
    seed = (TRAIN_SEEDS + TEST_SEEDS)[sorted(FAMILIES).index(family) * 5]
    log, _ = FAMILIES[family](seed, 6)
    path = log.write(tmp_path / f"{family}.log")
    assert _assert_same(path)[0] > 300


def test_odd_lines_late_lines_and_a_silence_interleave_rows_and_columns(tmp_path: Path) -> None:
    rnd = random.Random(7)
    lines: list[str] = []
    t0 = 1_795_000_000
    agents = ["Mozilla/5.0 a", "curl/8", "Mozilla/5.0 (iPhone) b"]
    for i in range(40_000):
        sec = t0 + i // 50 + (5_000 if i > 30_000 else 0)  # a long silence near the end
        if rnd.random() < 0.02:
            sec -= rnd.randint(1, 60)  # late lines, some older than every open window
        stamp = _clf(sec)
        target = rnd.choice(["/", "/p/1", "/static/app.js", "/img/a.png", f"/s?q={i}",
                             f"/c?page={i % 7}&sort=x", "/a.CSS"])
        status = rnd.choice([200, 200, 200, 404, 408, 429, 502, 503, 504, 500])
        req = "-" if status == 408 and rnd.random() < 0.5 else f"GET {target} HTTP/1.1"
        tail = ""
        if i % 3:
            rt = rnd.choice(["0.001", "0.250", "6.000", "0.013"])
            ut = rnd.choice(["-", "0.010", "0.200"])
            o = rnd.choice(["ok", "refused", "timeout", "none", "shield", "-"])
            tail = (f" rt={rt} up=127.0.0.1:9001 ut={ut} us={status} o={o} d=allow c=unknown"
                    f" s={i % 5 == 0:d} v={i % 7 == 0:d}")
        lines.append(f'10.{i % 3}.{i % 200}.{i % 37} - - [{stamp}] "{req}" {status} '
                     f'{rnd.choice(["0", "-", "512", "2048"])} "-" "{rnd.choice(agents)}"{tail}\n')
        if i % 997 == 0:
            lines.append("garbage line\n")
        if i % 4001 == 0:
            lines.append(f'1.2.3.4 - - [{stamp}] "GET /q HTTP/1.1" 200 1 "-" "escaped \\"x\\""\n')
    log = tmp_path / "odd.log"
    log.write_text("".join(lines), encoding="utf-8")
    stats = ReadStats()
    kinds = {type(b).__name__ for b in read_column_batches(log, "auto", stats)}
    assert kinds == {"list", "Columns"}  # both paths in one log
    assert stats.unparsed > 30
    assert _assert_same(log)[0] > 500


def test_one_chunk_counted_column_wise_equals_its_rows_counted_one_by_one() -> None:
    stats = ReadStats()
    batches = [b for b in read_column_batches(DATA / "real-apache-2015.log", "combined", stats)
               if not isinstance(b, list)]
    assert batches
    kw: dict[str, Any] = {"lateness": 30.0, "asset_extensions": ("css", "js", "png", "gif", "jpg")}
    for c in batches:
        a, b = WindowBuilder(**kw), WindowBuilder(**kw)
        a.add_rows(c.rows())
        add_columns(b, c)
        assert (a.late, a.events, a.max_time, a._next) == (b.late, b.events, b.max_time, b._next)
        assert [_snap(w) for w in a.flush()] == [_snap(w) for w in b.flush()]
    assert isinstance(batches[0].t_end, np.ndarray)


def _clf(sec: int) -> str:
    import time

    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(sec))
