"""AccessLog.write keeps the parts of the line before and reuses them while
their fields match: the lines must be byte for byte what one f-string per
request made (the format of docs/ACCESS_LOG.md)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from shieldwall.proxy.accesslog import AccessLog, _esc, _secs

Fields = tuple[str, float, str, str, str, int, int, str, str, float, str, float, int, str, str,
               str, bool, bool]


def _line(client: str, start: float, method: str, target: str, version: str, status: int,
          sent: int, referer: str, agent: str, rt: float, up: str, ut: float, us: int,
          outcome: str, decision: str, cls: str, session: bool, verified: bool) -> str:
    """The line as one f-string per request made it."""
    request = f"{method} {target} HTTP/{version}" if method else "-"
    referer = referer or "-"
    agent = agent or "-"
    quoted = request + referer + agent
    if '"' in quoted or "\\" in quoted or not quoted.isprintable():
        request, referer, agent = _esc(request), _esc(referer), _esc(agent)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(int(start)))
    return (f'{client} - - [{stamp}] "{request}" {status} {sent} '
            f'"{referer}" "{agent}" rt={_secs(rt) if rt > 0.0 else "0.000"} up={up or "-"} '
            f'ut={_secs(ut) if ut >= 0 else "-"} us={str(us) if us else "-"} o={outcome or "-"} '
            f'd={decision or "-"} c={cls or "-"} s={"1" if session else "0"} '
            f'v={"1" if verified else "0"}\n')


def test_lines_are_the_same_as_one_format_per_request(tmp_path: Path) -> None:
    rnd = random.Random(11)
    log = AccessLog(str(tmp_path / "a.log"))
    want: list[str] = []
    t = 1_800_000_000.0
    prev: Fields | None = None
    for _ in range(3000):
        t += rnd.choice([0.0, 0.001, 0.3, 1.0])
        if prev is not None and rnd.random() < 0.6:
            # the same request again, its times changed (most of a real log)
            f = list(prev)
            f[1], f[9], f[11] = t, rnd.choice([0.0, 0.002, 0.0004]), rnd.choice([-1.0, 0.001])
            fields: Fields = tuple(f)  # type: ignore[assignment]
        else:
            fields = (rnd.choice(["10.0.0.1", "2001:db8::1"]), t, rnd.choice(["GET", "POST", ""]),
                      rnd.choice(["/", "/a?q=1", '/"x', "/\\y", "/\x01"]), rnd.choice(["1.1", "1.0"]),
                      rnd.choice([200, 404, 502]), rnd.choice([0, 512, 70000]),
                      rnd.choice(["", "http://shop/", 'r"']), rnd.choice(["", "ua", "ü\x7f"]),
                      rnd.choice([0.0, 0.001, 0.255, 0.256, 3.14159, 1000.0]),
                      rnd.choice(["", "127.0.0.1:8080"]), rnd.choice([-1.0, 0.0, 0.0004, 2.5]),
                      rnd.choice([0, 200, 503]), rnd.choice(["ok", "", "timeout"]),
                      rnd.choice(["allow", "", "shadow-limit"]),
                      rnd.choice(["unknown", "", "verified"]), rnd.random() < 0.5,
                      rnd.random() < 0.5)
        prev = fields
        want.append(_line(*fields))
        log.write(*fields)
        if rnd.random() < 0.05:  # the answered path updates the stamp too
            log.flush()
            log.write_answered("10.0.0.9", t + 1.0, "GET / HTTP/1.1", 429, 10, "", "", 0.0,
                               log.answered_tail("shield", "limit", "unknown", False, False))
            want.append(log._buf[-1])
    log.close()
    got = (tmp_path / "a.log").read_text(encoding="utf-8", errors="backslashreplace")
    assert got.splitlines(keepends=True) == [
        w.encode("utf-8", "backslashreplace").decode("utf-8", "backslashreplace") for w in want]
