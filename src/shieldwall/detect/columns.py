"""The offline feed's column-wise window counting: a whole chunk of parsed lines
counted into 1 s :class:`~shieldwall.detect.windows.Window` objects with numpy
kernels, instead of one Python loop step per line.

:meth:`WindowBuilder.add_rows` stays the definition of what a request counts
for (the live feed calls it per event); :func:`add_columns` is the same
arithmetic over columns and must leave every window exactly as ``add_rows``
would have left it for the same lines in the same order -- every count, every
float sum (added in line order, as the loop adds), and the first-seen order
of every dict (the features iterate them: entropies are float sums in that
order, the seen-sets evict in that order, ties go to the first key).
``tests/detect/test_detect_columns.py`` holds the two paths equal on
generated, real and family logs, window for window and verdict for verdict.

How: the chunk's strings arrive dictionary-encoded (an integer code per line
and each distinct string once), so a dict of a window is a group-by of
(second, code) in first-seen order (``np.unique`` on the combined key, the
groups sorted by their first line) and Python touches each distinct key of a
second once, not each line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from itertools import repeat
from operator import add, or_
from typing import Any, TypeVar

from shieldwall.detect.windows import (
    _ASSET,
    _PAGE,
    _TRUSTED,
    FAILED_OUTCOMES,
    Window,
    WindowBuilder,
)

V = TypeVar("V")

Array = Any
"""A numpy array (numpy's own stubs are loose about shapes and dtypes anyway).

numpy is imported inside the functions that count (:func:`count_columns`, run in the
parsing process): the analyzer's own process only applies counts and never imports it
(a tenth of a second of start-up)."""


@dataclass(slots=True)
class Columns:
    """Parsed lines as columns; strings as codes into their lists of distinct values.

    The same fields as a :data:`~shieldwall.detect.readers.Parsed` row, in lines."""

    t_end: Array
    """float64: start + request time, Unix seconds."""
    client: Array
    clients: list[str]
    path: Array
    paths: list[str]
    query: Array
    queries: list[str]
    status: Array
    """int64."""
    nbytes: Array
    """int64."""
    rt: Array
    """float64."""
    ua: Array
    uas: list[str]
    session: Array
    """bool."""
    verified: Array
    """bool."""
    outcome: Array
    outcomes: list[str]
    ut: Array
    """float64; -1 when unknown."""
    url: Array
    urls: list[str]
    """A page's URL as the window counts it: ``path?query``, or ``path`` when the query
    is empty (the codes of ``path`` when no line has a query)."""

    def __len__(self) -> int:
        return len(self.t_end)

    def cut(self, a: int, z: int) -> Columns:
        """Lines ``[a, z)``, codes into the same lists of distinct values."""
        return Columns(
            self.t_end[a:z], self.client[a:z], self.clients, self.path[a:z], self.paths,
            self.query[a:z], self.queries, self.status[a:z], self.nbytes[a:z], self.rt[a:z],
            self.ua[a:z], self.uas, self.session[a:z], self.verified[a:z], self.outcome[a:z],
            self.outcomes, self.ut[a:z], self.url[a:z], self.urls)

    def rows(self) -> list[tuple[float, str, str, str, int, int, float, str, bool, bool, str, float]]:
        """The same lines as rows (what :meth:`WindowBuilder.add_rows` takes)."""
        import numpy as np

        def s(codes: Array, values: list[str]) -> list[str]:
            out: list[str] = np.asarray(values, dtype=object)[codes].tolist()
            return out

        return list(zip(
            self.t_end.tolist(), s(self.client, self.clients), s(self.path, self.paths),
            s(self.query, self.queries), self.status.tolist(), self.nbytes.tolist(),
            self.rt.tolist(), s(self.ua, self.uas), self.session.tolist(),
            self.verified.tolist(), s(self.outcome, self.outcomes), self.ut.tolist(),
            strict=True))


class _Groups:
    """Distinct (second, key) pairs of some lines, in first-seen order, grouped by second."""

    __slots__ = ("bounds", "codes", "counts", "inverse", "order")

    def __init__(self, seg: Array, codes: Array, ncodes: int, nseg: int,
                 inverse: bool = False) -> None:
        import numpy as np
        import pyarrow as pa  # type: ignore[import-untyped]

        from shieldwall.detect import _kernels as pc

        key = seg * ncodes + codes
        # Arrow's hash table numbers the distinct keys in first-seen order (no sort: a
        # sort-based np.unique, then the groups sorted by their first line, took half
        # of the counting); the lines are in second order, so the groups come grouped
        # by second, each second's in first-seen order
        d = pc.dictionary_encode(pa.array(key))
        inv: Array = d.indices.to_numpy()
        u = d.dictionary.to_numpy()
        self.order = np.arange(len(u))
        """The groups' first-seen ranks (here the identity)."""
        self.inverse: Array = inv if inverse else None
        """Per line, its group."""
        self.counts = np.bincount(inv, minlength=len(u))
        self.codes = u % ncodes
        """The pairs' key codes (numpy), in first-seen order."""
        self.bounds = np.searchsorted(u // ncodes, np.arange(nseg + 1)).tolist()
        """Second ``i``'s pairs are ``[bounds[i], bounds[i + 1])``."""

    def keys(self, values: Array) -> list[str]:
        """The pairs' keys as strings (``values``: the distinct strings as an object array),
        made in one take, not one Python step per pair."""
        out: list[str] = values[self.codes].tolist()
        return out


def _merge_into(d: dict[str, V], keys: list[str], values: list[V], join: Callable[[V, V], V]) -> None:
    """``d[k] = join(d[k], v)`` for the keys already in ``d``, ``d[k] = v`` for the rest,
    in the order of ``keys`` (distinct): what the per-line loop leaves, keys in the same
    order (a new key goes last, a known one stays where it is).

    A second that straddles two parts continues its window's dicts; in a flood most of
    its keys are new to them, so the known ones are found by one C-level intersection,
    everything is set by one ``update`` and only the known ones are joined in Python."""
    if not d:
        d.update(zip(keys, values, strict=True))
        return
    known = d.keys() & keys  # (walks ``keys``, looking each up in ``d``)
    if 2 * len(known) > len(keys):
        get = d.get
        for k, v in zip(keys, values, strict=True):
            was = get(k)
            d[k] = v if was is None else join(was, v)
        return
    old = {k: d[k] for k in known}
    d.update(zip(keys, values, strict=True))
    for k, was in old.items():
        d[k] = join(was, d[k])


def _one_url(was: str, url: str) -> str:
    """A page client's one URL of a second, from two parts of it ("" once it has two)."""
    return url if was == url else ""


def _count_into(d: dict[str, int], keys: list[str], counts: list[int]) -> None:
    _merge_into(d, keys, counts, add)


def _seq_sum(start: float, values: list[float]) -> float:
    """``start + v0 + v1 + ...`` added left to right, as the per-line loop adds."""
    return reduce(add, values, start)


class Clock:
    """What :func:`count_columns` needs of a :class:`WindowBuilder`'s state: the oldest
    open second and the newest time seen, kept as the builder keeps them when the
    analyzer drains it after every part (so a parsing process can count ahead of the
    builder and the builder's own state stays the reference: :func:`apply_counts`
    checks the two agree)."""

    __slots__ = ("lateness", "max_time", "next")

    def __init__(self, lateness: float) -> None:
        self.lateness = lateness
        self.next: int | None = None
        self.max_time = float("-inf")

    @classmethod
    def of(cls, b: WindowBuilder) -> Clock:
        c = cls(b.lateness)
        c.next, c.max_time = b._next, b.max_time
        return c

    def rows(self, t_ends: list[float]) -> None:
        """A part of rows went through :meth:`WindowBuilder.add_rows`."""
        if not t_ends:
            return
        if self.next is None:
            t = t_ends[0]
            self.next = int(t) if t >= 0 else int(t) - 1
        self.max_time = max(self.max_time, max(t_ends))

    def drain(self) -> None:
        """:meth:`WindowBuilder.drain` closes every second before this one."""
        if self.next is not None:
            self.next = max(self.next, int(self.max_time - self.lateness))


class BuilderArgs:
    """The builder's settings the counting needs (plain values: they cross to the
    parsing process)."""

    __slots__ = ("asset_ext", "asset_prefixes", "slow_max_bytes", "slow_seconds")

    def __init__(self, b: WindowBuilder) -> None:
        self.asset_ext = b._asset_ext
        self.asset_prefixes = b._asset_prefixes
        self.slow_seconds = b._slow_seconds
        self.slow_max_bytes = b._slow_max_bytes

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.asset_ext, self.asset_prefixes, self.slow_seconds, self.slow_max_bytes)

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        self.asset_ext, self.asset_prefixes, self.slow_seconds, self.slow_max_bytes = st


class Counts:
    """A chunk counted per second, ready to be added to windows: per second the scalar
    sums and each dict's (key, count) pairs in first-seen order, as flat lists with
    bounds. Plain lists, strings and small arrays: cheap to pickle."""

    __slots__ = (
        "any_q",
        "any_rt",
        "bounds",
        "curl",
        "events",
        "failed",
        "late",
        "max_time",
        "next_after",
        "next_before",
        "nseg",
        "path_keys",
        "paths_b",
        "qp",
        "queries",
        "rt",
        "scalars",
        "secs",
        "slow",
        "src",
        "src_flags",
        "ua",
        "url_keys",
        "urls_b",
        "ut",
        "ut_n",
    )

    KeyCounts = tuple[list[str], list[int], list[int]]
    """(keys, counts, bounds): second ``i``'s pairs are ``[bounds[i], bounds[i + 1])``."""
    secs: list[int]
    bounds: list[int]
    """Second ``i``'s lines are ``[bounds[i], bounds[i + 1])`` (of ``rt``, ``ut``)."""
    nseg: int
    next_before: int | None
    next_after: int
    max_time: float
    late: int
    events: int
    scalars: list[list[int]]
    """Per field (pages, 404 pages, no request, 5xx, backend failures, timeouts, 408s,
    slow, sessions, verified, bytes), its sum per second."""
    any_rt: bool
    rt: list[float] | None
    """Every line's request time, the lines in second order (None: all zero)."""
    ut: list[float] | None
    """The known (>= 0) upstream times, the lines in second order; ``ut_n`` per second."""
    ut_n: list[int] | None
    src: KeyCounts
    src_flags: list[int]
    ua: KeyCounts
    path_keys: tuple[list[str], list[int]]
    paths_b: list[int]
    url_keys: list[str]
    urls_b: list[int]
    curl: tuple[list[str], list[str], list[int]]
    any_q: bool
    queries: KeyCounts | None
    qp: tuple[list[str], list[str], list[int], list[int]] | None
    """(paths, their query strings one after another, offsets, bounds)."""
    failed: KeyCounts | None
    slow: KeyCounts | None


    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__, st, strict=True):
            setattr(self, k, v)


