"""Labelled-traffic scoring of the detector: per-phase results and the window
confusion table, for the training family and the held-out family.

Usage: .venv/bin/python bench/detect_confusion.py [--seeds N] [--format access|combined|json]
Prints JSON (per family: phases found, kind right, max delay, baseline
incidents, flash crowds called ddos) followed by the confusion tables, the
last one over the real lab logs in tests/data/drill (the drill's own labels;
the first 5 s of each phase and 10 s after it are left out).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from shieldwall.detect.analyze import analyze
from shieldwall.detect.detector import StepResult
from shieldwall.detect.evaluate import confusion_table, evaluate
from shieldwall.detect.synth import make_scenario
from shieldwall.detect.windows import Window

KINDS = ["flash_crowd", "flood", "randomized", "cache_bust", "slow", "backend_failure", "flood_heavy",
         "backend_hang"]


DRILL = Path(__file__).resolve().parents[1] / "tests" / "data" / "drill"
DRILL_KIND = {"flood": "flood", "randomized": "randomized", "cache-bust": "cache_bust", "slowloris": "slow",
              "slow-post": "slow", "smart-bot": "flood"}
"""The drill's attack names -> our ddos kinds (a smart bot is judged a flood)."""


def drill_confusion() -> tuple[Counter[tuple[str, str]], dict[str, list[str]]]:
    """Window confusion over the recorded drill logs, and each log's incidents."""
    conf: Counter[tuple[str, str]] = Counter()
    found: dict[str, list[str]] = {}
    for d in sorted(p for p in DRILL.iterdir() if p.is_dir()):
        labels = json.loads((d / "phases.json").read_text())
        phases = [(p["start_unix"], p["end_unix"], p["expect"],
                   DRILL_KIND.get(p["attacks"][0]["kind"], "?") if p["attacks"] else None)
                  for p in labels["phases"]]

        def truth(sec: float, phases: list[tuple[float, float, str, str | None]] = phases) -> str | None:
            for i, (a, b, expect, kind) in enumerate(phases):
                if a <= sec < b:
                    after_anomaly = i > 0 and phases[i - 1][2] != "normal" and expect == "normal"
                    if sec < a + (10 if after_anomaly else 5):
                        return None
                    return f"ddos:{kind}" if expect == "ddos" else expect
            return None

        def on_step(w: Window, r: StepResult, truth=truth) -> None:  # type: ignore[no-untyped-def]
            t = truth(w.sec)
            if t is not None:
                conf[(t, f"ddos:{r.kind}" if r.state == "ddos" else r.state)] += 1

        rep = analyze([d / "access.log.gz"], "combined", on_step=on_step)
        found[d.name] = [f"{i.verdict}{':' + i.kind if i.kind else ''}" for i in rep.incidents]
    return conf, found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--format", default="access", choices=["access", "combined", "json"])
    args = ap.parse_args()
    out: dict[str, object] = {}
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, base in (("train", 1), ("heldout", 1000)):
            conf: Counter[tuple[str, str]] = Counter()
            phases = found = kind_ok = 0
            misses: list[str] = []
            delays: dict[str, float] = {}
            base_inc = flash_as_ddos = 0
            for i in range(args.seeds):
                seed = base + i
                kinds = KINDS[i % len(KINDS):] + KINDS[:i % len(KINDS)]
                ev = evaluate(make_scenario(seed, kinds, family=family), Path(tmp), fmt=args.format)
                conf.update(ev.confusion)
                base_inc += len(ev.baseline_incidents)
                for r in ev.phases:
                    phases += 1
                    found += r.incident is not None
                    kind_ok += r.found
                    if not r.found:
                        misses.append(f"seed {seed} {r.phase.kind}: "
                                      + (f"{r.incident.verdict}/{r.incident.kind}" if r.incident else
                                         "not found; " + ",".join(i.verdict for i in r.wrong)))
                    if r.delay is not None:
                        delays[r.phase.kind] = max(delays.get(r.phase.kind, -1e9), round(r.delay, 1))
                    if r.phase.kind == "flash_crowd":
                        flash_as_ddos += sum(i.verdict == "ddos" for i in r.wrong)
            out[family] = {"phases": phases, "found": found, "kind_right": kind_ok,
                           "max_delay_s": delays, "baseline_incidents": base_inc,
                           "flash_crowd_called_ddos": flash_as_ddos, "misses": misses}
            tables.append(f"== {family} ({args.seeds} scenarios, {args.format} logs) ==\n"
                          + confusion_table(conf))
    conf_d, found_d = drill_confusion()
    out["drill_logs_incidents"] = found_d
    tables.append("== drill logs (nginx combined, tests/data/drill) ==\n" + confusion_table(conf_d))
    print(json.dumps(out, indent=2))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
