"""Log readers: nginx/Apache ``combined`` and ``common``, shieldwall's access log
(combined + ``key=value`` fields, docs/ACCESS_LOG.md) and JSON lines named like
:class:`~shieldwall.detect.events.RequestEvent`; plain or gzipped.

The fast path splits a combined line on ``"`` (seven pieces for a well-formed
line) instead of running one big regex, and caches the parsed timestamp
(consecutive lines share their second). A line the fast path cannot read goes
to a strict regex; a line neither can read is counted and a few are kept as
samples, never fatal.

A parsed line is a tuple of the fields :meth:`WindowBuilder.add` takes, in its
order, so the analyzer never builds an object per line.
"""

from __future__ import annotations

import calendar
import gzip
import heapq
import itertools
import json
import marshal
import pickle
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from shieldwall.detect._feed import ColumnFeed as ColumnFeed

if TYPE_CHECKING:
    from shieldwall.detect.columns import BuilderArgs, Columns, Counts

T = TypeVar("T")

Parsed = tuple[float, str, str, str, int, int, float, str, bool, bool, str, float]
"""(t_end, client, path, query, status, bytes, rt, ua, session, verified, outcome, ut)."""

FORMATS = ("auto", "combined", "json")

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_LINE_RE = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?(?P<rest>.*)$'
)


class _TimeCache:
    """``17/May/2015:10:05:03 +0000`` -> Unix seconds, memoised (bounded)."""

    def __init__(self) -> None:
        self._d: dict[str, float] = {}
        self.get = self._d.get

    def __call__(self, s: str) -> float:
        v = self._d.get(s)
        if v is not None:
            return v
        # dd/Mon/yyyy:HH:MM:SS +zzzz
        if len(s) != 26 or s[2] != "/" or s[6] != "/" or s[11] != ":" or s[20] != " ":
            raise ValueError(f"bad time {s!r}")
        day, mon, year = int(s[0:2]), _MONTHS[s[3:6]], int(s[7:11])
        hh, mm, ss = int(s[12:14]), int(s[15:17]), int(s[18:20])
        tz = s[21:26]
        off = (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60) * (-1 if tz[0] == "-" else 1)
        v = float(calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0)) - off)
        if len(self._d) > 100_000:
            self._d.clear()  # same dict object: `get` stays bound to it
        self._d[s] = v
        return v


@dataclass
class ReadStats:
    lines: int = 0
    unparsed: int = 0
    samples: list[str] = field(default_factory=list)
    """Up to ``max_samples`` unparsed lines, with file and line number."""
    max_samples: int = 5
    fast_lines: int = 0
    """Lines read by the compiled chunk parser (the rest went line by line through Python)."""

    def bad(self, where: str, line: str) -> None:
        self.unparsed += 1
        if len(self.samples) < self.max_samples:
            self.samples.append(f"{where}: {line[:200]!r}")


def _split_target(request: str) -> tuple[str, str] | None:
    parts = request.split(" ")
    if len(parts) == 3 or len(parts) == 2:
        target = parts[1]
    else:
        return None
    path, _, query = target.partition("?")
    return path, query


def _kv(toks: list[str]) -> tuple[float, bool, bool, str, float]:
    """The ACCESS_LOG.md tail: (rt, session, verified, outcome, ut); defaults when absent."""
    rt, session, verified, outcome, ut = 0.0, False, False, "-", -1.0
    for tok in toks:
        k, eq, v = tok.partition("=")
        if not eq:
            continue
        if k == "rt":
            rt = float(v)
        elif k == "o":
            outcome = v
        elif k == "ut":
            if v != "-":
                ut = float(v)
        elif k == "s":
            session = v == "1"
        elif k == "v":
            verified = v == "1"
    return rt, session, verified, outcome, ut


