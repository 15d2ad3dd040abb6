"""Log readers: every supported format gives the same fields; bad lines are
counted and shown, never fatal."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from shieldwall.detect.events import Outcome, RequestEvent
from shieldwall.detect.readers import LineParser, ReadStats, read_logs
from shieldwall.detect.synth import format_combined, format_json

ACCESS_EXAMPLE = (
    '127.0.0.7 - - [22/Nov/2026:03:04:05 +0000] "GET /product/3?x=1 HTTP/1.1" 200 5120 "-" '
    '"Mozilla/5.0" rt=0.012 up=127.0.0.1:9001 ut=0.010 us=200 o=ok d=allow c=unknown s=0 v=0\n'
)
T = 1795316645.0  # 22/Nov/2026:03:04:05 UTC


def test_access_log_example_from_the_docs_parses_with_all_fields() -> None:
    rec = LineParser("auto").parse(ACCESS_EXAMPLE)
    assert rec == (T + 0.012, "127.0.0.7", "/product/3", "x=1", 200, 5120, 0.012, "Mozilla/5.0",
                   False, False, "ok", 0.010)


def test_plain_combined_and_common_lines_parse_without_the_extra_fields() -> None:
    p = LineParser("combined")
    combined = '10.1.2.3 - bob [22/Nov/2026:04:04:05 +0100] "POST /cart HTTP/1.0" 502 - "http://x/" "curl/8"\n'
    assert p.parse(combined) == (T, "10.1.2.3", "/cart", "", 502, 0, 0.0, "curl/8", False, False, "-", -1.0)
    common = '10.1.2.3 - - [22/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 10\n'
    assert p.parse(common) == (T, "10.1.2.3", "/", "", 200, 10, 0.0, "", False, False, "-", -1.0)


def test_escaped_quotes_in_user_agent_fall_back_to_the_strict_parser() -> None:
    line = '1.2.3.4 - - [22/Nov/2026:03:04:05 +0000] "GET /a HTTP/1.1" 200 1 "-" "evil \\"agent\\"" rt=0.500 o=timeout s=1 v=1\n'
    rec = LineParser("auto").parse(line)
    assert rec is not None
    assert rec[7] == 'evil "agent"'
    assert rec[6] == 0.5 and rec[8] is True and rec[9] is True and rec[10] == "timeout"


def test_json_lines_use_request_event_field_names() -> None:
    ev = RequestEvent(T, "::1", "GET", "/search", "q=a", 504, 0, 3.0, "ua", "-", True, False,
                      "127.0.0.1:9001", Outcome.TIMEOUT, -1.0, "allow", "customer")
    rec = LineParser("json").parse(format_json(ev))
    assert rec == (T + 3.0, "::1", "/search", "q=a", 504, 0, 3.0, "ua", True, False, "timeout", -1.0)
    iso = json.dumps({"time": "2026-11-22T03:04:05Z", "client": "1.1.1.1", "status": 200, "path": "/x?y=1"})
    assert LineParser("auto").parse(iso) == (T, "1.1.1.1", "/x", "y=1", 200, 0, 0.0, "", False, False, "-", -1.0)


def test_unknown_format_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of auto, combined, json"):
        LineParser("apache")


def test_bad_lines_are_counted_and_sampled_and_reading_goes_on(tmp_path: Path) -> None:
    ev = RequestEvent(T, "10.0.0.1", "GET", "/", "", 200, 1, 0.001)
    good = format_combined(ev) + "\n"
    log = tmp_path / "mixed.log.gz"
    with gzip.open(log, "wt") as fh:
        fh.write(good + "garbage line\n" + "\n" + '{"broken json\n' + good + "\x16\x03\x01 tls bytes\n" + good)
    stats = ReadStats(max_samples=2)
    recs = list(read_logs([log], "auto", stats))
    assert len(recs) == 3
    assert stats.lines == 6 and stats.unparsed == 3
    assert len(stats.samples) == 2 and "mixed.log.gz:2" in stats.samples[0]


def test_formatted_events_round_trip_through_the_access_log_format() -> None:
    ev = RequestEvent(T, "10.0.0.9", "GET", "/p", "a=b", 200, 77, 0.25, "UA x", "http://r/", True, True,
                      "127.0.0.1:9002", Outcome.OK, 0.2, "allow", "customer")
    rec = LineParser("auto").parse(format_combined(ev))
    assert rec == (T + 0.25, "10.0.0.9", "/p", "a=b", 200, 77, 0.25, "UA x", True, True, "ok", 0.2)


def test_a_line_without_request_parses_with_an_empty_path_and_any_time_zone() -> None:
    # what nginx and the proxy write when a client never sent a request line (408, 400)
    line = '127.0.0.1 - - [22/Nov/2026:04:04:05 +0100] "-" 408 0 "-" "-" rt=10.001 up=- ut=- us=- o=shield d=- c=- s=0 v=0\n'
    assert LineParser("auto").parse(line) == (T + 10.001, "127.0.0.1", "", "", 408, 0, 10.001, "-",
                                              False, False, "shield", -1.0)
