"""The compiled fast path for ``combined`` logs: a whole chunk of lines parsed into
columns by Arrow's CSV reader (C++), converted with vectorised kernels, and handed
on as the same :data:`~shieldwall.detect.readers.Parsed` rows the Python parser makes.

A combined line is a space-separated record with three quoted fields; a
shieldwall access line adds nine ``key=value`` fields. Arrow splits a 1 MB
chunk in one call; time stamps are parsed once per distinct string (a chunk
holds a few hundred), request targets split with one regular expression over
the column. The rows that come out are equal, field for field, to what
:meth:`LineParser.parse_combined` makes of each line (tests/detect check it),
so the window builder, and with it the live/offline identity, is untouched.

The chunk is accepted only when every line has the shape the fast path knows
(same column count, exactly six quotes a line, known ``key=value`` layout,
parseable time stamps, numbers); anything else -- a bad line, an escaped quote,
JSON, a ``common`` log, invalid UTF-8 -- sends the whole chunk to the Python
parser, which counts and samples bad lines as before. Rare odd lines cost
speed for their chunk, never correctness.
"""

from __future__ import annotations

import io
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]

from shieldwall.detect import _kernels as pc
from shieldwall.detect.columns import Columns
from shieldwall.detect.readers import Parsed, _TimeCache

CHUNK_BYTES = 1 << 20

_ACCESS_KEYS = {10: "rt=", 12: "ut=", 14: "o=", 17: "s=", 18: "v="}
"""Column -> prefix of the access-log tail the fast path reads (docs/ACCESS_LOG.md)."""

_TARGET2 = r"(?s)^[^ ]* (?P<t>.*) [^ ]*$"
"""Request line with two or more spaces: the target between the first and the last."""
_TARGET1 = r"(?s)^[^ ]* (?P<t>[^ ]*)$"
"""Request line with one space: everything after it."""

_ODD_BYTES = (b"\r", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
"""Bytes Python treats as line ends (universal newlines) or white space (``str.split()``)
but Arrow does not: a chunk holding any is left to the Python parser."""

_READ = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False, block_size=4 << 20)
"""(A block holds a group of chunks: readers.GROUP_CHUNKS.)"""

_USED = (0, 3, 4, 5, 6, 7, 9, 10, 12, 14, 17, 18)
"""The columns the fields are read from: address, time stamp (two), request line, status,
bytes, user agent, and the access-log tail's rt, ut, o, s, v (docs/ACCESS_LOG.md)."""


def _convert(columns: list[int]) -> Any:
    # Column 19 too, so that a line of more than 19 fields shows (as a column that is
    # there); a column the lines do not have comes as nulls (strings are never null)
    return pcsv.ConvertOptions(
        column_types={f"f{i}": pa.string() for i in range(20)},
        strings_can_be_null=False, quoted_strings_can_be_null=False,
        include_columns=[f"f{i}" for i in (*columns, 19)], include_missing_columns=True)


_CONVERT_USED = _convert(list(_USED))
"""Only the columns the fields are made from: the ident, user and referer fields and
the tail's unused values are split but never made into strings (two fifths of the
CSV reader's time on a combined log went to columns nothing reads)."""
_CONVERT_ALL = _convert(list(range(19)))
"""Every column: a chunk with non-ASCII bytes has each access-log tail value checked."""


_S = {v: pa.scalar(v, pa.string()) for v in (" ", "", "?", "-", "0", "-1", "s=1", "v=1")}
"""Arrow scalars for the literals the kernels take: a Python literal is converted on
every call, and the conversion looks for ``dateutil`` (an import that fails, searched
for along the whole path every time: a fifth of the reader's time went there)."""
_ZERO, _ONE, _THREE = (pa.scalar(i, pa.int32()) for i in (0, 1, 3))


class _Reject(Exception):
    """This chunk is not for the fast path."""


