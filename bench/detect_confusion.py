"""The detector on labelled traffic it was not written from: per family, train and test side by side.

Usage: .venv/bin/python bench/detect_confusion.py [--split train|test|both] [--seeds N]
           [--family NAME ...] [--minutes M] [--json PATH] [--no-synth]

Families (src/shieldwall/detect/families): ``small_shop``, ``mid_shop``,
``cdn_origin``, written from how shops, people, bots and failures behave, and
the old generator ``synth`` (detect/synth.py, which the detector was tuned on).
Each log is written to disk and read by the same ``analyze`` the CLI runs; the
scoring rules are in families/score.py. Train seeds are 0..N-1, test seeds
1000..1000+N-1; the test split is never used to tune. Prints JSON, then a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from shieldwall.detect.evaluate import evaluate
from shieldwall.detect.families import FAMILIES, TEST_SEEDS, TRAIN_SEEDS
from shieldwall.detect.families.score import Summary, run
from shieldwall.detect.synth import make_scenario

SYNTH_KINDS = ["flash_crowd", "flood", "randomized", "cache_bust", "slow", "backend_failure", "flood_heavy",
               "backend_hang"]

ROWS = [("logs", "logs"), ("hours", "hours"), ("events", "labelled incidents"), ("found_share", "found (verdict)"),
        ("kind_share", "ddos kind right"), ("split_events", "events split"), ("invented", "invented"),
        ("invented_per_2h", "invented / 2 h"), ("quiet_day_incidents", "on quiet days"),
        ("flash_called_ddos", "crowd called ddos"), ("ddos_called_flash", "ddos called crowd"),
        ("delay_median_s", "median delay s"), ("done", "Done when holds")]


def synth_family(seeds: list[int]) -> dict[str, Any]:
    """The old generator's scenarios, scored per phase as evaluate.py does."""
    phases = found = kind_ok = base = flash_ddos = 0
    misses = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(seeds):
            kinds = SYNTH_KINDS[i % len(SYNTH_KINDS):] + SYNTH_KINDS[:i % len(SYNTH_KINDS)]
            ev = evaluate(make_scenario(seed, kinds, family="train" if seed < 1000 else "heldout"), Path(tmp))
            base += len(ev.baseline_incidents)
            for r in ev.phases:
                phases += 1
                found += r.incident is not None
                kind_ok += r.found
                if r.phase.kind == "flash_crowd":
                    flash_ddos += any(i.verdict == "ddos" for i in r.wrong)
                if not r.found:
                    misses.append(f"synth {seed} {r.phase.kind}")
    return {"logs": len(seeds), "events": phases, "found_share": round(found / phases, 3) if phases else None,
            "kind_share": round(kind_ok / max(found, 1), 3), "invented": base, "flash_called_ddos": flash_ddos,
            "misses": misses}


def table(out: dict[str, dict[str, Any]]) -> str:
    cols = list(out)
    w0 = max(len(r[1]) for r in ROWS) + 2
    w = max(14, *(len(c) + 2 for c in cols))
    lines = ["".ljust(w0) + "".join(c.rjust(w) for c in cols)]
    for key, name in ROWS:
        cells = []
        for c in cols:
            v = out[c].get(key, "")
            if isinstance(v, dict):
                v = " ".join(f"{k[:5]}:{x}" for k, x in v.items())
            cells.append(str(v if v is not None else "-").rjust(w))
        lines.append(name.ljust(w0) + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="both", choices=["train", "test", "both"])
    ap.add_argument("--seeds", type=int, default=8, help="seeds per split and family (max 8)")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these (repeatable)")
    ap.add_argument("--minutes", type=float, default=None, help="shorter logs (fewer events)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--no-synth", action="store_true", help="leave out the old synth family")
    ap.add_argument("--per-log", action="store_true", help="print every log's incidents")
    args = ap.parse_args()
    splits = ["train", "test"] if args.split == "both" else [args.split]
    seeds = {"train": list(TRAIN_SEEDS[: args.seeds]), "test": list(TEST_SEEDS[: args.seeds])}
    out: dict[str, dict[str, Any]] = {}
    per_log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for fam in args.family or list(FAMILIES):
        for sp in splits:
            scores = run(fam, seeds[sp], minutes=args.minutes)
            out[f"{fam}/{sp}"] = Summary.of(scores).as_json()
            per_log += [s.as_json() for s in scores]
    if not args.no_synth and not args.family:
        for sp in splits:
            out[f"synth/{sp}"] = synth_family([(1 if sp == "train" else 1000) + i for i in range(min(args.seeds, 3))])
    doc = {"families": out, "seconds": round(time.perf_counter() - t0, 1)}
    if args.per_log:
        doc["logs"] = per_log
    print(json.dumps(doc, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print()
    print(table(out))


if __name__ == "__main__":
    main()