class LineParser:
    """Parses one line of a given format into a :data:`Parsed` tuple (or None)."""

    def __init__(self, fmt: str = "auto") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self._time = _TimeCache()
        self._times = self._time

    def parse(self, line: str) -> Parsed | None:
        if self.fmt == "json" or (self.fmt == "auto" and line[:1] == "{"):
            return self.parse_json(line)
        return self.parse_combined(line)

    def parse_combined(self, line: str) -> Parsed | None:
        """The fast path: split on quotes, fixed offsets, the key=value tail by position."""
        parts = line.split('"')
        np = len(parts)
        if np == 7 or np == 3:
            try:
                head = parts[0]
                # "client - user [dd/Mon/yyyy:HH:MM:SS +zzzz] "
                ts = head[-28:-2]
                t = self._times.get(ts)
                if t is None:
                    t = self._time(head[head.index("[") + 1 : head.index("]")])
                client = head[: head.index(" ")]
                req = parts[1]
                a = req.find(" ")
                b = req.rfind(" ")
                target = req[a + 1 : b] if b > a else req[a + 1 :]
                q = target.find("?")
                if a < 0:  # no request line ("-": the client never sent one)
                    path, query = "", ""
                elif q < 0:
                    path, query = target, ""
                else:
                    path, query = target[:q], target[q + 1 :]
                sb = parts[2].split()
                status = int(sb[0])
                b2 = sb[1]
                nbytes = 0 if b2 == "-" else int(b2)
                if np == 7:
                    ua = parts[5]
                    toks = parts[6].split()
                    if toks:
                        if (len(toks) == 9 and toks[0][:3] == "rt=" and toks[2][:3] == "ut="
                                and toks[4][:2] == "o=" and toks[8][:2] == "v="):
                            rt = float(toks[0][3:])
                            ut_s = toks[2][3:]
                            return (t + rt, client, path, query, status, nbytes, rt, ua,
                                    toks[7] == "s=1", toks[8] == "v=1", toks[4][2:],
                                    -1.0 if ut_s == "-" else float(ut_s))
                        rt, session, verified, outcome, ut = _kv(toks)
                        return (t + rt, client, path, query, status, nbytes, rt, ua,
                                session, verified, outcome, ut)
                else:
                    ua = ""
                return (t, client, path, query, status, nbytes, 0.0, ua, False, False, "-", -1.0)
            except (ValueError, IndexError, KeyError):
                pass
        return self._parse_slow(line)

    def _parse_slow(self, line: str) -> Parsed | None:
        """Lines with escaped quotes or odd request lines: the strict regex."""
        m = _LINE_RE.match(line.rstrip("\r\n"))
        if m is None:
            return None
        try:
            t = self._time(m["time"])
            target = _split_target(m["request"].replace('\\"', '"'))
            path, query = target if target is not None else ("", "")
            status = int(m["status"])
            nbytes = 0 if m["bytes"] == "-" else int(m["bytes"])
            ua = (m["ua"] or "").replace('\\"', '"')
            rt, session, verified, outcome, ut = _kv((m["rest"] or "").split())
        except (ValueError, KeyError):
            return None
        return (t + rt, m["client"], path, query, status, nbytes, rt, ua, session, verified, outcome, ut)

    def parse_json(self, line: str) -> Parsed | None:
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                return None
            tv = d["time"]
            if isinstance(tv, str):
                t = datetime.fromisoformat(tv.replace("Z", "+00:00")).timestamp()
            else:
                t = float(tv)
            rt = float(d.get("request_time", 0.0))
            path = str(d.get("path", ""))
            query = str(d.get("query", ""))
            if not query and "?" in path:
                path, _, query = path.partition("?")
            ut = d.get("upstream_time", -1.0)
            return (t + rt, str(d["client"]), path, query, int(d["status"]),
                    int(d.get("bytes_sent", 0) or 0), rt, str(d.get("user_agent", "")),
                    bool(d.get("session", False)), bool(d.get("verified", False)),
                    str(d.get("outcome", "-") or "-"), float(ut if ut is not None else -1.0))
        except (ValueError, KeyError, TypeError):
            return None


