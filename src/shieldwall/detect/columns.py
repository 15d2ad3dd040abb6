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

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from shieldwall.detect.windows import (
    _ASSET,
    _PAGE,
    _TRUSTED,
    FAILED_OUTCOMES,
    Window,
    WindowBuilder,
)

Array = Any
"""A numpy array (numpy's own stubs are loose about shapes and dtypes anyway)."""


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

    def rows(self) -> list[tuple[float, str, str, str, int, int, float, str, bool, bool, str, float]]:
        """The same lines as rows (what :meth:`WindowBuilder.add_rows` takes)."""
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
        key = seg * ncodes + codes
        inv: Array = None
        if inverse:
            u, first, inv, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
        else:
            u, first, counts = np.unique(key, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        u = u[order]
        self.order = order
        self.inverse = inv
        self.counts = counts[order]
        self.codes = u % ncodes
        """The pairs' key codes (numpy), in first-seen order."""
        self.bounds = np.searchsorted(u // ncodes, np.arange(nseg + 1)).tolist()
        """Second ``i``'s pairs are ``[bounds[i], bounds[i + 1])``."""

    def keys(self, values: Array) -> list[str]:
        """The pairs' keys as strings (``values``: the distinct strings as an object array),
        made in one take, not one Python step per pair."""
        out: list[str] = values[self.codes].tolist()
        return out


def _count_into(d: dict[str, int], keys: list[str], counts: list[int]) -> None:
    if not d:
        d.update(zip(keys, counts, strict=True))
        return
    get = d.get
    for k, c in zip(keys, counts, strict=True):
        d[k] = get(k, 0) + c


def _seq_sum(start: float, values: Array) -> float:
    """``start + v0 + v1 + ...`` added left to right, as the per-line loop adds."""
    if not len(values):
        return start
    acc = np.empty(len(values) + 1, dtype=np.float64)
    acc[0] = start
    acc[1:] = values
    return float(np.add.accumulate(acc)[-1])


def add_columns(b: WindowBuilder, c: Columns) -> None:
    """Count a chunk of lines into ``b``'s windows: exactly what ``b.add_rows(c.rows())``
    does, column-wise."""
    n = len(c)
    if n == 0:
        return
    t = c.t_end
    ti = t.astype(np.int64)
    sec = np.where(t >= 0, ti, ti - 1)
    nxt = b._next
    if nxt is None:
        nxt = int(sec[0])
    late_m = sec < nxt
    late = int(np.count_nonzero(late_m))
    if late:
        sec = np.where(late_m, nxt, sec)
    mx = float(t.max())
    if mx > b.max_time:
        b.max_time = mx
    b._next = nxt
    b.late += late
    b.events += n

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
    bounds = np.append(starts, n).tolist()

    # per distinct path: no request line, asset, or page (memoised across chunks)
    kinds = _path_kinds(b)
    kind_of = np.fromiter(map(kinds.get, c.paths, repeat(-1)), dtype=np.int64, count=len(c.paths))
    unknown = kind_of < 0
    if unknown.any():
        asset_ext = b._asset_ext
        asset_prefixes = b._asset_prefixes
        for i in np.flatnonzero(unknown).tolist():
            p = c.paths[i]
            pk = 0 if not p else _ASSET if (p.rpartition(".")[2] in asset_ext
                                            or p.startswith(asset_prefixes)) else _PAGE
            kind_of[i] = pk
            if len(kinds) < _KINDS_MAX:
                kinds[p] = pk
    kind = kind_of[path]
    page = kind == _PAGE
    noreq = kind == 0
    trusted = session | verified
    flags = kind | np.where(trusted, _TRUSTED, 0)
    # per distinct outcome
    oc = c.outcomes
    o_dash = np.asarray([o == "-" for o in oc], dtype=bool)[outcome]
    o_fail = np.asarray([o in FAILED_OUTCOMES for o in oc], dtype=bool)[outcome]
    o_tout = np.asarray([o == "timeout" for o in oc], dtype=bool)[outcome]
    err = status >= 500
    gw = err & o_dash & ((status == 502) | (status == 503) | (status == 504))
    bfail = gw.astype(np.int64) + o_fail
    touts = (gw & (status == 504)).astype(np.int64) + o_tout
    failed = err | o_fail | (status == 429)
    s408 = status == 408
    slow = s408 | ((rt >= b._slow_seconds) & (nbytes <= b._slow_max_bytes))
    nf = page & (status == 404)
    has_q = np.fromiter(map(len, c.queries), dtype=np.int64, count=len(c.queries))[query] > 0

    def sums(x: Array) -> list[int]:
        out: list[int] = np.add.reduceat(x.astype(np.int64), starts).tolist()
        return out

    s_pages, s_nf, s_noreq = sums(page), sums(nf), sums(noreq)
    s_err, s_bfail, s_tout = sums(err), sums(bfail), sums(touts)
    s_s408, s_slow = sums(s408), sums(slow)
    s_sess, s_ver, s_bytes = sums(session), sums(verified), sums(nbytes)
    any_rt = bool(rt.any())
    ut_ok = ut >= 0
    any_ut = bool(ut_ok.any())
    s_ut_n = sums(ut_ok) if any_ut else None

    # dicts: (second, key) groups in first-seen order, their keys made in one take each
    clients = np.asarray(c.clients, dtype=object)
    nclients = max(1, len(c.clients))
    g_src = _Groups(seg, client, nclients, nseg, inverse=True)
    fl = np.zeros(len(g_src.order), dtype=np.int64)
    np.bitwise_or.at(fl, g_src.inverse, flags)
    src_keys = g_src.keys(clients)
    src_counts = g_src.counts.tolist()
    src_flags = fl[g_src.order].tolist()
    g_ua = _Groups(seg, ua, max(1, len(c.uas)), nseg)
    ua_keys = g_ua.keys(np.asarray(c.uas, dtype=object))
    ua_counts = g_ua.counts.tolist()
    paths_obj = np.asarray(c.paths, dtype=object)
    seg_p = seg[page]
    g_paths = _Groups(seg_p, path[page], max(1, len(c.paths)), nseg)
    path_keys = g_paths.keys(paths_obj)
    path_counts = g_paths.counts.tolist()
    g_urls = _Groups(seg_p, url[page], max(1, len(c.urls)), nseg)
    url_keys = g_urls.keys(np.asarray(c.urls, dtype=object))
    pq = page & has_q
    any_q = bool(pq.any())
    if any_q:
        queries = np.asarray(c.queries, dtype=object)
        seg_q, query_q = seg[pq], query[pq]
        g_queries = _Groups(seg_q, query_q, max(1, len(c.queries)), nseg)
        q_keys = g_queries.keys(queries)
        q_counts = g_queries.counts.tolist()
        # per (second, path) in first-seen order, the query strings of its lines
        g_qp = _Groups(seg_q, path[pq], max(1, len(c.paths)), nseg, inverse=True)
        rank = np.empty(len(g_qp.order), dtype=np.int64)
        rank[g_qp.order] = np.arange(len(g_qp.order))
        by_group = np.argsort(rank[g_qp.inverse], kind="stable")
        qp_strs: list[str] = queries[query_q[by_group]].tolist()
        qp_keys = g_qp.keys(paths_obj)
        qp_off = np.concatenate(([0], np.cumsum(g_qp.counts))).tolist()
    g_failed = _Groups(seg[failed], client[failed], nclients, nseg) if failed.any() else None
    g_slow = _Groups(seg[slow], client[slow], nclients, nseg) if slow.any() else None
    failed_keys = g_failed.keys(clients) if g_failed is not None else []
    failed_counts = g_failed.counts.tolist() if g_failed is not None else []
    slow_keys = g_slow.keys(clients) if g_slow is not None else []
    slow_counts = g_slow.counts.tolist() if g_slow is not None else []

    opened = b._open
    for i, s in enumerate(secs):
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
        if any_rt:
            w.rt_sum = _seq_sum(w.rt_sum, rt[a:z])
        if s_ut_n is not None and s_ut_n[i]:
            u = ut[a:z]
            w.ut_sum = _seq_sum(w.ut_sum, u[u >= 0])
            w.ut_n += s_ut_n[i]
        # sources and their flags (same keys, same order)
        ga, gz = g_src.bounds[i], g_src.bounds[i + 1]
        keys = src_keys[ga:gz]
        _count_into(w.src, keys, src_counts[ga:gz])
        cf = w.cflags
        if not cf:
            cf.update(zip(keys, src_flags[ga:gz], strict=True))
        else:
            get = cf.get
            for k, f in zip(keys, src_flags[ga:gz], strict=True):
                cf[k] = get(k, 0) | f
        ga, gz = g_ua.bounds[i], g_ua.bounds[i + 1]
        _count_into(w.uas, ua_keys[ga:gz], ua_counts[ga:gz])
        ga, gz = g_paths.bounds[i], g_paths.bounds[i + 1]
        if ga != gz:
            _count_into(w.paths, path_keys[ga:gz], path_counts[ga:gz])
            ga, gz = g_urls.bounds[i], g_urls.bounds[i + 1]
            w.urls.update(url_keys[ga:gz])
        if any_q:
            ga, gz = g_queries.bounds[i], g_queries.bounds[i + 1]
            if ga != gz:
                _count_into(w.queries, q_keys[ga:gz], q_counts[ga:gz])
                qp = w.qpaths
                for j in range(g_qp.bounds[i], g_qp.bounds[i + 1]):
                    p = qp_keys[j]
                    qs = qp.get(p)
                    if qs is None:
                        qp[p] = set(qp_strs[qp_off[j]:qp_off[j + 1]])
                    else:
                        qs.update(qp_strs[qp_off[j]:qp_off[j + 1]])
        if g_failed is not None:
            ga, gz = g_failed.bounds[i], g_failed.bounds[i + 1]
            if ga != gz:
                _count_into(w.failed_src, failed_keys[ga:gz], failed_counts[ga:gz])
        if g_slow is not None:
            ga, gz = g_slow.bounds[i], g_slow.bounds[i + 1]
            if ga != gz:
                _count_into(w.slow_src, slow_keys[ga:gz], slow_counts[ga:gz])


_KINDS: dict[tuple[frozenset[str], tuple[str, ...]], dict[str, int]] = {}
"""(asset extensions, asset prefixes) -> path -> kind (a pure function of the path)."""
_KINDS_MAX = 1 << 18


def _path_kinds(b: WindowBuilder) -> dict[str, int]:
    key = (b._asset_ext, b._asset_prefixes)
    kinds = _KINDS.get(key)
    if kinds is None:
        kinds = _KINDS[key] = {}
    return kinds