class ArrowCombined:
    """Parses chunks of ``combined`` / access-log bytes into rows, or says it cannot."""

    def __init__(self) -> None:
        self._time = _TimeCache()
        self._bad = 0

        def invalid(row: Any) -> str:
            self._bad += 1
            return "skip"

        self._parse = pcsv.ParseOptions(
            delimiter=" ", quote_char='"', double_quote=False, escape_char=False,
            newlines_in_values=False, ignore_empty_lines=True, invalid_row_handler=invalid,
        )

    def parse(self, chunk: bytes) -> list[Parsed] | None:
        """Rows for every line of ``chunk`` (whole lines), or None: use the Python parser."""
        try:
            return self._rows(self._fields(chunk))
        except (_Reject, pa.ArrowException, ValueError, KeyError, IndexError):
            return None

    def columns(self, chunk: bytes) -> Columns | None:
        """The same lines as :meth:`parse`, as columns (strings dictionary-encoded: each
        distinct value made into a Python string once), or None: use the Python parser."""
        try:
            return self._columns(self._fields(chunk))
        except (_Reject, pa.ArrowException, ValueError, KeyError, IndexError):
            return None

    def columns_group(self, chunks: list[bytes], lines: list[int]) -> list[Columns] | None:
        """What :meth:`columns` makes of each of ``chunks`` (consecutive chunks of whole
        lines, ``lines`` newlines each), parsed in one call: the same lines, codes into
        lists shared by the group. None when any of them would not have been read whole
        by :meth:`columns` on its own (then each is read on its own, as before).

        Arrow's fixed cost per call (some 40 kernel calls, its reader set up) and making
        each distinct string a Python string are paid once per group, not per chunk;
        the chunks stay the parts the window builder is drained after, so which lines are
        late is unchanged."""
        if len(chunks) == 1:
            one = self.columns(chunks[0])
            return None if one is None else [one]
        for i, chunk in enumerate(chunks):
            # what columns() checks at a chunk's start, and Arrow reads differently in the
            # middle of a larger chunk: a byte-order mark, a first brace
            if chunk[:3] == b"\xef\xbb\xbf" or chunk[:1] == b"{":
                return None
            if i < len(chunks) - 1 and chunk[-1:] != b"\n":
                return None
        rows = list(lines)
        if chunks[-1][-1:] != b"\n":
            rows[-1] += 1
        # six quotes a line in each chunk (the check columns() makes, chunk by chunk); an
        # empty line (Arrow skips it: a chunk's rows would not be its lines) has none
        quotes = [count_byte(chunk, 34) for chunk in chunks]
        if any(q != 6 * r for q, r in zip(quotes, rows, strict=True)):
            return None
        try:
            whole = self._columns(self._fields(b"".join(chunks), quotes=sum(quotes)))
        except (_Reject, pa.ArrowException, ValueError, KeyError, IndexError):
            return None
        if len(whole) != sum(rows):
            return None
        out: list[Columns] = []
        a = 0
        for r in rows:
            out.append(whole.cut(a, a + r))
            a += r
        return out

    def _fields(self, chunk: bytes, quotes: int | None = None) -> _Fields:
        # (a brace first: the two-byte search is slow where every line ends in a newline)
        if chunk[:1] == b"{" or (b"{" in chunk and b"\n{" in chunk):
            raise _Reject("json lines")
        if chunk[:3] == b"\xef\xbb\xbf":
            raise _Reject("byte order mark")  # Arrow drops it, the text reader keeps it
        for c in _ODD_BYTES:
            if c in chunk:
                raise _Reject("carriage return or odd white space")
        self._bad = 0
        ascii_only = chunk.isascii()
        tbl = pcsv.read_csv(pa.BufferReader(chunk), read_options=_READ, parse_options=self._parse,
                            convert_options=_CONVERT_USED if ascii_only else _CONVERT_ALL)
        n = tbl.num_rows
        if self._bad or n == 0:
            raise _Reject("shape")
        # the lines' field count (Arrow takes it from the first line, and a line with
        # another count is an invalid row): 10 or 19, as a column there or not
        there = {name: tbl.column(name).null_count == 0 for name in ("f9", "f10", "f18", "f19")}
        if there["f9"] and not there["f10"]:
            nc = 10
        elif there["f18"] and not there["f19"]:
            nc = 19
        else:
            raise _Reject("shape")
        # exactly six quotes a line: the three quoted fields and nothing else
        if (count_byte(chunk, 34) if quotes is None else quotes) != 6 * n:
            raise _Reject("quotes")
        col = {i: tbl.column(f"f{i}").combine_chunks()
               for i in (_USED if ascii_only else range(19)) if i < nc}
        if nc == 19:
            for i in range(10, 19):
                prefix = _ACCESS_KEYS.get(i)
                if prefix is not None and not pc.all_true(pc.starts_with(col[i], prefix)).as_py():
                    raise _Reject("access tail")
                if not ascii_only and not pc.all_true(pc.string_is_ascii(col[i])).as_py():
                    raise _Reject("access tail")  # str.split() cuts at Unicode spaces too
        # time: "[dd/Mon/yyyy:HH:MM:SS" and "+zzzz]", parsed once per distinct value; the
        # halves encoded apart when the chunk has one zone (a log's usual case: joining
        # every line's halves first cost twice the encoding)
        day = pc.dictionary_encode(col[3])
        zones = pc.dictionary_encode(col[4]).dictionary.to_pylist()
        if len(zones) == 1:
            stamps = [d + " " + zones[0] for d in day.dictionary.to_pylist()]
            which = day.indices
        else:
            stamp = pc.dictionary_encode(pc.binary_join_element_wise(col[3], col[4], _S[" "]))
            stamps, which = stamp.dictionary.to_pylist(), stamp.indices
        tcache = self._time
        secs = []
        for s in stamps:
            if len(s) != 28 or s[0] != "[" or s[-1] != "]":
                raise _Reject("time")
            secs.append(tcache(s[1:-1]))
        t = np.asarray(secs, dtype=np.float64)[which.to_numpy()]
        # request line -> target -> path, query (as LineParser.parse_combined cuts it),
        # cut once per distinct request line (a chunk repeats most of them)
        req_d = pc.dictionary_encode(col[5])
        req = req_d.dictionary
        words = pc.split_pattern(req, " ")
        if pc.all_true(pc.equal(pc.list_value_length(words), _THREE)).as_py():
            target = pc.list_element(words, _ONE)  # "METHOD target PROTOCOL": nearly every line
        else:
            two = pc.struct_field(pc.extract_regex(req, _TARGET2), [0])
            one = pc.struct_field(pc.extract_regex(req, _TARGET1), [0])
            target = pc.coalesce(two, one, _S[""])
        # "target?" cut at its first "?": the path, and the query with a "?" at its end
        # (two elements for every target; cheaper than a regular expression)
        pq = pc.split_pattern(pc.binary_join_element_wise(target, _S["?"], _S[""]), "?",
                              max_splits=1)
        path = pc.list_element(pq, _ZERO)
        query = pc.utf8_slice_codeunits(pc.list_element(pq, _ONE), 0, -1)
        if not pc.any_true(pc.not_equal(query, _S[""])).as_py():
            query = None  # no line has a query string (counted as such, more cheaply)
        status = pc.cast(col[6], pa.int64()).to_numpy()
        nbytes = pc.cast(pc.if_else(pc.equal(col[7], _S["-"]), _S["0"], col[7]), pa.int64()).to_numpy()
        if status.min() < 0 or nbytes.min() < 0:
            raise _Reject("numbers")
        f = _Fields(n, t, col[0], path, query, status, nbytes, col[9])
        f.target = target
        f.req = req_d.indices.to_numpy().astype(np.int64)
        if nc == 19:
            f.rt = pc.cast(pc.utf8_slice_codeunits(col[10], 3), pa.float64()).to_numpy()
            ut_s = pc.utf8_slice_codeunits(col[12], 3)
            f.ut = pc.cast(pc.if_else(pc.equal(ut_s, _S["-"]), _S["-1"], ut_s), pa.float64()).to_numpy()
            if not (np.isfinite(f.rt).all() and np.isfinite(f.ut).all()):
                raise _Reject("numbers")  # the window builder cannot place such a line
            f.session = pc.equal(col[17], _S["s=1"])
            f.verified = pc.equal(col[18], _S["v=1"])
            f.outcome = pc.utf8_slice_codeunits(col[14], 2)
        return f

    @staticmethod
    def _rows(f: _Fields) -> list[Parsed]:
        n = f.n
        path = _py(f.path, f.req)
        query = _py(f.query, f.req) if f.query is not None else [""] * n
        if f.rt is not None:
            return list(zip(
                (f.t + f.rt).tolist(), _py(f.client), path, query,
                f.status.tolist(), f.nbytes.tolist(), f.rt.tolist(), _py(f.ua),
                _bools(f.session), _bools(f.verified), _py(f.outcome), f.ut.tolist(), strict=True))
        return list(zip(
            f.t.tolist(), _py(f.client), path, query,
            f.status.tolist(), f.nbytes.tolist(), repeat(0.0, n), _py(f.ua),
            repeat(False, n), repeat(False, n), repeat("-", n), repeat(-1.0, n), strict=False))

    @staticmethod
    def _columns(f: _Fields) -> Columns:
        n = f.n
        client, clients = _codes(f.client)
        path, paths = _codes(f.path, f.req)
        if f.query is not None:
            query, queries = _codes(f.query, f.req)
            # a page's URL: its target, or the path alone when the query is empty ("/p?")
            url, urls = _codes(pc.if_else(pc.equal(f.query, _S[""]), f.path, f.target), f.req)
        else:
            query, queries = np.zeros(n, dtype=np.int64), [""]
            url, urls = path, paths
        ua, uas = _codes(f.ua)
        if f.rt is not None:
            outcome, outcomes = _codes(f.outcome)
            return Columns(
                f.t + f.rt, client, clients, path, paths, query, queries, f.status, f.nbytes,
                f.rt, ua, uas, _np_bools(f.session), _np_bools(f.verified), outcome, outcomes,
                f.ut, url, urls)
        no = np.zeros(n, dtype=bool)
        return Columns(
            f.t, client, clients, path, paths, query, queries, f.status, f.nbytes,
            np.zeros(n, dtype=np.float64), ua, uas, no, no, np.zeros(n, dtype=np.int64), ["-"],
            np.full(n, -1.0), url, urls)


