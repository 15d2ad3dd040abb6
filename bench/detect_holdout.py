"""The detector on a held-out family none of its authors saw (src/shieldwall/detect/holdout).

Usage: .venv/bin/python bench/detect_holdout.py [--family holdout|headless] [--seeds N] [--first 5000]
       [--minutes M] [--json PATH]

``--family headless``: the second held-out family (a headless storefront's
API origin: no asset lines, pages asked by the storefront's renderer from a
few addresses), written late (session 7).

Each seed's log is written to disk and read by the same ``analyze`` the CLI
(and families/score.py) runs; scoring is families/score.py's ``score_report``
and ``Summary``, so the columns mean what bench/detect_confusion.py's mean.
This family is for scoring only: never tune the detector on it. Prints JSON, then a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from shieldwall.detect.families.score import LogScore, Summary, score_log
from shieldwall.detect.holdout import headless_shop, holdout_shop

FAMILIES = {"holdout": holdout_shop, "headless": headless_shop}

ROWS = [("logs", "logs"), ("hours", "hours"), ("events", "labelled incidents"), ("found_share", "found (verdict)"),
        ("kind_share", "ddos kind right"), ("split_events", "events split"), ("invented", "invented"),
        ("invented_per_2h", "invented / 2 h"), ("quiet_day_incidents", "on quiet days"),
        ("flash_called_ddos", "crowd called ddos"), ("ddos_called_flash", "ddos called crowd"),
        ("delay_median_s", "median delay s"), ("done", "Done when holds")]


def score_seed(seed: int, minutes: float | None, workdir: Path, family: str = "holdout") -> LogScore:
    """Generate one seed, analyze its log as the CLI does, score it against its labels."""
    log, labels = FAMILIES[family](seed, minutes)
    return score_log(log, labels, workdir)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=sorted(FAMILIES), default="holdout")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--first", type=int, default=5000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shieldwall-holdout-") as tmp:
        scores = [score_seed(s, args.minutes, Path(tmp), args.family)
                  for s in range(args.first, args.first + args.seeds)]
    summary = Summary.of(scores).as_json()
    doc = {"family": f"{args.family}_shop", "seeds": [args.first, args.first + args.seeds - 1], "summary": summary,
           "logs": [s.as_json() for s in scores], "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(doc, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print()
    for key, name in ROWS:
        v = summary.get(key, "")
        if isinstance(v, dict):
            v = " ".join(f"{k[:5]}:{x}" for k, x in v.items())
        print(f"{name:<22}{v if v is not None else '-':>20}")
    print("right by event: " + ", ".join(f"{k} {v}" for k, v in summary["right_by_event"].items()))
    print("misses:")
    for m in summary["misses"]:
        print("  " + m)


if __name__ == "__main__":
    main()
