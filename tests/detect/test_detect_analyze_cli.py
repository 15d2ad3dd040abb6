"""``shieldwall analyze``: a real quiet site raises nothing; an attack log gives
the issue's JSON exactly, a timeline and a self-contained HTML page."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

from shieldwall.detect.synth import format_combined, generate, make_scenario, write_log

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = DATA / "real-apache-2015.log"


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shieldwall.cli", "analyze", *args],
                          capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""})


def test_a_real_quiet_site_log_raises_no_incident(tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    res = _analyze(str(REAL), "--format", "combined", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text()) == {"incidents": [], "lines": 10000, "unparsed": 0}
    assert "no incident" in res.stdout


def test_attack_log_gives_the_issue_json_a_timeline_and_html(tmp_path: Path) -> None:
    sc = make_scenario(11, ["flood", "backend_failure"], family="heldout", warmup=60)
    log = tmp_path / "shop.log.gz"
    write_log(generate(sc), log)
    # a few bad lines in the middle: counted, shown, never fatal
    bad = tmp_path / "bad.log"
    bad.write_text("this is not a log line\n" + format_combined(generate(sc)[0]) + "\n"
                   + '{"client": "1.2.3.4"}\n')
    out, page = tmp_path / "out.json", tmp_path / "out.html"
    res = _analyze(str(log), str(bad), "--json", str(out), "--html", str(page),
                   "--revenue-per-minute", "50000")
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(doc) == {"incidents", "lines", "unparsed"}
    assert doc["unparsed"] == 2
    with gzip.open(log, "rt") as fh:
        assert doc["lines"] == sum(1 for _ in fh) + 3
    verdicts = [(i["verdict"], i["kind"]) for i in doc["incidents"]]
    assert verdicts == [("ddos", "flood"), ("backend_failure", None)]
    for inc in doc["incidents"]:
        assert set(inc) == {"start", "end", "verdict", "kind", "confidence", "evidence", "peak_rps",
                            "sources", "top_prefixes", "legit_failed_share"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", inc["start"])
        assert inc["start"] < inc["end"]
        assert isinstance(inc["evidence"], list) and inc["evidence"]
    flood, failure = doc["incidents"]
    assert flood["legit_failed_share"] < 0.05
    assert failure["legit_failed_share"] > 0.5
    assert "this is not a log line" in res.stdout
    assert "ddos (flood)" in res.stdout and "backend_failure" in res.stdout
    assert "revenue at risk" in res.stdout
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "<polyline" in html
    assert html.count("<rect") == 2
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)=|@import|url\(', html)


def test_bad_arguments_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    res = _analyze(str(tmp_path / "missing.log"))
    assert res.returncode != 0 and "no such file" in res.stderr
    res = _analyze(str(REAL), "--format", "apache")
    assert res.returncode != 0 and "expected one of auto, combined, json" in res.stderr


def test_config_detect_section_is_validated_and_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "shield.toml"
    cfg.write_text('[[backends]]\nurl = "http://127.0.0.1:9001"\n[detect]\nrate_factor = 0.5\n')
    res = _analyze(str(REAL), "--config", str(cfg))
    assert res.returncode == 2
    assert "detect.rate_factor" in res.stdout and "0.5" in res.stdout


def _via_typer(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command line through Typer (what every non-plain command line takes)."""
    code = "import sys; from shieldwall.cli import make_app; make_app(['detect'])(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, "analyze", *args], capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""})


def test_a_plain_command_line_runs_without_typer_and_prints_what_typer_prints(tmp_path: Path) -> None:
    sc = make_scenario(12, ["flood", "backend_failure"], family="heldout", warmup=60)
    log = tmp_path / "shop.log"
    write_log(generate(sc), log)
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[backends]]\nurl = "http://127.0.0.1:9001"\n[detect]\nrate_factor = 0.5\n')
    for args in ([str(REAL), "--format", "combined"],
                 [str(log), "--revenue-per-minute=50000", "--json", "{d}/a.json", "--html", "{d}/a.html"],
                 [str(log), str(REAL), "--json", "{d}/a.json"],
                 [str(REAL), "--config", str(cfg)]):
        runs = []
        for how, run in (("plain", _analyze), ("typer", _via_typer)):
            d = tmp_path / how
            d.mkdir(exist_ok=True)
            res = run(*(a.replace("{d}", str(d)) for a in args))
            files = {p.name: p.read_text() for p in sorted(d.iterdir())}
            runs.append((res.returncode, res.stdout, files))
            for p in d.iterdir():
                p.unlink()
        assert runs[0] == runs[1], args
        assert runs[0][0] == (2 if "--config" in args else 0)


def test_only_plain_command_lines_skip_typer(tmp_path: Path) -> None:
    from shieldwall.detect import _run
    from shieldwall.detect.readers import FORMATS

    assert _run.FORMATS == FORMATS
    log = str(REAL)
    p = _run.plain_args([log, "--json", "o.json", "--format=combined", "--revenue-per-minute", "2.5"])
    assert p == _run.Plain([REAL], "combined", Path("o.json"), None, 2.5, None)
    assert _run.plain_args(["--", log]) == _run.Plain([REAL])
    for args in ([], ["--help"], [log, "--help"], [log, "--verbose"], [log, "--json"],
                 [log, "--json", "a", "--json", "b"], [log, "--json", "--html"], [log, "--json="],
                 [str(tmp_path / "missing.log")], [log, "--format", "apache"],
                 [log, "--revenue-per-minute", "-1"], [log, "--revenue-per-minute", "x"],
                 [log, "--revenue-per-minute", "inf"]):
        assert _run.plain_args(args) is None, args
    # and such a line runs without Typer (or pydantic: no --config, the cached defaults)
    code = ("import sys; sys.argv = ['shieldwall', 'analyze', sys.argv[1]]\n"
            "from shieldwall.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'pydantic')),"
            " file=sys.stderr)")
    for _ in range(2):  # the first run may write the defaults' cache
        res = subprocess.run([sys.executable, "-c", code, log], capture_output=True, text=True,
                             timeout=120, check=True)
    assert res.stderr.strip().splitlines()[-1] == "[]"
