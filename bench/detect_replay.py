"""Tune the detector in seconds, not minutes: the families' windows once, the detector many times.

Usage: .venv/bin/python bench/detect_replay.py cache [--split train|pool|test|both|all] [--family NAME ...]
       .venv/bin/python bench/detect_replay.py replay [--split train|pool|test|both|all] [--family NAME ...] [--per-log]

``cache`` writes each family log, runs the ``analyze`` the CLI runs on it, and pickles
every window ``Detector.step`` received (with its ``at_end``) and the labels, under
``--dir`` (default /tmp/shieldwall-replay). ``replay`` runs a fresh ``Detector`` of
the current code over those windows and scores them with families/score.py, so its
table is bench/detect_confusion.py's for any change after the window builder (features,
rules, hysteresis) at a fraction of the time. A change to the windows themselves
(windows.py, the readers, the builder's settings) needs a new cache.
Train seeds are for tuning, and so is ``pool`` (``TUNING_POOL_SEEDS``, 8-31: more training
days, session 8); the test split is for scores only. ``all`` is train, pool, test.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from pathlib import Path
from typing import Any

from shieldwall.detect.analyze import analyze
from shieldwall.detect.detector import Detector, Incident, StepResult
from shieldwall.detect.families import FAMILIES, TEST_SEEDS, TRAIN_SEEDS, TUNING_POOL_SEEDS
from shieldwall.detect.families.score import LogScore, Summary, score_report
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.windows import FIELDS, Window

SPLITS = {"train": TRAIN_SEEDS, "pool": TUNING_POOL_SEEDS, "test": TEST_SEEDS}


def _dump(w: Window) -> dict[str, Any]:
    return {k: getattr(w, k) for k in FIELDS}


def _load(d: dict[str, Any]) -> Window:
    w = Window(d["sec"], d["gap"])
    for k, v in d.items():
        setattr(w, k, v)
    return w


def cache(family: str, seed: int, out: Path) -> None:
    """Analyze one family log as the CLI does, keeping every window the detector saw."""
    rec: list[tuple[dict[str, Any], bool]] = []
    orig = Detector.step

    def step(self: Detector, w: Window, *, at_end: bool = False) -> StepResult:
        rec.append((_dump(w), at_end))
        return orig(self, w, at_end=at_end)

    Detector.step = step  # type: ignore[method-assign]
    try:
        log, labels = FAMILIES[family](seed, None)
        with tempfile.TemporaryDirectory() as tmp:
            path = log.write(Path(tmp) / f"{family}-{seed}.log")
            rep = analyze([path], "auto")
    finally:
        Detector.step = orig  # type: ignore[method-assign]
    with out.open("wb") as fh:
        pickle.dump({"labels": labels, "windows": rec, "lines": rep.stats.lines,
                     "unparsed": rep.stats.unparsed, "late": rep.late}, fh, protocol=5)


def replay(path: Path, settings: DetectSettings | None = None) -> LogScore:
    """A fresh detector over one cached log, scored as families/score.py scores."""
    with path.open("rb") as fh:
        doc = pickle.load(fh)
    det = Detector(settings or DetectSettings(), score_clients=False)
    incidents: list[Incident] = []
    states: dict[int, str] = {}
    for d, at_end in doc["windows"]:
        w = _load(d)
        r = det.step(w, at_end=at_end)
        incidents.extend(r.closed)
        states[w.sec] = r.state
    incidents.extend(det.finish())
    incidents.sort(key=lambda i: i.start)
    events, invented, unlabelled = score_report(doc["labels"], incidents, states)
    return LogScore(doc["labels"], events, invented, unlabelled, doc["lines"], doc["unparsed"], doc["late"], 0.0)


def cell(j: dict[str, Any]) -> str:
    """found / ddos kind / splits / invented per 2 h / on quiet days / ddos called crowd."""
    found = "1.0" if j["found"] == j["events"] else f"{j['found']}of{j['events']}"
    out = (f"{found}/{j['kind_share']}/{j['split_events']}/{j['invented_per_2h']}/"
           f"{j['quiet_day_incidents']}/{j['ddos_called_flash']}")
    return out + (f" (crowd called ddos {j['flash_called_ddos']})" if j["flash_called_ddos"] else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["cache", "replay"])
    ap.add_argument("--split", default="both", choices=["train", "pool", "test", "both", "all"])
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES))
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "shieldwall-replay")
    ap.add_argument("--per-log", action="store_true", help="print every log's incidents")
    args = ap.parse_args()
    splits = {"both": ["train", "test"], "all": ["train", "pool", "test"]}.get(args.split, [args.split])
    args.dir.mkdir(parents=True, exist_ok=True)
    for fam in args.family or list(FAMILIES):
        for sp in splits:
            paths = [args.dir / f"{fam}-{seed}.pkl" for seed in SPLITS[sp]]
            if args.what == "cache":
                for seed, p in zip(SPLITS[sp], paths, strict=True):
                    if not p.exists():
                        cache(fam, seed, p)
                        print(f"cached {p}", flush=True)
                continue
            scores = [replay(p) for p in paths]
            j = Summary.of(scores).as_json()
            print(f"{fam + '/' + sp:20s} {cell(j)}  delay median {j['delay_median_s']} max {j['delay_max_s']}")
            for m in j["misses"]:
                print(f"    {m}")
            if args.per_log:
                for sc in scores:
                    print(f"    {sc.as_json()}")


if __name__ == "__main__":
    main()
