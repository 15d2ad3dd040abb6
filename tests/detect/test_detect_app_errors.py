"""A shop whose application fails answers its own 500s: from a plain log, that is a
backend failure like a gateway's 502/503/504 (an app whose database is down answers
every page 500), while the odd 500 of one broken page is not. And a backend that
answers the shield with 502s itself (the shop's own nginx in front of a dead
PHP-FPM) fails as surely as one that refuses the connection: in the shield's own
log, outcome ``ok`` with a 5xx is a backend failure."""

from __future__ import annotations

import random
import time
from pathlib import Path

from shieldwall.detect.analyze import analyze

START = 1_780_000_000
PATHS = ["/", "/c/boots", "/c/jackets", "/search?q=wool"] + [f"/p/{i}" for i in range(60)]
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def _log(path: Path, failing: float, seconds: int = 1800, down: tuple[int, int] = (1200, 1380),
         error: int = 500, shield: bool = False) -> Path:
    """Half an hour of a steady shop (~15 page requests a second from a few hundred
    addresses); between ``down`` seconds a ``failing`` share of its requests get
    ``error``. ``shield``: as the shield's access log writes them (the backend
    answered: outcome ok)."""
    rnd = random.Random(3)
    clients = [f"81.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}" for _ in range(400)]
    lines = []
    for sec in range(seconds):
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(START + sec))
        for _ in range(rnd.randint(10, 20)):
            status = error if down[0] <= sec < down[1] and rnd.random() < failing else 200
            tail = (f" rt=0.012 up=127.0.0.1:8080 ut=0.011 us={status} o=ok d=allow c=unknown s=0 v=0"
                    if shield else "")
            lines.append(f'{rnd.choice(clients)} - - [{stamp}] "GET {rnd.choice(PATHS)} HTTP/1.1" {status} '
                         f'{120 if status >= 500 else rnd.randint(5000, 40000)} "-" "{UA}"{tail}\n')
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_an_app_answering_500_to_everyone_is_a_backend_failure(tmp_path: Path) -> None:
    report = analyze([_log(tmp_path / "down.log", 1.0)], "auto", None)
    verdicts = [(i.verdict, i.start - START, i.end - START) for i in report.incidents]
    assert [v for v, _, _ in verdicts] == ["backend_failure"], verdicts
    _, start, end = verdicts[0]
    assert 1200 <= start <= 1205 and end >= 1370, verdicts


def test_one_broken_page_s_500s_are_not(tmp_path: Path) -> None:
    report = analyze([_log(tmp_path / "odd.log", 0.05)], "auto", None)
    assert report.incidents == []


def test_a_backend_answering_502_itself_is_a_backend_failure_in_the_shields_log(tmp_path: Path) -> None:
    report = analyze([_log(tmp_path / "shield.log", 1.0, error=502, shield=True)], "auto", None)
    verdicts = [(i.verdict, i.start - START) for i in report.incidents]
    assert [v for v, _ in verdicts] == ["backend_failure"], verdicts
    assert 1200 <= verdicts[0][1] <= 1205, verdicts
