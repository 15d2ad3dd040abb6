"""The compiled chunk reader gives, line for line, exactly the rows and the counts the
Python line parser gives: same fields, same order, same unparsed lines and samples."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldwall.detect import arrow_reader
from shieldwall.detect.readers import Parsed, ReadStats, _read_text_batches, read_batches
from shieldwall.detect.synth import generate, make_scenario, write_log

DATA = Path(__file__).parent.parent / "data"


def _both(path: Path, fmt: str = "auto") -> tuple[list[Parsed], ReadStats, list[Parsed], ReadStats]:
    fast_stats, slow_stats = ReadStats(max_samples=50), ReadStats(max_samples=50)
    fast = [r for b in read_batches(path, fmt, fast_stats) for r in b]
    slow = [r for b in _read_text_batches(path, fmt, slow_stats, 1 << 20) for r in b]
    return fast, fast_stats, slow, slow_stats


def _assert_same(path: Path, fmt: str = "auto") -> ReadStats:
    fast, fs, slow, ss = _both(path, fmt)
    assert fast == slow
    assert (fs.lines, fs.unparsed, fs.samples) == (ss.lines, ss.unparsed, ss.samples)
    return fs


def test_generated_access_and_combined_logs_read_the_same_on_the_fast_path(tmp_path: Path) -> None:
    events = generate(make_scenario(3, ["flood", "randomized", "slow"], family="train", warmup=20,
                                    phase_len=(5, 6), gap=(5, 6)))
    for fmt, name in (("access", "a.log"), ("combined", "c.log.gz")):
        log = tmp_path / name
        write_log(events, log, fmt)
        stats = _assert_same(log)
        assert stats.lines == len(events)
        assert stats.fast_lines == stats.lines  # every line took the compiled path


def test_a_real_log_with_one_broken_line_keeps_the_rest_on_the_fast_path() -> None:
    stats = _assert_same(DATA / "real-apache-2015.log", "combined")
    assert stats.lines == 10_000
    assert stats.fast_lines == 9_999  # the unterminated user agent went through Python


def test_bad_json_and_odd_lines_between_good_ones_are_counted_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = ('10.0.0.{i} - - [22/Nov/2026:03:04:{s:02d} +0000] "GET /p?q={i} HTTP/1.1" 200 {i} "-" '
            '"UA {i}" rt=0.0{s:02d} up=127.0.0.1:9001 ut=- us=200 o=ok d=allow c=unknown s={b} v=0\n')
    odd = ["garbage line\n", "\n", '{"time": 1795316645, "client": "::1", "status": 200}\n',
           '1.2.3.4 - - [22/Nov/2026:03:04:05 +0000] "GET /a HTTP/1.1" 200 1 "-" "evil \\"x\\"" rt=0.5\n',
           '1.2.3.4 - - [22/Nov/2026:03:04:05 +0000] "GET /b HTTP/1.1" 200 1 "-" "tab\there"\r\n',
           '\x16\x03\x01 tls bytes\n']
    lines = []
    for i in range(3000):
        lines.append(good.format(i=i % 250, s=i // 60, b=i % 2))
        if i % 400 == 7:
            lines.append(odd[(i // 400) % len(odd)])
    log = tmp_path / "mixed.log.gz"
    with gzip.open(log, "wt", encoding="utf-8") as fh:
        fh.write("".join(lines))
    # small chunks, so odd lines land in several chunks and at their edges
    monkeypatch.setattr(arrow_reader, "CHUNK_BYTES", 16_384)
    stats = _assert_same(log)
    assert stats.unparsed == 3  # "garbage line" twice and the TLS bytes; the blank line is no line
    assert stats.lines == 3000 + 8 - 2  # blank lines are not counted as lines
    assert 0 < stats.fast_lines < stats.lines


def test_a_byte_order_mark_and_crlf_lines_read_as_the_text_reader_reads_them(tmp_path: Path) -> None:
    line = ('10.0.0.1 - - [22/Nov/2026:03:04:05 +0000] "GET /x?y=1 HTTP/1.1" 200 5 "-" "UA" '
            "rt=0.001 up=- ut=- us=- o=ok d=allow c=unknown s=0 v=1")
    for name, data in (("bom.log", b"\xef\xbb\xbf" + (line + "\n").encode() * 3),
                       ("crlf.log", (line + "\r\n").encode() * 3),
                       ("noeol.log", (line + "\n").encode() * 2 + line.encode())):
        log = tmp_path / name
        log.write_bytes(data)
        assert _assert_same(log).lines == 3


_FIELD = st.text(alphabet=st.sampled_from(list('ab/?= -"\\\t\u00a0\u2003x.1')), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_FIELD, _FIELD, _FIELD, st.sampled_from(["200", "5x", "-", "404"]),
                          st.booleans()), min_size=1, max_size=30))
def test_any_line_reads_the_same_on_both_paths(rows: list[tuple[str, str, str, str, bool]]) -> None:
    text = []
    for client, request, ua, status, access in rows:
        line = (f'{client or "c"} - - [22/Nov/2026:03:04:05 +0000] "{request}" {status} 12 "-" "{ua}"')
        if access:
            line += " rt=0.010 up=- ut=0.009 us=200 o=ok d=allow c=unknown s=1 v=0"
        text.append(line + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "h.log"
        log.write_text("".join(text), encoding="utf-8")
        _assert_same(log)
        _assert_same(log, "combined")


@pytest.mark.parametrize("extra", range(12))
def test_lines_of_any_field_count_read_the_same_on_both_paths(tmp_path: Path, extra: int) -> None:
    """The fast path reads only the columns it uses, and still knows how many fields the
    lines have: 10 (combined) and 19 (the access log) on it, any other count declined."""
    fields = ["rt=0.010", "up=-", "ut=0.009", "us=200", "o=ok", "d=allow", "c=unknown", "s=1", "v=0",
              "x=1", "y=2", "z=3"][:extra]
    line = ('10.0.0.1 - - [22/Nov/2026:03:04:05 +0000] "GET /p?q=1 HTTP/1.1" 200 12 "-" "ua"'
            + "".join(" " + f for f in fields) + "\n")
    log = tmp_path / "n.log"
    log.write_text(line * 40, encoding="utf-8")
    stats = _assert_same(log)
    assert stats.lines == 40
    assert (stats.fast_lines == 40) == (extra in (0, 9))