def add_columns(b: WindowBuilder, c: Columns) -> None:
    """Count a chunk of lines into ``b``'s windows: exactly what ``b.add_rows(c.rows())``
    does, column-wise (:func:`count_columns`, then :func:`apply_counts`)."""
    clock = Clock.of(b)
    counts = count_columns(c, clock, BuilderArgs(b))
    if counts is not None:
        apply_counts(b, counts)


def count_columns(c: Columns, clock: Clock, args: BuilderArgs) -> Counts | None:
    """The numpy part of :func:`add_columns`: ``c`` counted per second, and ``clock``
    moved on as the builder's will be once the counts are applied. None: no lines."""
    import numpy as np

    n = len(c)
    if n == 0:
        return None
    cnt = Counts()
    t = c.t_end
    ti = t.astype(np.int64)
    sec = np.where(t >= 0, ti, ti - 1)
    nxt = clock.next
    cnt.next_before = nxt
    if nxt is None:
        nxt = int(sec[0])
    late_m = sec < nxt
    late = int(np.count_nonzero(late_m))
    if late:
        sec = np.where(late_m, nxt, sec)
    mx = float(t.max())
    cnt.max_time = mx
    if mx > clock.max_time:
        clock.max_time = mx
    clock.next = nxt
    cnt.next_after = nxt
    cnt.late = late
    cnt.events = n

    # lines grouped by second, each second's lines in stream order
    if n > 1 and bool((sec[1:] < sec[:-1]).any()):
        order = np.argsort(sec, kind="stable")
        sec = sec[order]
        client, path, query, ua, outcome = (c.client[order], c.path[order], c.query[order],
                                            c.ua[order], c.outcome[order])
        status, nbytes, rt, ut = c.status[order], c.nbytes[order], c.rt[order], c.ut[order]
        session, verified, url = c.session[order], c.verified[order], c.url[order]
    else:
        client, path, query, ua, outcome = c.client, c.path, c.query, c.ua, c.outcome
        status, nbytes, rt, ut = c.status, c.nbytes, c.rt, c.ut
        session, verified, url = c.session, c.verified, c.url
    starts = np.flatnonzero(np.diff(sec)) + 1
    starts = np.concatenate(([0], starts))
    secs = sec[starts].tolist()
    nseg = len(secs)
    lens = np.diff(np.append(starts, n))
    seg = np.repeat(np.arange(nseg, dtype=np.int64), lens)
    cnt.secs = secs
    cnt.nseg = nseg
    cnt.bounds = np.append(starts, n).tolist()

    # per distinct string: a path's kind (no request line, asset, or page; memoised across
    # chunks), a query's length, the strings as object arrays -- made once for the lines
    # of one parse (its parts share the lists: ArrowCombined.columns_group)
    per = _per_distinct(c, args)
    kind = per.kind_of[path]
    page = kind == _PAGE
    noreq = kind == 0
    trusted = session | verified
    flags = kind | np.where(trusted, _TRUSTED, 0)
    # per distinct outcome
    oc = c.outcomes
    o_answered = np.asarray([o == "-" or o == "ok" for o in oc], dtype=bool)[outcome]
    o_fail = np.asarray([o in FAILED_OUTCOMES for o in oc], dtype=bool)[outcome]
    o_tout = np.asarray([o == "timeout" for o in oc], dtype=bool)[outcome]
    err = status >= 500
    gw = err & o_answered & ((status == 500) | (status == 502) | (status == 503) | (status == 504))
    bfail = gw.astype(np.int64) + o_fail
    touts = (gw & (status == 504)).astype(np.int64) + o_tout
    failed = err | o_fail | (status == 429)
    s408 = status == 408
    slow = s408 | ((rt >= args.slow_seconds) & (nbytes <= args.slow_max_bytes))
    nf = page & (status == 404)
    has_q = per.q_len[query] > 0

    # the scalar sums per second, one row per field (the order apply_counts adds them in)
    x = np.stack([page, nf, noreq, err, bfail, touts, s408, slow, session, verified, nbytes]).astype(np.int64)
    cnt.scalars = np.add.reduceat(x, starts, axis=1).tolist()
    # request times as Python floats, each second's added in line order by apply_counts
    cnt.any_rt = bool(rt.any())
    cnt.rt = rt.tolist() if cnt.any_rt else None
    ut_ok = ut >= 0
    if ut_ok.any():
        cnt.ut = ut[ut_ok].tolist()
        cnt.ut_n = np.add.reduceat(ut_ok.astype(np.int64), starts).tolist()
    else:
        cnt.ut = cnt.ut_n = None

    # dicts: (second, key) groups in first-seen order, their keys made in one take each
    clients = per.clients
    nclients = max(1, len(c.clients))
    g_src = _Groups(seg, client, nclients, nseg, inverse=True)
    fl = np.zeros(len(g_src.order), dtype=np.int64)
    np.bitwise_or.at(fl, g_src.inverse, flags)
    cnt.src = (g_src.keys(clients), g_src.counts.tolist(), g_src.bounds)
    cnt.src_flags = fl[g_src.order].tolist()
    g_ua = _Groups(seg, ua, max(1, len(c.uas)), nseg)
    cnt.ua = (g_ua.keys(per.uas), g_ua.counts.tolist(), g_ua.bounds)
    paths_obj = per.paths
    seg_p = seg[page]
    g_paths = _Groups(seg_p, path[page], max(1, len(c.paths)), nseg)
    cnt.path_keys = (g_paths.keys(paths_obj), g_paths.counts.tolist())
    cnt.paths_b = g_paths.bounds
    g_urls = _Groups(seg_p, url[page], max(1, len(c.urls)), nseg)
    cnt.url_keys = g_urls.keys(per.urls)
    cnt.urls_b = g_urls.bounds
    # per (second, page client) in first-seen order: its one URL, or "" for several
    url_p = url[page]
    g_cu = _Groups(seg_p, client[page], nclients, nseg, inverse=True)
    lo = np.full(len(g_cu.order), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(len(g_cu.order), -1, dtype=np.int64)
    np.minimum.at(lo, g_cu.inverse, url_p)
    np.maximum.at(hi, g_cu.inverse, url_p)
    lo, hi = lo[g_cu.order], hi[g_cu.order]
    cu_vals = per.urls_or_none[np.where(lo == hi, lo, len(c.urls))]
    cnt.curl = (g_cu.keys(clients), cu_vals.tolist(), g_cu.bounds)
    pq = page & has_q
    cnt.any_q = bool(pq.any())
    cnt.queries = cnt.qp = None
    if cnt.any_q:
        queries = per.queries
        seg_q, query_q = seg[pq], query[pq]
        g_queries = _Groups(seg_q, query_q, max(1, len(c.queries)), nseg)
        cnt.queries = (g_queries.keys(queries), g_queries.counts.tolist(), g_queries.bounds)
        # per (second, path) in first-seen order, the query strings of its lines
        g_qp = _Groups(seg_q, path[pq], max(1, len(c.paths)), nseg, inverse=True)
        rank = np.empty(len(g_qp.order), dtype=np.int64)
        rank[g_qp.order] = np.arange(len(g_qp.order))
        by_group = np.argsort(rank[g_qp.inverse], kind="stable")
        qp_strs: list[str] = queries[query_q[by_group]].tolist()
        qp_off = np.concatenate(([0], np.cumsum(g_qp.counts))).tolist()
        cnt.qp = (g_qp.keys(paths_obj), qp_strs, qp_off, g_qp.bounds)
    cnt.failed = cnt.slow = None
    if failed.any():
        g = _Groups(seg[failed], client[failed], nclients, nseg)
        cnt.failed = (g.keys(clients), g.counts.tolist(), g.bounds)
    if slow.any():
        g = _Groups(seg[slow], client[slow], nclients, nseg)
        cnt.slow = (g.keys(clients), g.counts.tolist(), g.bounds)
    return cnt


def apply_counts(b: WindowBuilder, cnt: Counts) -> None:
    """Add a counted chunk to ``b``'s windows (the Python part of :func:`add_columns`:
    one step per second and per distinct key of a second)."""
    if cnt.next_before != b._next:
        raise RuntimeError(f"counts made for the builder at second {cnt.next_before}, "
                           f"applied at {b._next}")
    if cnt.max_time > b.max_time:
        b.max_time = cnt.max_time
    b._next = cnt.next_after
    b.late += cnt.late
    b.events += cnt.events
    (s_pages, s_nf, s_noreq, s_err, s_bfail, s_tout, s_s408, s_slow, s_sess, s_ver,
     s_bytes) = cnt.scalars
    bounds = cnt.bounds
    rt, ut, s_ut_n = cnt.rt, cnt.ut, cnt.ut_n
    u0 = 0
    src_keys, src_counts, src_b = cnt.src
    src_flags = cnt.src_flags
    ua_keys, ua_counts, ua_b = cnt.ua
    path_keys, path_counts = cnt.path_keys
    paths_b, url_keys, urls_b = cnt.paths_b, cnt.url_keys, cnt.urls_b
    cu_keys, cu_vals, cu_b = cnt.curl
    any_q = cnt.any_q and cnt.queries is not None and cnt.qp is not None
    if cnt.queries is not None and cnt.qp is not None:
        q_keys, q_counts, q_b = cnt.queries
        qp_keys, qp_strs, qp_off, qp_b = cnt.qp
    failed, slow = cnt.failed, cnt.slow
    opened = b._open
    for i, s in enumerate(cnt.secs):
        w = opened.get(s)
        if w is None:
            w = opened[s] = Window(s)
        a, z = bounds[i], bounds[i + 1]
        w.n += z - a
        w.pages += s_pages[i]
        w.nf += s_nf[i]
        w.noreq += s_noreq[i]
        w.errors += s_err[i]
        w.bfail += s_bfail[i]
        w.timeouts += s_tout[i]
        w.s408 += s_s408[i]
        w.slow += s_slow[i]
        w.sessions += s_sess[i]
        w.verified += s_ver[i]
        w.bytes += s_bytes[i]
        if rt is not None:
            w.rt_sum = _seq_sum(w.rt_sum, rt[a:z])
        if s_ut_n is not None and ut is not None and s_ut_n[i]:
            u1 = u0 + s_ut_n[i]
            w.ut_sum = _seq_sum(w.ut_sum, ut[u0:u1])
            w.ut_n += s_ut_n[i]
            u0 = u1
        # sources and their flags (same keys, same order)
        ga, gz = src_b[i], src_b[i + 1]
        keys = src_keys[ga:gz]
        _count_into(w.src, keys, src_counts[ga:gz])
        _merge_into(w.cflags, keys, src_flags[ga:gz], or_)
        ga, gz = ua_b[i], ua_b[i + 1]
        _count_into(w.uas, ua_keys[ga:gz], ua_counts[ga:gz])
        ga, gz = paths_b[i], paths_b[i + 1]
        if ga != gz:
            _count_into(w.paths, path_keys[ga:gz], path_counts[ga:gz])
            ga, gz = urls_b[i], urls_b[i + 1]
            w.urls.update(url_keys[ga:gz])
            ga, gz = cu_b[i], cu_b[i + 1]
            _merge_into(w.curl, cu_keys[ga:gz], cu_vals[ga:gz], _one_url)
        if any_q:
            ga, gz = q_b[i], q_b[i + 1]
            if ga != gz:
                _count_into(w.queries, q_keys[ga:gz], q_counts[ga:gz])
                qp = w.qpaths
                ja, jz = qp_b[i], qp_b[i + 1]
                if not qp:
                    # a new window: each path's set made in C (a random-query flood brings
                    # hundreds of paths a second), in the paths' order
                    qp.update(zip(qp_keys[ja:jz], map(set, map(
                        qp_strs.__getitem__, map(slice, qp_off[ja:jz], qp_off[ja + 1:jz + 1]))),
                        strict=True))
                else:
                    for j in range(ja, jz):
                        p = qp_keys[j]
                        qs = qp.get(p)
                        if qs is None:
                            qp[p] = set(qp_strs[qp_off[j]:qp_off[j + 1]])
                        else:
                            qs.update(qp_strs[qp_off[j]:qp_off[j + 1]])
        if failed is not None:
            ga, gz = failed[2][i], failed[2][i + 1]
            if ga != gz:
                _count_into(w.failed_src, failed[0][ga:gz], failed[1][ga:gz])
        if slow is not None:
            ga, gz = slow[2][i], slow[2][i + 1]
            if ga != gz:
                _count_into(w.slow_src, slow[0][ga:gz], slow[1][ga:gz])


class _PerDistinct:
    """What :func:`count_columns` makes of a chunk's lists of distinct strings."""

    __slots__ = ("clients", "key", "kind_of", "paths", "q_len", "queries", "uas", "urls",
                 "urls_or_none")

    def __init__(self, c: Columns, args: BuilderArgs) -> None:
        import numpy as np

        self.key = (c.clients, c.paths, c.queries, c.uas, c.urls, args)
        kinds = _path_kinds(args.asset_ext, args.asset_prefixes)
        kind_of = np.fromiter(map(kinds.get, c.paths, repeat(-1)), dtype=np.int64, count=len(c.paths))
        unknown = kind_of < 0
        if unknown.any():
            asset_ext = args.asset_ext
            asset_prefixes = args.asset_prefixes
            for i in np.flatnonzero(unknown).tolist():
                p = c.paths[i]
                pk = 0 if not p else _ASSET if (p.rpartition(".")[2] in asset_ext
                                                or p.startswith(asset_prefixes)) else _PAGE
                kind_of[i] = pk
                if len(kinds) < _KINDS_MAX:
                    kinds[p] = pk
        self.kind_of: Array = kind_of
        self.q_len: Array = np.fromiter(map(len, c.queries), dtype=np.int64, count=len(c.queries))
        self.clients: Array = np.asarray(c.clients, dtype=object)
        self.uas: Array = np.asarray(c.uas, dtype=object)
        self.paths: Array = np.asarray(c.paths, dtype=object)
        self.urls: Array = np.asarray(c.urls, dtype=object)
        self.urls_or_none: Array = np.asarray([*c.urls, ""], dtype=object)
        """The URLs and "" after them (a page client with several URLs in a second)."""
        self.queries: Array = np.asarray(c.queries, dtype=object)


_LAST: list[_PerDistinct] = []
"""The last chunk's :class:`_PerDistinct` (the parts of one parse share its lists)."""


def _per_distinct(c: Columns, args: BuilderArgs) -> _PerDistinct:
    """:class:`_PerDistinct` of ``c``'s lists, made once for the parts that share them (the
    same list objects: a parse of several chunks at once, cut into its chunks)."""
    if _LAST:
        last = _LAST[0]
        k = last.key
        if (k[0] is c.clients and k[1] is c.paths and k[2] is c.queries and k[3] is c.uas
                and k[4] is c.urls and k[5] is args):
            return last
    per = _PerDistinct(c, args)
    _LAST[:] = [per]
    return per


_KINDS: dict[tuple[frozenset[str], tuple[str, ...]], dict[str, int]] = {}
"""(asset extensions, asset prefixes) -> path -> kind (a pure function of the path)."""
_KINDS_MAX = 1 << 18


def _path_kinds(asset_ext: frozenset[str], asset_prefixes: tuple[str, ...]) -> dict[str, int]:
    key = (asset_ext, asset_prefixes)
    kinds = _KINDS.get(key)
    if kinds is None:
        kinds = _KINDS[key] = {}
    return kinds