def open_log(path: Path) -> IO[str]:
    """Open a log as text (gzip recognised by its magic bytes, not its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", buffering=1 << 20)


def read_logs(paths: Iterable[Path], fmt: str, stats: ReadStats) -> Iterator[Parsed]:
    """Every parsed line of every file; bad lines counted in ``stats``.

    Several files (rotated logs given in any order, or the logs of several
    shield nodes) are merged by time, each assumed roughly in time order."""
    paths = list(paths)
    if len(paths) == 1:
        for batch in read_batches(paths[0], fmt, stats):
            yield from batch
        return
    streams = [(rec for batch in read_batches(p, fmt, stats) for rec in batch) for p in paths]
    yield from heapq.merge(*streams, key=lambda r: r[0])


def read_batches(p: Path, fmt: str, stats: ReadStats, batch_bytes: int = 1 << 20) -> Iterator[list[Parsed]]:
    """Parsed lines of one file in batches of about ``batch_bytes`` (the fast path: one
    generator step and one format decision per batch, not per line).

    ``combined`` and ``auto`` logs go through the compiled chunk parser
    (:mod:`~shieldwall.detect.arrow_reader`) in chunks of ``CHUNK_BYTES``; a chunk it
    declines (JSON, bad or odd lines) is parsed line by line here, with the same result."""
    if fmt == "json":
        yield from _read_text_batches(p, fmt, stats, batch_bytes)
        return
    from shieldwall.detect.arrow_reader import ArrowCombined

    yield from _read_chunks(p, fmt, stats, ArrowCombined().parse)  # type: ignore[misc]


Counting = tuple[float, "BuilderArgs"]
"""(the window builder's lateness, its settings): count the columns per second in the
reader, for a builder drained after every part (what :func:`analyze` does)."""


def read_column_batches(p: Path, fmt: str, stats: ReadStats,
                        counting: Counting | None = None) -> Iterator[list[Parsed] | Columns | Counts]:
    """The lines of :func:`read_batches`, in the same order, with what the compiled
    parser read as :class:`~shieldwall.detect.columns.Columns` (for
    :func:`~shieldwall.detect.columns.add_columns`), or with ``counting`` as
    :class:`~shieldwall.detect.columns.Counts` (for
    :func:`~shieldwall.detect.columns.apply_counts`), and the rest as rows; parsed (and
    counted) in a second process (:func:`parse_apart`)."""
    if fmt == "json":
        yield from _read_text_batches(p, fmt, stats, 1 << 20)
        return
    yield from parse_apart(p, fmt, stats, counting)


def _column_parts(p: Path, fmt: str, stats: ReadStats,
                  counting: Counting | None = None) -> Iterator[list[Parsed] | Columns | Counts]:
    from shieldwall.detect.arrow_reader import ArrowCombined

    arrow = ArrowCombined()
    yield from _counted(_read_chunks(p, fmt, stats, arrow.columns, arrow.columns_group), counting)


def _counted(parts: Iterator[list[Parsed] | Columns],
             counting: Counting | None) -> Iterator[list[Parsed] | Columns | Counts]:
    """Parsed parts, each counted per second with ``counting`` (rows stay rows)."""
    if counting is None:
        yield from parts
        return
    from shieldwall.detect.columns import Clock, count_columns

    lateness, args = counting
    clock = Clock(lateness)
    for part in parts:
        if isinstance(part, list):
            clock.rows([r[0] for r in part])
            yield part
        else:
            counted = count_columns(part, clock, args)
            if counted is not None:
                yield counted
        clock.drain()


PARSE_AHEAD = 32
"""Chunks the parsing process parses before the consumer says how to count them (while
the consumer imports the detector): a few tens of MB at most."""

SEND_AHEAD = 64
"""Parts (pickled, a few hundred kB each) the parsing process holds for the consumer
beyond what the pipe holds: the parser never waits for a slow window or two."""


def parse_apart(p: Path, fmt: str, stats: ReadStats,
                counting: Counting | None = None) -> Iterator[list[Parsed] | Columns | Counts]:
    """:func:`_column_parts` run in a child process (:class:`ColumnFeed`), its parts
    handed back over a pipe, in order: the stats it counted are copied into ``stats``
    once the last part has been taken, and an error in the child is raised here."""
    yield from ColumnFeed(p, fmt).parts(stats, counting)


def _parse_child(p: Path, fmt: str, conn: Any, args: Any, args_parent: Any) -> None:
    """The parsing process: its imports, then (once the consumer says how to count)
    every part of the file, then its stats (or the error)."""
    import gc

    args_parent.close()  # the fork's copy of the parent's end: else no end of file here
    gc.disable()  # it makes only short-lived, acyclic objects
    stats = ReadStats()
    out = _Sender(conn)
    try:
        from shieldwall.detect.arrow_reader import ArrowCombined

        # parse ahead while the consumer is still starting up (its imports): counting
        # needs its settings, parsing does not
        arrow = ArrowCombined()
        parsed = _read_chunks(p, fmt, stats, arrow.columns, arrow.columns_group)
        ahead: list[list[Parsed] | Columns] = []
        while len(ahead) < PARSE_AHEAD and not args.poll():
            part = next(parsed, None)
            if part is None:
                break
            ahead.append(part)
        try:
            counting = args.recv()
        except EOFError:
            return  # the consumer never came
        finally:
            args.close()
        for counted in _counted(itertools.chain(ahead, parsed), counting):
            out.send_part(counted)
        out.send(("end", stats))
    except BrokenPipeError:
        pass  # the consumer stopped early
    except BaseException as exc:
        try:
            out.send(("error", exc))
        except BrokenPipeError:
            pass
        except Exception:  # an exception that does not pickle
            out.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        out.close()


_MARSHALLED = b"M"
"""The first byte of a part sent as a marshal (a pickle starts with its protocol's 0x80)."""


def _loads(buf: bytes) -> tuple[str, Any]:
    """A message from the parsing process: (tag, item)."""
    if buf[:1] == _MARSHALLED:
        from shieldwall.detect.columns import Counts

        cnt = Counts.__new__(Counts)
        cnt.__setstate__(marshal.loads(memoryview(buf)[1:]))
        return "part", cnt
    msg: tuple[str, Any] = pickle.loads(buf)
    return msg


class _Sender:
    """The parsing process's end of the pipe, written by a thread of its own.

    A pipe holds 64 kB (1 MB at most without privileges): far less than one part's
    pickle. Written from the parsing loop, every send would wait until the consumer
    came back for the part, so parser and consumer took turns (measured: the consumer
    waited 0.70 s and the parser 0.6 s of a 2.1 s run, both cores half idle). Here the
    parsing loop pickles a part and queues the bytes; the thread writes them (the GIL
    is released while a write waits), ``SEND_AHEAD`` parts deep."""

    def __init__(self, conn: Any, depth: int = SEND_AHEAD) -> None:
        from multiprocessing.reduction import ForkingPickler

        self._conn = conn
        self._dumps = ForkingPickler.dumps
        self._q: queue.Queue[memoryview | None] = queue.Queue(maxsize=depth)
        self._broken = False
        self._th = threading.Thread(target=self._run, name="shieldwall-send", daemon=True)
        self._th.start()

    def _run(self) -> None:
        q, conn = self._q, self._conn
        while True:
            buf = q.get()
            if buf is None:
                return
            if self._broken:
                continue  # drain: the parsing loop is told at its next send
            try:
                conn.send_bytes(buf)
            except OSError:  # BrokenPipeError: the consumer stopped early
                self._broken = True

    def send_part(self, part: list[Parsed] | Columns | Counts) -> None:
        """Queue a part: counts as a marshal (a quarter quicker to write and to read than
        their pickle: lists of strings and numbers, no classes), the rest pickled."""
        from shieldwall.detect.columns import Counts

        if self._broken:
            raise BrokenPipeError("the consumer stopped")
        if isinstance(part, Counts):
            try:
                self._q.put(memoryview(_MARSHALLED + marshal.dumps(part.__getstate__())))
                return
            except ValueError:
                pass  # a value marshal does not take (none is made today): pickled
        self._q.put(self._dumps(("part", part)))

    def send(self, obj: Any) -> None:
        """Queue ``obj`` (pickled here); BrokenPipeError once the consumer has gone."""
        if self._broken:
            raise BrokenPipeError("the consumer stopped")
        self._q.put(self._dumps(obj))

    def close(self) -> None:
        """Write what is queued (unless the consumer has gone), then close the pipe."""
        self._q.put(None)
        self._th.join()
        self._conn.close()


def prefetch(parts: Iterator[T], depth: int = 4) -> Iterator[T]:
    """``parts`` produced on a second thread, ``depth`` ahead of the consumer.

    Reading and parsing a chunk is mostly Arrow's C++ (the CSV tokenizer and the
    compute kernels release the GIL), so on a second core it overlaps with the
    window counting and the detector on the first. One producer, in order: the
    items, and the stats it updates, are exactly what the plain generator gives
    (the stats are complete once the last item has been taken). An error in the
    producer is raised here, at the item where it happened."""
    q: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in parts:
                while not stop.is_set():
                    try:
                        q.put((0, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((1, None))
        except BaseException as exc:  # handed to the consumer
            q.put((2, exc))

    th = threading.Thread(target=produce, name="shieldwall-read", daemon=True)
    th.start()
    try:
        while True:
            tag, item = q.get()
            if tag == 0:
                yield item
            elif tag == 1:
                return
            else:
                raise item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)
        close = getattr(parts, "close", None)
        if close is not None:
            close()


GroupParse = Callable[[list[bytes], list[int]], "list[Columns] | None"]
"""Chunks (and their newline counts) parsed in one call into one part each, or None."""

GROUP_CHUNKS = 4
"""Chunks parsed together by a :data:`GroupParse` once the first ones are out (1, 2, then
this many): Arrow's cost per call, and each distinct string made into a Python string,
paid once per group. The first chunk goes alone, so that the consumer's first part is no
later than before."""


def _file_chunks(fh: BinaryIO) -> Iterator[bytes]:
    """The file in chunks of about ``CHUNK_BYTES``, each cut after its last newline."""
    from shieldwall.detect.arrow_reader import CHUNK_BYTES

    rest = b""
    while True:
        data = fh.read(CHUNK_BYTES)
        if not data:
            chunk, rest = rest, b""
        else:
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            chunk, rest = data[:cut], data[cut:]
        if not chunk:
            return
        yield chunk


def _read_chunks(p: Path, fmt: str, stats: ReadStats,
                 fast_parse: Callable[[bytes], list[Parsed] | Columns | None],
                 group_parse: GroupParse | None = None,
                 ) -> Iterator[list[Parsed] | Columns]:
    """The parts of ``p``: a chunk's lines each, parsed by ``fast_parse`` or, where it
    declines, in Python (around the odd lines). With ``group_parse`` consecutive chunks
    are parsed together (:data:`GROUP_CHUNKS`), still one part per chunk, the same ones;
    a group it declines is read chunk by chunk as without it."""
    from shieldwall.detect.arrow_reader import count_byte, decode_lines, split_odd_lines

    parser = LineParser(fmt)
    lineno = 0
    with open_binary(p) as fh:
        chunks = _file_chunks(fh)
        size = 1
        while True:
            group = list(itertools.islice(chunks, size))
            if not group:
                return
            if group_parse is not None:
                size = min(GROUP_CHUNKS, 2 * size)
                newlines = [count_byte(chunk, 10) for chunk in group]
                cols = group_parse(group, newlines) if len(group) > 1 else None
                if cols is not None:
                    for chunk, nl, part in zip(group, newlines, cols, strict=True):
                        stats.lines += len(part)
                        stats.fast_lines += len(part)
                        lineno += nl + (chunk[-1:] != b"\n")
                        yield part
                    continue
            for chunk in group:
                rows = fast_parse(chunk)
                if rows is not None:
                    stats.lines += len(rows)
                    stats.fast_lines += len(rows)
                    lineno += _count_lines(chunk)
                    yield rows
                    continue
                pieces = split_odd_lines(chunk) or [(False, chunk)]
                for worth_trying, piece in pieces:
                    rows = fast_parse(piece) if worth_trying else None
                    if rows is not None:
                        stats.lines += len(rows)
                        stats.fast_lines += len(rows)
                        lineno += _count_lines(piece)
                    else:
                        lines = decode_lines(piece)
                        rows = _parse_lines(parser, fmt, lines, p, lineno, stats)
                        lineno += len(lines)
                    yield rows


def _count_lines(chunk: bytes) -> int:
    from shieldwall.detect.arrow_reader import count_byte

    return count_byte(chunk, 10) + (chunk[-1:] != b"\n")


def open_binary(path: Path) -> BinaryIO:
    """Open a log for raw reading (gzip recognised by its magic bytes, not its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def _parse_lines(parser: LineParser, fmt: str, lines: list[str], p: Path, lineno: int,
                 stats: ReadStats) -> list[Parsed]:
    """One batch of text lines, parsed in Python; bad lines counted and sampled."""
    pc, pj = parser.parse_combined, parser.parse_json
    if fmt == "combined":
        out = [pc(line) for line in lines]
    elif fmt == "json":
        out = [pj(line) for line in lines]
    else:
        out = [pj(line) if line[:1] == "{" else pc(line) for line in lines]
    stats.lines += len(lines)
    if None not in out:
        return out  # type: ignore[return-value]
    good: list[Parsed] = []
    for i, (line, rec) in enumerate(zip(lines, out, strict=True), lineno + 1):
        if rec is not None:
            good.append(rec)
        elif line.strip():
            stats.bad(f"{p}:{i}", line)
        else:
            stats.lines -= 1
    return good


def _read_text_batches(p: Path, fmt: str, stats: ReadStats, batch_bytes: int) -> Iterator[list[Parsed]]:
    """The pure-Python reader: text lines in batches of about ``batch_bytes``."""
    parser = LineParser(fmt)
    lineno = 0
    with open_log(p) as fh:
        while True:
            lines = fh.readlines(batch_bytes)
            if not lines:
                return
            yield _parse_lines(parser, fmt, lines, p, lineno, stats)
            lineno += len(lines)
