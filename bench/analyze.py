"""How fast ``shieldwall analyze`` reads, parses and featurizes a combined log.

Generates a ten-million-line log (``--lines``) in shieldwall's access-log
format (combined + key=value fields) from the synthetic shop with attacks, to
a temporary file removed afterwards; then, each in a fresh process so peak
memory is per stage, measures lines per second for:

- ``read_parse``: reading and parsing every line (``readers.read_batches``: the
  compiled chunk reader, ``compiled_reader_lines`` of them, the rest in Python);
- ``read_parse_featurize``: plus 1 s windows and their features;
- ``read_parse_python``, ``read_parse_featurize_python``: the same with the pure-Python
  line reader (what every line went through before the compiled reader), side by side;
- ``analyze``: the whole detector (rules, hysteresis, incidents, series);

and prints JSON with peak RSS per stage. Single process, single core: the
figures are what one core does, per wall second and per CPU second (the
latter is the fair one on a shared machine; the load average is printed).

``whole_process``: the command a user runs, ``shieldwall analyze LOG --json OUT``,
timed from outside as a whole process (start-up and imports included) on a
``--whole-lines`` (650,000) line log of each format, ``--repeat`` (3) times
each, interleaved: wall and CPU seconds (the child's own rusage), lines per
wall second, and the incidents it found. ``cli`` is the command as installed
(both cores: a forked process parses and counts the chunks, the command's own
process adds them to its windows and runs the detector; ``parent_cpu_s`` is the
latter, the critical path when each has a core, ``child_cpu_s`` the former),
``cli_one_core`` the same pinned to one core (``taskset -c 0``), ``rows`` the per-line window loop
(``analyze(engine="rows")``); with ``--before REF`` also ``before``: the same
command run from the sources of git revision REF (``git archive``, on
PYTHONPATH), so old and new are timed side by side in one run, with
``*_vs_before`` ratios and a check that both found the same incidents. Both trees
are byte-compiled first (:func:`_byte_compiled`), as an installed package is.

Usage: .venv/bin/python bench/analyze.py [--lines 10000000] [--format access|combined]
                                         [--whole-lines 650000] [--repeat 3] [--whole-only]
                                         [--before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from shieldwall.detect.readers import Parsed
from shieldwall.detect.synth import clf_time, format_combined, generate, make_scenario


def make_log(path: Path, lines: int, fmt: str) -> dict[str, float]:
    """Repeat one labelled scenario, shifted in time, until ``lines`` lines are written."""
    t = time.perf_counter()
    sc = make_scenario(5, ["flash_crowd", "flood", "randomized", "cache_bust", "slow", "backend_failure"],
                       family="train")
    events = generate(sc)
    # pre-format everything after the timestamp once; only the time changes per copy
    parts = []
    for ev in events:
        line = format_combined(ev, access_fields=fmt == "access")
        a = line.index("[")
        b = line.index("]", a)
        parts.append((line[:a + 1], int(ev.time), line[b:] + "\n"))
    period = int(sc.duration) + 1
    written = 0
    times: dict[int, str] = {}
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as fh:
        copy = 0
        while written < lines:
            shift = copy * period
            chunk = []
            for head, sec, tail in parts:
                s = sec + shift
                ts = times.get(s)
                if ts is None:
                    if len(times) > 100_000:
                        times.clear()
                    ts = times[s] = clf_time(s)
                chunk.append(head + ts + tail)
                written += 1
                if written >= lines:
                    break
            fh.write("".join(chunk))
            copy += 1
    return {"lines": written, "seconds": round(time.perf_counter() - t, 1),
            "bytes": path.stat().st_size, "log_span_hours": round(copy * period / 3600, 1)}


def stage(name: str, path: Path) -> dict[str, float]:
    from shieldwall.detect.analyze import analyze
    from shieldwall.detect.features import Featurizer
    from shieldwall.detect.readers import ReadStats, _read_text_batches, read_batches
    from shieldwall.detect.settings import DetectSettings
    from shieldwall.detect.windows import WindowBuilder

    reader: Callable[[Path, str, ReadStats], Iterator[list[Parsed]]] = read_batches
    if name.endswith("_python"):  # the pure-Python line reader, as before the compiled one
        reader = partial(_read_text_batches, batch_bytes=1 << 20)
        name = name.removesuffix("_python")
    t = time.perf_counter()
    cpu = time.process_time()
    n = 0
    fast = -1
    if name == "read_parse":
        stats = ReadStats()
        for _ in reader(path, "auto", stats):
            pass
        n = stats.lines
        fast = stats.fast_lines
    elif name == "read_parse_featurize":
        s = DetectSettings()
        fz = Featurizer(s)
        b = WindowBuilder(lateness=s.offline_lateness, idle_gap=s.idle_gap,
                          asset_extensions=s.asset_extensions, asset_prefixes=s.asset_prefixes)
        stats = ReadStats()
        for batch in reader(path, "auto", stats):
            b.add_rows(batch)
            for w in b.drain():
                fz.learn(w, fz.featurize(w))
        for w in b.flush():
            fz.featurize(w)
        n = stats.lines
    elif name == "analyze":
        rep = analyze([path], "auto")
        n = rep.stats.lines
    dt = time.perf_counter() - t
    dcpu = time.process_time() - cpu
    return {"lines": n, "wall_s": round(dt, 2), "cpu_s": round(dcpu, 2),
            "lines_per_s": round(n / dt), "lines_per_cpu_s": round(n / dcpu),
            "peak_rss_mb": _peak_rss_mb(), **({"compiled_reader_lines": fast} if fast >= 0 else {})}


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ru_maxrss would include the parent's
    pages from before exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def _timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """One whole process: wall seconds and its own CPU seconds (user + sys, from wait4)."""
    with tempfile.TemporaryFile() as errf:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env=env)
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {err[-2000:]}")
    out = {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
           "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}
    for line in err.splitlines():
        if line.startswith(_SPLIT_TAG):
            out.update(json.loads(line[len(_SPLIT_TAG):]))
    return out


def _spread(xs: list[float], digits: int = 2) -> list[float]:
    """[min, median, max]."""
    ys = sorted(xs)
    return [round(ys[0], digits), round(ys[len(ys) // 2], digits), round(ys[-1], digits)]


_SPLIT_TAG = "analyze-cpu-split "
_CLI = ("import json, resource, sys; from shieldwall.cli import main; sys.argv[0] = 'shieldwall'\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "s = resource.getrusage(resource.RUSAGE_SELF); c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "hwm = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')]\n"
        f"print({_SPLIT_TAG!r} + json.dumps({{'parent_cpu_s': s.ru_utime + s.ru_stime, "
        "'child_cpu_s': c.ru_utime + c.ru_stime, 'parent_peak_mb': hwm[0] / 1024}), file=sys.stderr)\n"
        "sys.exit(code)")
"""``shieldwall analyze`` run as the installed command runs it, then its own CPU and its
parsing process's (the parent's is the critical path when the two have a core each)."""

_ROWS = ("import sys; from pathlib import Path; from shieldwall.detect.analyze import analyze; "
         "import json; r = analyze([Path(sys.argv[1])], engine='rows'); "
         "Path(sys.argv[2]).write_text(json.dumps(r.as_json()))")


def _byte_compiled(src: Path) -> None:
    """Byte-compile the modules under ``src`` once, as installing a package does. With
    ``PYTHONDONTWRITEBYTECODE`` set (it is, on the machines these benches run on) a tree
    whose ``.pyc`` files are missing or older than its sources -- a ``git archive`` of
    ``--before``, a module just edited -- compiles every such module again in every run:
    250M instructions in the parsing process alone on the 650,000-line log (callgrind),
    a cost no installed command pays, and one that favoured whichever tree had them."""
    import compileall

    compileall.compile_dir(str(src), quiet=1)


def _same_build(src: Path) -> bool:
    """Give the tree unpacked at ``src`` this tree's compiled hot path, when its hot sources
    are byte for byte this tree's (else it runs them pure, as it would have to).

    ``git archive`` unpacks sources only: without this the revision before ran the window
    builder and the rest of the hot path as pure Python while the tree ran them compiled,
    a difference that had nothing to do with the change timed. All or nothing, as
    ``shieldwall._build`` requires (compiled modules call each other directly)."""
    from shieldwall import _build

    here = Path(_build.__file__).resolve().parent.parent
    for name in _build.HOT:
        rel = Path(*name.split(".")).with_suffix(".py")
        if not (src / rel).is_file() or (src / rel).read_bytes() != (here / rel).read_bytes():
            return False
    import shutil

    for so in here.rglob("*.so"):
        dest = src / so.relative_to(here)
        if dest.parent.is_dir():
            shutil.copy2(so, dest)
    return True


def whole_process(tmp: Path, lines: int, repeat: int, before: str | None) -> dict[str, object]:
    """``shieldwall analyze`` as a user runs it, per log format, ``repeat`` times."""
    exe = Path(sys.executable).with_name("shieldwall")
    _byte_compiled(Path(__file__).resolve().parent.parent / "src")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "cli": ([sys.executable, "-c", _CLI, "analyze", "{log}", "--json", "{out}"], env),
        "cli_one_core": (["taskset", "-c", "0", sys.executable, "-c", _CLI, "analyze", "{log}",
                          "--json", "{out}"], env),
        "rows": ([sys.executable, "-c", _ROWS, "{log}", "{out}"], env),
    }
    compiled_before = False
    if before:
        src = tmp / "before"
        src.mkdir()
        repo = Path(__file__).resolve().parent.parent
        archive = subprocess.run(["git", "-C", str(repo), "archive", before, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        _byte_compiled(src / "src")
        compiled_before = _same_build(src / "src")
        commands["before"] = ([str(exe), "analyze", "{log}", "--json", "{out}"],
                              {**env, "PYTHONPATH": str(src / "src")})
    out: dict[str, object] = {}
    if before:
        out["before_compiled"] = compiled_before
    for fmt in ("combined", "access"):
        log = tmp / f"whole-{fmt}.log"
        info = make_log(log, lines, fmt)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
        found: dict[str, list[object]] = {}
        for _ in range(repeat):
            for name, (cmd, cenv) in commands.items():
                js = tmp / f"out-{name}.json"
                argv = [a.replace("{log}", str(log)).replace("{out}", str(js)) for a in cmd]
                runs[name].append(_timed(argv, cenv))
                rep = json.loads(js.read_text())
                found[name] = rep["incidents"]
                assert rep["lines"] == info["lines"], (name, rep["lines"])
        res: dict[str, object] = {"log_lines": info["lines"], "log_bytes": info["bytes"]}
        for name, rs in runs.items():
            walls = [r["wall_s"] for r in rs]
            cpus = [r["cpu_s"] for r in rs]
            res[name] = {
                "wall_s": _spread(walls), "cpu_s": _spread(cpus),
                "lines_per_s": _spread([info["lines"] / w for w in walls], -3),
                "lines_per_cpu_s": _spread([info["lines"] / c for c in cpus], -3),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "incidents": len(found[name])}
            if all("parent_cpu_s" in r for r in rs):
                parent = [r["parent_cpu_s"] for r in rs]
                res[name].update({  # type: ignore[attr-defined]
                    "parent_cpu_s": _spread(parent), "child_cpu_s": _spread([r["child_cpu_s"] for r in rs]),
                    "lines_per_parent_cpu_s": _spread([info["lines"] / c for c in parent], -3),
                    # VmHWM: ru_maxrss counts this bench's own pages from before the exec
                    "parent_peak_mb": round(max(r["parent_peak_mb"] for r in rs), 1)})
        # the tree's own ways must agree; the revision before may differ where its rules did
        res["same_incidents"] = all(f == found["cli"] for k, f in found.items() if k != "before")
        if "before" in found:
            res["before_same_incidents"] = found["before"] == found["cli"]
        for name in ("cli", "cli_one_core", "rows"):
            if "before" in runs:
                # per run pair (interleaved), then min/median/max of the ratios
                res[f"{name}_vs_before_wall"] = _spread(
                    [b["wall_s"] / a["wall_s"] for a, b in zip(runs[name], runs["before"], strict=True)])
                res[f"{name}_vs_before_cpu"] = _spread(
                    [b["cpu_s"] / a["cpu_s"] for a, b in zip(runs[name], runs["before"], strict=True)])
        out[fmt] = res
        log.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--format", default="access", choices=["access", "combined"])
    ap.add_argument("--whole-lines", type=int, default=650_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", metavar="REF",
                    help="also time the analyzer of this git revision (e.g. a commit before a change)")
    ap.add_argument("--whole-only", action="store_true",
                    help="only the whole-process figures (skip the ten-million-line stages)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, Path(args.log))))
        return
    out: dict[str, object] = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    target = 500_000
    out["goal_lines_per_s"] = target
    with tempfile.TemporaryDirectory(prefix="shieldwall-bench-") as tmp:
        out["whole_process"] = whole_process(Path(tmp), args.whole_lines, args.repeat, args.before)
        if args.whole_only:
            out["load_average"] = os.getloadavg()
            print(json.dumps(out, indent=2))
            return
        log = Path(tmp) / "access.log"
        out["log"] = make_log(log, args.lines, args.format)
        for name in ("read_parse", "read_parse_python", "read_parse_featurize",
                     "read_parse_featurize_python", "analyze"):
            res = subprocess.run([sys.executable, __file__, "--stage", name, "--log", str(log)],
                                 capture_output=True, text=True, check=True)
            out[name] = json.loads(res.stdout)
    feat = out["read_parse_featurize"]
    assert isinstance(feat, dict)
    out["featurize_cpu_vs_goal"] = round(feat["lines_per_cpu_s"] / target, 3)
    for name in ("read_parse", "read_parse_featurize"):
        new, old = out[name], out[name + "_python"]
        assert isinstance(new, dict) and isinstance(old, dict)
        out[name + "_cpu_speedup_vs_python_reader"] = round(new["lines_per_cpu_s"] / old["lines_per_cpu_s"], 2)
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
