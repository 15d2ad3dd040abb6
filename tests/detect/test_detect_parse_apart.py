"""The parsing process (``readers.parse_apart``): the parts it hands back over its pipe are
the parts the reader makes in-process, in order, with the same stats (bad lines counted
and sampled); an error in the child is raised in the parent; a consumer that stops early
leaves no child behind."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shieldwall.detect import _run, readers
from shieldwall.detect.columns import Columns
from shieldwall.detect.readers import ReadStats, _column_parts, parse_apart
from shieldwall.detect.synth import generate, make_scenario, write_log

DATA = Path(__file__).parent.parent / "data"


def _same(a: object, b: object) -> bool:
    if isinstance(a, Columns) and isinstance(b, Columns):
        for k in Columns.__slots__:
            x, y = getattr(a, k), getattr(b, k)
            if isinstance(x, np.ndarray):
                if not (x.dtype == y.dtype and np.array_equal(x, y)):
                    return False
            elif x != y:
                return False
        return True
    return a == b


def _odd_log(tmp_path: Path) -> Path:
    """Generated traffic with bad lines in it (they go through the Python parser)."""
    src = tmp_path / "gen.log"
    write_log(generate(make_scenario(3, ["flood"], family="train")), src)
    lines = src.read_text().splitlines(keepends=True)
    for i in range(50, len(lines), 997):
        lines[i] = "not a log line\n"
    out = tmp_path / "odd.log"
    out.write_text("".join(lines))
    return out


@pytest.mark.parametrize("name", ["real", "odd"])
def test_parts_and_stats_are_the_readers_own(tmp_path: Path, name: str) -> None:
    log = DATA / "real-apache-2015.log" if name == "real" else _odd_log(tmp_path)
    here, there = ReadStats(), ReadStats()
    want = list(_column_parts(log, "auto", here))
    got = list(parse_apart(log, "auto", there))
    assert len(got) == len(want) > 0
    assert all(_same(a, b) for a, b in zip(got, want, strict=True))
    assert (there.lines, there.unparsed, there.fast_lines, there.samples) == \
        (here.lines, here.unparsed, here.fast_lines, here.samples)
    if name == "odd":
        assert here.unparsed > 0 and here.samples


def test_an_error_in_the_child_is_raised_here(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(parse_apart(tmp_path / "missing.log", "auto", ReadStats()))


def test_stopping_early_leaves_no_child() -> None:
    parts = parse_apart(DATA / "real-apache-2015.log", "auto", ReadStats())
    next(parts)
    parts.close()
    assert not [p for p in mp.active_children() if p.name == "shieldwall-parse"]


def test_without_fork_the_parts_come_from_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork(method: str) -> None:
        raise ValueError(method)

    monkeypatch.setattr(mp, "get_context", no_fork)
    stats = ReadStats()
    got = list(readers.parse_apart(DATA / "real-apache-2015.log", "auto", stats))
    assert got and stats.lines == 10_000


def test_counted_in_the_child_or_on_a_thread_the_same_windows(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """The chunks counted per second in the parsing process (``counting``), or on a thread
    when fork is unavailable: the same windows, so the same report."""
    from shieldwall.detect.analyze import analyze

    log = _odd_log(tmp_path)
    forked = analyze([log]).as_json()

    def no_fork(method: str) -> None:
        raise ValueError(method)

    monkeypatch.setattr(mp, "get_context", no_fork)
    threaded = analyze([log]).as_json()
    rows = analyze([log], engine="rows").as_json()
    assert forked == threaded == rows
    assert forked["unparsed"] > 0


def test_a_feed_started_ahead_and_never_used_is_stopped() -> None:
    feed = readers.ColumnFeed(DATA / "real-apache-2015.log", "auto")
    feed.close()
    assert not [p for p in mp.active_children() if p.name == "shieldwall-parse"]


def test_a_feed_started_ahead_gives_the_same_report() -> None:
    from shieldwall.detect.analyze import analyze

    log = DATA / "real-apache-2015.log"
    feed = readers.ColumnFeed(log, "auto")
    try:
        ahead = analyze([log], feed=feed).as_json()
    finally:
        feed.close()
    assert ahead == analyze([log]).as_json()
    other = readers.ColumnFeed(log, "auto")
    try:
        with pytest.raises(ValueError, match="not for"):
            analyze([log], "combined", feed=other)
    finally:
        other.close()


def test_the_parser_does_not_wait_for_the_consumer(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsing process queues its parts (``SEND_AHEAD`` deep) and a thread of its own
    writes them: a consumer busy with one part never holds up the parsing of the next
    ones (through the pipe alone, which holds 64 kB, the two took turns)."""
    log = tmp_path / "gen.log"
    write_log(generate(make_scenario(3, ["flood"], family="train")), log)
    want = list(_column_parts(log, "auto", ReadStats()))
    assert 1 < len(want) < readers.SEND_AHEAD
    done = tmp_path / "parsed"
    counted = readers._counted

    def marked(parts: Any, counting: Any) -> Any:  # runs in the (forked) child
        yield from counted(parts, counting)
        done.touch()

    monkeypatch.setattr(readers, "_counted", marked)
    feed = readers.ColumnFeed(log, "auto")
    parts = feed.parts(ReadStats())
    got = [next(parts)]
    for _ in range(300):  # while the consumer holds the first part, the rest are parsed
        if done.exists():
            break
        time.sleep(0.1)
    assert done.exists()
    got.extend(parts)
    assert len(got) == len(want)
    assert all(_same(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize(("args", "want"), [
    (["LOG", "--json", "out.json"], "auto"),
    (["--format=combined", "LOG"], "combined"),
    (["--config", "x.toml", "--format", "auto", "LOG", "--html", "r.html"], "auto"),
    (["--", "LOG"], "auto"),
    (["--format", "json", "LOG"], None),
    (["LOG", "LOG"], None),
    (["LOG", "--help"], None),
    (["LOG", "--jsn", "out.json"], None),
    (["missing.log"], None),
])
def test_started_early_for_the_plain_command_line_only(args: list[str], want: str | None) -> None:
    """``shieldwall analyze``'s parsing process starts before the command's imports when
    its one reader of the command line (``_run.plain_args``) finds a plain line with one
    log in a columns format; any other line starts none (Typer's, or the rows' turn)."""
    log = DATA / "real-apache-2015.log"
    p = _run.plain_args([str(log) if a == "LOG" else a for a in args])
    feed = _run.feed_for(p.logs, p.fmt) if p is not None else None
    try:
        if want is None:
            assert feed is None
            return
        assert feed is not None and (feed.path, feed.fmt) == (log, want)
    finally:
        if feed is not None:
            feed.close()
    assert not [c for c in mp.active_children() if c.name == "shieldwall-parse"]


def test_a_feed_started_early_is_taken_by_its_command() -> None:
    log = DATA / "real-apache-2015.log"
    p = _run.plain_args([str(log)])
    assert p is not None
    feed = _run.feed_for(p.logs, p.fmt)
    assert feed is not None
    try:
        stats = ReadStats()
        assert list(feed.parts(stats)) and stats.lines == 10_000
    finally:
        feed.close()


@pytest.mark.parametrize("name", ["real", "odd", "mixed"])
def test_chunks_parsed_in_groups_are_the_parts_read_one_by_one(tmp_path: Path, name: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks parsed by Arrow at once (``GROUP_CHUNKS``) give each chunk's part
    exactly as parsing it alone did, counted the same (the window builder is drained after
    each): a group with an odd line, a blank line or a byte-order mark in it is read chunk
    by chunk."""
    from shieldwall.detect import arrow_reader
    from shieldwall.detect.columns import BuilderArgs
    from shieldwall.detect.windows import WindowBuilder

    if name == "real":
        log = DATA / "real-apache-2015.log"
    elif name == "odd":
        log = _odd_log(tmp_path)
    else:
        gen = tmp_path / "gen.log"
        write_log(generate(make_scenario(3, ["flood"], family="train")), gen)
        src = gen.read_bytes().splitlines(keepends=True)
        for i, odd in zip(range(3000, len(src), 6000), itertools.cycle(
                (b"not a log line\n", b"\n", b"\xef\xbb\xbf" + src[0]))):
            src[i] = odd
        log = tmp_path / "mixed.log"
        log.write_bytes(b"".join(src))
    # small chunks: groups of four, some declined, across the whole log
    monkeypatch.setattr(arrow_reader, "CHUNK_BYTES", 65_536)
    b = WindowBuilder(lateness=30.0)
    counting = (b.lateness, BuilderArgs(b))

    def parts(group: int) -> tuple[list[Any], tuple[Any, ...]]:
        monkeypatch.setattr(readers, "GROUP_CHUNKS", group)
        st = ReadStats()
        out = [p if isinstance(p, list) else p.__getstate__()
               for p in _column_parts(log, "auto", st, counting)]
        return out, (st.lines, st.unparsed, st.fast_lines, st.samples)

    one, grouped = parts(1), parts(4)
    assert len(one[0]) > 4
    assert grouped == one
