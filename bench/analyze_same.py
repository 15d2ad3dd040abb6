"""Does a speed change leave ``shieldwall analyze``'s answers exactly as they were?

Runs the analyzer of the working tree and of a git revision (``--before REF``, its
``src`` unpacked from ``git archive`` and put on PYTHONPATH), each in a fresh
process, over the same logs, and compares what each saw: the incidents JSON the
CLI writes (every field: times, verdicts, kinds, evidence, sources, prefixes), the
line counts, and a digest of every window's features, raw verdict, state and mode
(``analyze(on_step=...)``), so a change that moves one float of one second shows.

Logs: the real 2015 log in tests/data, a log of each issue-9 family (``--seeds``,
train and test, ``--minutes`` long; written once to ``--dir``), and the bench's
650,000-line synthetic combined and access logs (``bench/analyze.py``'s
``make_log``; ``--no-big`` skips them). Prints JSON: per log, same or not, and the
first differing incident when not. Exit status 1 when anything differs.

Usage: .venv/bin/python bench/analyze_same.py --before main [--dir /tmp/analyze-same]
                                              [--seeds 0,1000] [--minutes 30] [--no-big]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_DIGEST = r"""
import hashlib, json, sys
from pathlib import Path
from shieldwall.detect.analyze import analyze

h = hashlib.sha256()
windows = 0

def on_step(w, r):
    global windows
    windows += 1
    h.update(repr((w.sec, sorted(r.features.as_dict().items()), r.raw.verdict, r.raw.kind,
                   r.raw.confidence, r.state, r.kind, str(r.mode))).encode())

rep = analyze([Path(sys.argv[1])], "auto", on_step=on_step)
print(json.dumps({"report": rep.as_json(), "windows": windows, "late": rep.late,
                  "digest": h.hexdigest()}))
"""


def logs(workdir: Path, seeds: list[int], minutes: float, big: bool) -> list[Path]:
    """The logs compared, written to ``workdir`` once (kept for the next call)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from shieldwall.detect.families import FAMILIES

    workdir.mkdir(parents=True, exist_ok=True)
    out = [ROOT / "tests/data/real-apache-2015.log"]
    for fam, make in FAMILIES.items():
        for seed in seeds:
            p = workdir / f"{fam}-{seed}-{minutes:g}m.log"
            if not p.exists():
                log, _ = make(seed, minutes)
                log.write(p)
            out.append(p)
    if big:
        from analyze import make_log  # bench/analyze.py

        for fmt in ("combined", "access"):
            p = workdir / f"synthetic-{fmt}-650k.log"
            if not p.exists():
                make_log(p, 650_000, fmt)
            out.append(p)
    return out


def run(log: Path, pythonpath: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    res = subprocess.run([sys.executable, "-c", _DIGEST, str(log)], capture_output=True, text=True,
                         env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"analyze {log} failed: {res.stderr[-2000:]}")
    out: dict[str, object] = json.loads(res.stdout)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, metavar="REF")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "analyze-same"))
    ap.add_argument("--seeds", default="0,1000")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--no-big", action="store_true")
    args = ap.parse_args()
    paths = logs(Path(args.dir), [int(s) for s in args.seeds.split(",")], args.minutes, not args.no_big)
    result: dict[str, object] = {"before": args.before}
    differ = 0
    with tempfile.TemporaryDirectory(prefix="analyze-same-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for p in paths:
            a = run(p, None)
            b = run(p, str(Path(tmp) / "src"))
            same = a == b
            row: dict[str, object] = {"same": same, "incidents": len(a["report"]["incidents"]),  # type: ignore[index]
                                      "lines": a["report"]["lines"], "windows": a["windows"]}  # type: ignore[index]
            if not same:
                differ += 1
                for k in ("digest", "windows", "late"):
                    if a[k] != b[k]:
                        row[f"{k}_now_before"] = [a[k], b[k]]
                ia, ib = a["report"]["incidents"], b["report"]["incidents"]  # type: ignore[index]
                for x, y in zip(ia, ib, strict=False):
                    if x != y:
                        row["first_differing_incident"] = {"now": x, "before": y}
                        break
            result[p.name] = row
    result["all_same"] = differ == 0
    print(json.dumps(result, indent=2))
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
