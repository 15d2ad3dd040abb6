"""Complete HTTP/1.1 responses the proxy writes as they are.

Cheap rejection is the point: the fixed ones are built once, 429s are cached
per Retry-After value, and the challenge page is one string format.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

_REASONS: Final = {200: "OK", 302: "Found", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 503: "Service Unavailable"}


def build(status: int, body: bytes, *, content_type: str = "text/plain; charset=utf-8",
          headers: tuple[tuple[str, str], ...] = (), close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}",
             "Cache-Control: no-store"]
    lines += [f"{k}: {v}" for k, v in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def head_only(resp: bytes) -> bytes:
    """The same response for a HEAD request: headers (Content-Length kept), no body."""
    head, sep, _ = resp.partition(b"\r\n\r\n")
    return head + sep


def with_close(resp: bytes) -> bytes:
    """The same response announcing ``Connection: close``."""
    if b"\r\nConnection: close\r\n" in resp.partition(b"\r\n\r\n")[0] + b"\r\n":
        return resp
    head, sep, body = resp.partition(b"\r\n\r\n")
    return head + b"\r\nConnection: close" + sep + body


def retry_after_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class Canned:
    """The fixed responses, built once per process."""

    def __init__(self) -> None:
        self.block = build(403, b"Forbidden: this address is blocked.\n", close=True)
        self.not_found = build(404, b"Not found.\n")
        self.bad_verify = build(400, b"Bad challenge answer.\n", close=True)
        self._limit: dict[int, bytes] = {}
        self._shed: dict[int, bytes] = {}

    def limit(self, retry_after: float) -> bytes:
        secs = retry_after_seconds(retry_after)
        hit = self._limit.get(secs)
        if hit is None:
            hit = build(429, b"Too many requests: slow down and retry later.\n",
                        headers=(("Retry-After", str(secs)),))
            if len(self._limit) < 4096:
                self._limit[secs] = hit
        return hit

    def shed(self, retry_after: float) -> bytes:
        secs = retry_after_seconds(retry_after)
        hit = self._shed.get(secs)
        if hit is None:
            hit = build(503, b"The shop is very busy: please retry in a moment.\n",
                        headers=(("Retry-After", str(secs)),))
            if len(self._shed) < 4096:
                self._shed[secs] = hit
        return hit


def redirect(location: str, set_cookie: str) -> bytes:
    return build(302, b"", headers=(("Location", location), ("Set-Cookie", set_cookie)))


# The solver: SHA-256 via crypto.subtle (batched, so the async calls overlap),
# or, outside a secure context where crypto.subtle is missing, a small inline
# SHA-256. It finds the smallest nonce, as docs/CHALLENGE.md specifies.
_SCRIPT = r"""
(function () {
  var el = document.querySelector('meta[name="shieldwall-challenge"]');
  var m = JSON.parse(el.getAttribute('content'));
  var enc = new TextEncoder();
  function zeros(b) {
    var n = 0;
    for (var i = 0; i < b.length; i++) {
      if (b[i] === 0) { n += 8; continue; }
      return n + Math.clz32(b[i]) - 24;
    }
    return n;
  }
  var K = [];
  (function () {
    var p = 2, c = 0;
    while (c < 64) {
      var q = true;
      for (var d = 2; d * d <= p; d++) { if (p % d === 0) { q = false; break; } }
      if (q) { K.push((Math.pow(p, 1 / 3) % 1) * 4294967296 | 0); c++; }
      p++;
    }
  })();
  function sha256(bytes) {
    var H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var len = bytes.length, total = ((len + 9 + 63) >> 6) << 6;
    var buf = new Uint8Array(total); buf.set(bytes); buf[len] = 0x80;
    var bits = len * 8;
    buf[total - 4] = bits >>> 24; buf[total - 3] = bits >>> 16;
    buf[total - 2] = bits >>> 8; buf[total - 1] = bits;
    var W = new Int32Array(64);
    for (var o = 0; o < total; o += 64) {
      for (var t = 0; t < 16; t++) {
        W[t] = buf[o + 4 * t] << 24 | buf[o + 4 * t + 1] << 16 | buf[o + 4 * t + 2] << 8 | buf[o + 4 * t + 3];
      }
      for (t = 16; t < 64; t++) {
        var x = W[t - 15], y = W[t - 2];
        var s0 = (x >>> 7 | x << 25) ^ (x >>> 18 | x << 14) ^ (x >>> 3);
        var s1 = (y >>> 17 | y << 15) ^ (y >>> 19 | y << 13) ^ (y >>> 10);
        W[t] = W[t - 16] + s0 + W[t - 7] + s1 | 0;
      }
      var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
      for (t = 0; t < 64; t++) {
        var S1 = (e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7);
        var t1 = h + S1 + (e & f ^ ~e & g) + K[t] + W[t] | 0;
        var S0 = (a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10);
        var t2 = S0 + (a & b ^ a & c ^ b & c) | 0;
        h = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
      }
      H[0] = H[0] + a | 0; H[1] = H[1] + b | 0; H[2] = H[2] + c | 0; H[3] = H[3] + d | 0;
      H[4] = H[4] + e | 0; H[5] = H[5] + f | 0; H[6] = H[6] + g | 0; H[7] = H[7] + h | 0;
    }
    var out = new Uint8Array(32);
    for (var i = 0; i < 8; i++) {
      out[4 * i] = H[i] >>> 24; out[4 * i + 1] = H[i] >>> 16;
      out[4 * i + 2] = H[i] >>> 8; out[4 * i + 3] = H[i];
    }
    return out;
  }
  function done(n) {
    location.replace(m.verify + '?c=' + encodeURIComponent(m.challenge) + '&n=' + n +
                     '&r=' + encodeURIComponent(m.redirect));
  }
  var pre = m.challenge + ':';
  if (window.crypto && crypto.subtle && crypto.subtle.digest) {
    var B = 512;
    (function batch(n) {
      var ps = [];
      for (var i = 0; i < B; i++) ps.push(crypto.subtle.digest('SHA-256', enc.encode(pre + (n + i))));
      Promise.all(ps).then(function (rs) {
        for (var i = 0; i < B; i++) {
          if (zeros(new Uint8Array(rs[i])) >= m.difficulty) { done(n + i); return; }
        }
        batch(n + B);
      });
    })(0);
  } else {
    var n = 0;
    (function slice() {
      var stop = n + 20000;
      for (; n < stop; n++) {
        if (zeros(sha256(enc.encode(pre + n))) >= m.difficulty) { done(n); return; }
      }
      setTimeout(slice, 0);
    })();
  }
})();
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<meta name="shieldwall-challenge" content="{meta}">
{nojs_head}<title>One moment…</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}</style>
</head><body>
<h1>One moment…</h1>
<p>The shop is protecting itself from automated traffic. Your browser is
doing a small calculation; you will be taken on in about a second.</p>
<noscript><p>This check needs JavaScript. Without it, {nojs_body}</p></noscript>
<script>{script}</script>
</body></html>
"""


def challenge_page(challenge: str, difficulty: int, redirect_to: str, verify_path: str,
                   nojs_delay: float | None, note: str = "",
                   quote_fn: Callable[..., str] = quote) -> bytes:
    """The page built from scratch (any target). ``quote_fn`` lets
    :class:`ChallengePages` mark where the URL-quoted forms go."""
    meta = json.dumps({"challenge": challenge, "difficulty": difficulty,
                       "verify": verify_path, "redirect": redirect_to},
                      separators=(",", ":"))
    if nojs_delay is not None:
        qt = _QTARGET_MARK if redirect_to == _TARGET_MARK else quote_fn(redirect_to)
        url = html.escape(f"{verify_path}?c={quote_fn(challenge)}&nojs=1&r={qt}")
        wait = math.ceil(nojs_delay)
        nojs_head = f'<noscript><meta http-equiv="refresh" content="{wait};url={url}"></noscript>\n'
        nojs_body = (f'this page continues by itself after {wait} seconds, or follow '
                     f'<a href="{url}">this link</a> after {wait} seconds.')
    else:
        nojs_head = ""
        nojs_body = "please enable JavaScript for this shop and reload the page."
    p = _PARTS
    page = "".join((p[0], html.escape(meta, quote=True), p[1], nojs_head, p[2],
                    f"<p>{html.escape(note)}</p>\n" if note else "", p[3], nojs_body, p[4]))
    return build(403, page.encode(), content_type="text/html; charset=utf-8")


def _split_page() -> tuple[str, ...]:
    """The page cut around its variable parts once, so a challenge costs one join."""
    marks = ("\0meta\0", "\0nojs_head\0", "\0note\0", "\0nojs_body\0")
    text = _PAGE.replace("<h1>One moment…</h1>\n", "<h1>One moment…</h1>\n{note}").format(
        meta=marks[0], nojs_head=marks[1], note=marks[2], nojs_body=marks[3], script=_SCRIPT)
    parts = []
    for m in marks:
        head, _, text = text.partition(m)
        parts.append(head)
    parts.append(text)
    return tuple(parts)


_PARTS: Final = _split_page()


_PLAIN_TARGET: Final = re.compile(r"[A-Za-z0-9_.~/?=&-]*")
"""Targets whose JSON, HTML and URL forms follow from three replacements."""
_PLAIN_TOKEN: Final = re.compile(r"[A-Za-z0-9_.-]*")
# Marks that JSON, HTML escaping and the template leave as they are.
_TOKEN_MARK: Final = "{{sw-token}}"
_TARGET_MARK: Final = "{{sw-target}}"
_QTARGET_MARK: Final = "{{sw-qtarget}}"
_PAGE_HEAD: Final = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
_PAGE_TAIL: Final = b"\r\nCache-Control: no-store\r\n\r\n"


_TOKEN_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
_PLAIN: Final = bytes(1 if chr(c) in _TOKEN_CHARS + "~/" else 2 if c == 63 else 4 if c == 61
                      else 8 if c == 38 else 0 for c in range(256))
"""Per byte: 1 in :data:`_PLAIN_TARGET`'s alphabet and the same in every form,
2 '?', 4 '=', 8 '&' (in it, and replaced in some form), 0 not in it."""


def _plain_target(target: bytes) -> int:
    """0 if ``target`` is not made of :data:`_PLAIN_TARGET`'s alphabet, else
    1 with 2 added if it holds a '?', 4 a '=' and 8 a '&' (so a page makes
    only the replacements its target needs). A loop over the bytes:
    compiled, cheaper than a regex or bytes method call."""
    kind = 1
    for i in range(len(target)):
        k = _PLAIN[target[i]]
        if k == 0:
            return 0
        kind |= k
    return kind


class _Template:
    """A page cut around its variable parts (see ChallengePages)."""

    __slots__ = ("first", "fixed", "layout", "n_quoted", "n_target", "n_token", "nojs_delay",
                 "parts", "pieces", "slots")

    def __init__(self, pieces: list[bytes], slots: list[int], nojs_delay: float | None) -> None:
        self.pieces = pieces
        self.slots = slots
        """What goes between pieces i and i+1: 0 the token, 1 the target, 2 the quoted target."""
        parts = [_PAGE_HEAD, b"", _PAGE_TAIL, pieces[0]]
        for piece in pieces[1:]:
            parts += [b"", piece]
        self.parts = parts
        """The whole response with empty places: the length at 1, slot i's at 4 + 2i
        (a page copies this list and fills them in)."""
        self.fixed = sum(len(p) for p in pieces)
        self.n_token = slots.count(0)
        self.n_target = slots.count(1)
        self.n_quoted = slots.count(2)
        self.nojs_delay = nojs_delay
        self.first = _PAGE_TAIL + pieces[0]
        """The head's end and the body's first piece, one part of the join."""
        self.layout = 1 if slots == [0, 1, 0, 2, 0, 2] else 2 if slots == [0, 1] else 0
        """1: the page with a no-JS way (token, target, then token and quoted
        target twice), 2: without it (token, target), 0: another; 1 and 2 are
        joined from a list made at once, not a copy of ``parts`` filled in."""


class ChallengePages:
    """The challenge page prebuilt: per (difficulty, no-JS delay, note) the
    page is built once around marks and cut there, so a challenge costs one
    join of its bytes with the token and the target (the only parts that
    vary). Byte for byte what :func:`challenge_page` builds (tested); a
    target outside a plain URL alphabet goes through it instead."""

    def __init__(self, verify_path: str) -> None:
        self.verify_path = verify_path
        self._templates: dict[tuple[int, float | None, str], _Template] = {}
        self._plain: dict[int, _Template] = {}
        """The templates without a note (every page but a failed answer's), by
        difficulty and whether a no-JS delay is given: an int key."""
        self._sizes: dict[int, bytes] = {}
        """Content-Length values as they are written (a few hundred in use)."""

    def _template(self, difficulty: int, nojs_delay: float | None, note: str) -> _Template:
        if not note:
            hit = self._plain.get(difficulty * 2 + (nojs_delay is None))
            if hit is not None and hit.nojs_delay == nojs_delay:
                return hit
        key = (difficulty, nojs_delay, note)
        found = self._templates.get(key)
        if found is not None:
            return found
        whole = challenge_page(_TOKEN_MARK, difficulty, _TARGET_MARK, self.verify_path,
                               nojs_delay, note, quote_fn=lambda s, safe="/": s)
        body = whole.partition(b"\r\n\r\n")[2].decode()
        pieces: list[bytes] = []
        slots: list[int] = []
        rest = body
        marks = {_TOKEN_MARK: 0, _TARGET_MARK: 1, _QTARGET_MARK: 2}
        while True:
            at = [(rest.find(m), m) for m in marks if rest.find(m) >= 0]
            if not at:
                break
            i, m = min(at)
            pieces.append(rest[:i].encode())
            slots.append(marks[m])
            rest = rest[i + len(m):]
        pieces.append(rest.encode())
        t = _Template(pieces, slots, nojs_delay)
        if len(self._templates) < 256:
            self._templates[key] = t
            if not note:
                self._plain[difficulty * 2 + (nojs_delay is None)] = t
        return t

    def page(self, challenge: str, difficulty: int, redirect_to: str,
             nojs_delay: float | None, note: str = "") -> bytes:
        """The page for a token the shield signed (``challenge``: base64url
        and '.', as :class:`~shieldwall.guard._tokens.Signer` makes them)."""
        token = challenge.encode()
        target = redirect_to.encode()
        # the target made of the plain alphabet: its JSON, HTML and URL forms
        # follow from the replacements below. (The token is the shield's own
        # base64url and '.', which all three forms leave as it is.)
        kind = _plain_target(target)
        if not kind:
            return challenge_page(challenge, difficulty, redirect_to, self.verify_path,
                                  nojs_delay, note)
        t = self._template(difficulty, nojs_delay, note)
        quoted = target
        if kind != 1:
            if t.n_quoted:
                # (the replacements add no '?', '=' or '&': their order is free)
                q = redirect_to
                if kind & 2:
                    q = q.replace("?", "%3F")
                if kind & 4:
                    q = q.replace("=", "%3D")
                if kind & 8:
                    q = q.replace("&", "%26")
                quoted = q.encode()
            if kind & 8:
                target = redirect_to.replace("&", "&amp;").encode()
        size = (t.fixed + t.n_token * len(token) + t.n_target * len(target)
                + t.n_quoted * len(quoted))
        sizes = self._sizes
        length = sizes.get(size)
        if length is None:
            length = str(size).encode()
            if len(sizes) < 4096:
                sizes[size] = length
        p = t.pieces
        if t.layout == 1:
            return b"".join([_PAGE_HEAD, length, t.first, token, p[1], target, p[2], token, p[3],
                             quoted, p[4], token, p[5], quoted, p[6]])
        if t.layout == 2:
            return b"".join([_PAGE_HEAD, length, t.first, token, p[1], target, p[2]])
        parts = t.parts[:]
        parts[1] = length
        i = 4
        for slot in t.slots:
            parts[i] = token if slot == 0 else target if slot == 1 else quoted
            i += 2
        return b"".join(parts)