class _Fields:
    """One chunk's fields as Arrow and numpy arrays (what both outputs are made from)."""

    __slots__ = ("client", "n", "nbytes", "outcome", "path", "query", "req", "rt", "session",
                 "status", "t", "target", "ua", "ut", "verified")

    def __init__(self, n: int, t: Any, client: Any, path: Any, query: Any, status: Any,
                 nbytes: Any, ua: Any) -> None:
        self.n = n
        self.t = t
        self.client = client
        self.path = path
        self.query = query
        """None: no line of the chunk has a query string."""
        self.status = status
        self.nbytes = nbytes
        self.ua = ua
        self.target: Any = None
        """The request target (path and query as the line has them)."""
        self.req: Any = None
        """Per line, its request line's index among the chunk's distinct ones (int64):
        ``path``, ``query`` and ``target`` hold one value per distinct request line."""
        self.rt: Any = None
        """None for a plain combined chunk (no access-log tail): rt 0, ut -1, outcome "-"."""
        self.ut: Any = None
        self.session: Any = None
        self.verified: Any = None
        self.outcome: Any = None


def count_byte(chunk: bytes, byte: int) -> int:
    """How many times ``byte`` occurs in ``chunk``: numpy's compare-and-count is several
    times quicker than ``bytes.count`` of one byte (and leaves the GIL to the detector)."""
    return int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == byte))


def split_odd_lines(chunk: bytes, max_pieces: int = 64) -> list[tuple[bool, bytes]] | None:
    """Cut a declined chunk into runs of lines with exactly six quotes (worth another try
    on the fast path) and runs of other lines (for Python), in order; None when that does
    not help (one run, or so many that Python is quicker for the whole chunk).

    Real logs carry the odd broken line (an unterminated user agent, a TLS handshake
    on the HTTP port): it should cost its own line, not its chunk's speed."""
    arr = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1
    if not len(ends) or ends[-1] != len(chunk):
        ends = np.append(ends, len(chunk))
    quotes = np.flatnonzero(arr == 34)
    per_line = np.diff(np.searchsorted(quotes, ends), prepend=0)
    good = per_line == 6
    change = np.flatnonzero(good[1:] != good[:-1]) + 1
    if not len(change) or len(change) >= max_pieces:
        return None
    pieces: list[tuple[bool, bytes]] = []
    first = 0
    for i in [*change.tolist(), len(ends)]:
        start = int(ends[first - 1]) if first else 0
        pieces.append((bool(good[first]), chunk[start:int(ends[i - 1])]))
        first = i
    return pieces


def _py(arr: Any, take: Any = None) -> list[str]:
    """A string column as a Python list; each distinct value made into a str once
    (paths, user agents and outcomes repeat a lot within a chunk). ``take``: per line,
    the index of its value in ``arr`` (a column of distinct request lines' parts)."""
    d = pc.dictionary_encode(arr)
    values = np.asarray(d.dictionary.to_pylist(), dtype=object)
    idx = d.indices.to_numpy()
    out: list[str] = values[idx if take is None else idx[take]].tolist()
    return out


def _codes(arr: Any, take: Any = None) -> tuple[Any, list[str]]:
    """A string column as (int64 code per line, distinct values in first-seen order).

    ``take``: as for :func:`_py`. The values of ``arr`` are then in the first-seen order
    of the lines' request lines, so its distinct values come in the lines' first-seen
    order too: the same codes and values as for the column taken line by line."""
    d = pc.dictionary_encode(arr)
    values: list[str] = d.dictionary.to_pylist()
    codes = d.indices.to_numpy().astype(np.int64)
    return (codes if take is None else codes[take]), values


def _np_bools(arr: Any) -> Any:
    return pc.cast(arr, pa.uint8()).to_numpy().astype(bool)


def _bools(arr: Any) -> list[bool]:
    """A boolean column as Python bools (through numpy: Arrow's own conversion is slower)."""
    out: list[bool] = pc.cast(arr, pa.uint8()).to_numpy().astype(bool).tolist()
    return out


def decode_lines(chunk: bytes) -> list[str]:
    """The chunk's lines exactly as the text-mode reader gives them (universal newlines,
    bad UTF-8 replaced): what the Python parser gets when the fast path declines."""
    return io.TextIOWrapper(io.BytesIO(chunk), encoding="utf-8", errors="replace").readlines()
