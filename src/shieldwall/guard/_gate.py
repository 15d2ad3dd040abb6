"""The decision engine: RequestFacts in, Decision out, from memory alone.

The order of the rules, each of which may run in shadow mode:

1. the guard's own paths (``/.shieldwall/verify``) are answered here;
2. ``block``: the address is on a block list -> 403 and close;
3. the class: allow-listed -> verified; detector or limit suspect -> suspect;
   a signed session the shop marked -> customer; a valid pass token -> verified;
   else unknown;
4. ``limit``: token buckets per address (rate by route class, times a class
   factor) and, for unknown and suspect clients, per network prefix -> 429;
5. ``challenge``: by mode (elevated: suspects, and unknown clients on
   expensive routes; under_attack: every unknown and suspect) unless the
   client holds a pass token of enough difficulty -> the proof-of-work page.

A shadowed rule records what it would have done and the evaluation goes on;
if no enforced rule fires the request goes through with the first shadow
decision (``shadow=True``) so the proxy logs and counts it.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import parse_qs, quote

from shieldwall.guard import _responses as responses
from shieldwall.guard._admission import PriorityAdmission
from shieldwall.guard._net import Identity, IdentityCache
from shieldwall.guard._standing import Conduct, Record, Standing
from shieldwall.guard._state import Bucket, ListEntry, LocalState
from shieldwall.guard._tokens import Signer, b64, cookie_value, pow_ok
from shieldwall.guard.decision import Action, ClientClass, Decision, Mode, RequestFacts
from shieldwall.guard.settings import GuardSettings, RouteClass

log = logging.getLogger("shieldwall.guard")

VERIFY_PATH: Final = "/.shieldwall/verify"
OWN_PREFIX: Final = "/.shieldwall/"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_CHALLENGE_REUSE: Final = 0.5
"""Seconds a prefix's challenge is handed out again (see GuardGate._recent_challenges)."""
_KEPT_PAGES: Final = 1024
"""Challenge pages kept for their prefix's next request (see GuardGate._kept_pages)."""
_EARLY_SECONDS: Final = 10.0
"""How long after a refusal an address's requests are decided from their first bytes."""
# Enum members as Final constants: compiled, a C static each instead of an
# attribute lookup on the enum class at every use in a decision.
_NORMAL: Final = Mode.NORMAL
_UNDER_ATTACK: Final = Mode.UNDER_ATTACK
_SUSPECT: Final = ClientClass.SUSPECT
_UNKNOWN: Final = ClientClass.UNKNOWN
_VERIFIED: Final = ClientClass.VERIFIED
_CUSTOMER: Final = ClientClass.CUSTOMER
_ALLOW: Final = Action.ALLOW
_WALL: Final = time.time
"""The clock a caller's ``now`` is read from (see GuardGate.decide)."""
_CHALLENGE: Final = Action.CHALLENGE
_HEAVY: Final = Standing.HEAVY


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    rate: float
    burst: float
    expensive: bool
    checkout: bool
    asset: bool = False


_VERIFY_ROUTE: Final = _Route("verify", rate=1.0, burst=10.0, expensive=False, checkout=False)
"""Answers to challenges: ten at once, then one a second per address (and its prefixes)."""


@dataclass(slots=True)
class _Lists:
    version: int
    expires: float
    """Recompute at this time (an entry it relied on runs out)."""
    ban: ListEntry | None
    allowed: bool


def _secret(settings: GuardSettings) -> bytes:
    if settings.secret is not None and settings.secret.get_secret_value():
        return settings.secret.get_secret_value().encode()
    env = os.environ.get("SHIELDWALL_GUARD_SECRET", "")
    if env:
        return env.encode()
    return secrets.token_bytes(32)


class _Tokens:
    """What a Cookie header's shield tokens say, verified and parsed once
    (see GuardGate._tokens_of): the numbers as numbers, so a returning
    browser's request parses no field."""

    __slots__ = ("cust_until", "has_pass", "issued", "pass_bits", "pass_prefix", "pass_until",
                 "session", "sid")

    def __init__(self, pf: tuple[str, ...] | None, sf: tuple[str, ...] | None) -> None:
        self.has_pass = pf is not None
        """A genuine pass token came (its time not checked yet)."""
        self.pass_prefix = ""
        self.pass_until = 0.0
        self.pass_bits = -1
        if pf is not None:
            self.pass_prefix = pf[1]
            self.pass_until = float(pf[2])
            self.pass_bits = int(pf[3])
        self.session = sf is not None
        """A genuine session token came."""
        self.sid = ""
        self.issued = 0.0
        self.cust_until = 0.0
        if sf is not None:
            self.sid = sf[1]
            self.issued = float(sf[2])
            self.cust_until = float(sf[3])


_NO_TOKENS: Final = _Tokens(None, None)


class _Spend:
    """One bucket a request takes a token from: its key, rate and burst, and
    the bucket itself once made (valid while ``state.bucket_gen`` is what it
    was then: a sweep or a Redis sync may drop or set buckets)."""

    __slots__ = ("bucket", "burst", "key", "rate")

    def __init__(self, key: str, rate: float, burst: float) -> None:
        self.key = key
        self.rate = rate
        self.burst = burst
        self.bucket: Bucket | None = None


class _Spends:
    """The buckets of one (route, class, address, session)."""

    __slots__ = ("gen", "items")

    def __init__(self, items: list[_Spend], gen: int) -> None:
        self.items = items
        self.gen = gen


class _Last(_Spends):
    """What the gate keeps of an address's last request (issue 10: cheap
    refusal, issue 11: less per request): the buckets it took from, so the
    next request of the same route, class and session reads them without
    building or hashing a key, and its last 429, so a client over its limit
    is refused without a new lookup. The buckets are still read, refilled
    and tested on every request (a neighbour spending a shared prefix
    bucket, a sweep, a Redis sync all show at once); every rule before the
    limit (bans, allow-lists, class, mode) is decided per request as ever.

    It is the _Spends of that request itself (its ``items`` may be shared
    with the _Spends kept for its route, class and session in
    GuardGate._bucket_keys; each has its own ``gen``): a new address's
    request makes one object fewer for the collector."""

    __slots__ = ("allow", "allow_session", "allow_standing", "clean_gen", "cls", "cookie",
                 "decision", "early", "path", "route", "secs", "sid", "tokens")

    def __init__(self, route: _Route, cls: ClientClass, sid: str, items: list[_Spend],
                 gen: int) -> None:
        self.items = items
        self.gen = gen
        self.cookie = ""
        self.tokens = _NO_TOKENS
        """Its Cookie header and what _tokens_of made of it: a browser sends the
        same header each time, compared here without hashing it."""
        self.route = route
        self.path = ""
        """The path of the request this memo was last used for (of ``route``):
        the next request of the address on the same path finds its route here
        (compared by value, ~30 instructions against the route cache's probe
        and the own-prefix test, ~230)."""
        self.cls = cls
        self.sid = sid
        self.secs = 0
        self.decision: Decision | None = None
        """The 429 for ``secs`` whole seconds (the last one made for this address)."""
        self.early = 0.0
        """Until when this address was last put in GuardGate._refusing."""
        self.clean_gen = -1
        """The guard state's ``suspects_gen`` at which this address was no suspect."""
        self.allow: Decision | None = None
        self.allow_standing = Standing.UNSET
        self.allow_session = False
        """The allowed decision last given here (of this _Last's class), and
        the standing and session it was for: the next one of the same is that
        object again, without the int key and its dict probe (~240 instructions)."""


class _Recent:
    """A challenge token issued to a prefix at a difficulty, and the last
    page made with it (handed out again while the token is reused). A
    prefix's tokens of other difficulties hang on ``older`` (a chain, not a
    list: nearly every prefix has one, and a new network's page then makes
    one object fewer for the collector)."""

    __slots__ = ("at", "bits", "cls", "decision", "older", "target", "token")

    def __init__(self, bits: int, at: float, token: str) -> None:
        self.bits = bits
        self.at = at
        self.token = token
        self.cls = _UNKNOWN
        self.target = ""
        self.decision: Decision | None = None
        self.older: _Recent | None = None


class _Base:
    """The signed part of the challenges of one difficulty (see prefix_tag)."""

    __slots__ = ("at", "text")

    def __init__(self, at: float, text: str) -> None:
        self.at = at
        self.text = text


def prefix_tag(ident: Identity) -> str:
    """The prefix part of a challenge, in base64url's alphabet (no '.', which
    ends the signed part): "198_51_100_0_24", "2001-db8-aa-bb01--_64".

    A challenge is ``signed "." tag``: ``signed`` is a token over
    ``2|issue time|difficulty|count``, one per difficulty per half second,
    and ``tag`` the client's prefix. The proof of work is over the whole
    challenge, tag included, and the answer is taken only from the prefix of
    its tag: a solution is bound to its network as when the prefix was inside
    the signature, and one signature serves every network that comes in that
    half second (a flood from new networks made one HMAC each, a third of
    such a challenge's cost). Putting another network's tag on a signed part
    buys nothing: it must be solved again, and redeemed from that network,
    where asking for a challenge costs one request. Any client text that is
    not an address is base64url after an "x", which no address tag has."""
    if ident.version == 4:
        return ident.bind_prefix.replace(".", "_").replace("/", "_")
    if ident.version == 6:
        return ident.bind_prefix.replace(":", "-").replace("/", "_")
    return "x" + b64(ident.bind_prefix.encode())


class _ShadowLog:
    """Logs what a shadowed rule would have done, at most once a second per rule."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def note(self, rule: str, facts: RequestFacts, now: float) -> None:
        if now - self._last.get(rule, -math.inf) >= 1.0:
            held = self._held.pop(rule, 0)
            log.info("shadow: rule %s would have acted on %s %s %s (and %d more since last line)",
                     rule, facts.client, facts.method, facts.path, held)
            self._last[rule] = now
        else:
            self._held[rule] = self._held.get(rule, 0) + 1


class GuardGate:
    """Implements :class:`shieldwall.guard.decision.Gate`. Never blocks, never awaits."""

    def __init__(self, settings: GuardSettings, state: LocalState,
                 clock: Callable[[], float] = time.time, secret: bytes | None = None) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self._counts: dict[str, int] = {}
        self._n_allow = 0
        self._n_limit = 0
        self._n_challenge = 0
        """The counters of most requests (and of every challenge in a flood),
        as native ints (folded into ``counts`` when it is read): a dict update
        was ~550 instructions."""
        self._ids = IdentityCache(settings.ipv4_prefixes, settings.ipv6_prefixes)
        self.ids_gen = 0
        """Counts new identity caches (forget_last): an :meth:`identity` a caller
        kept from an older one holds memos this gate dropped, so ask again."""
        self.refusing_gen = 0
        """Counts additions to the early-refusal window (_remember): only those
        turn :meth:`early_wanted` from False to True in normal mode, so a caller
        that had False at this count may take it as False again."""
        self._canned = responses.Canned()
        self._pages = responses.ChallengePages(VERIFY_PATH)
        self._recent_challenges: dict[str, _Recent] = {}
        """The challenge last issued per prefix and difficulty: reused for half a
        second (its last page too, when the next request has the same
        target). Its signed part is shared by every prefix (one signature per
        difficulty per half second, see prefix_tag). Nothing is given away:
        the pass a solved challenge buys is bound to that prefix, and any of
        its challenges can be redeemed until it expires anyway."""
        self._kept_pages: list[_Recent | None] = [None] * _KEPT_PAGES
        self._kept_at = 0
        """The _Recent entries whose last page is kept (a ring: the oldest one's
        page is dropped for a new one). A page is 6 kB; kept for every prefix
        a flood comes from, 65,536 prefixes held 400 MB, and each new page
        was fresh memory the kernel had to fault in (5-7 us a page at load 8,
        most of a new network's challenge). A page dropped makes room for the
        next one; a prefix whose page went is answered with one made again."""
        self._nonce = random.Random(os.urandom(16)).getrandbits(48)
        """Makes each signed part distinct: a count from a random start (its
        MAC no one can compute without the secret, so the count need not be
        unpredictable, only new)."""
        self._bases: dict[int, _Base] = {}
        """The signed part of the challenges of each difficulty (prefix_tag)."""
        self._challenge_reasons = {b: f"challenge:{b}" for b in range(33)}
        ch = settings.challenge
        self._nojs = ch.nojs
        self._nojs_delay = ch.nojs_delay
        self._difficulty = ch.difficulty
        self._suspect_extra = ch.suspect_extra
        self._under_attack_extra = ch.under_attack_extra
        """The challenge settings read per decision, as native fields (an
        attribute of the settings model is a Python lookup each)."""
        self._shadow = frozenset(settings.shadow)
        self._shadow_block = "block" in self._shadow
        self._shadow_limit = "limit" in self._shadow
        self._shadow_challenge = "challenge" in self._shadow
        """Which rules are in shadow mode, as native flags (read per decision)."""
        self._refusing: dict[str, float] = {}
        """Addresses refused lately, until when (see early_wanted); bounded."""
        self._shadow_log = _ShadowLog()
        self._clean_lists = _Lists(-1, math.inf, None, False)
        """What _lists_for gives every address on no list (shared, never changed)."""
        lim = settings.limits
        self._class_factor = {c: lim.class_factor.get(c.label, 1.0) for c in ClientClass}
        self._prefix_factor = {int(k): v for k, v in lim.prefix_factor.items()}
        self._strike_rate = lim.strikes_to_suspect / lim.strike_window
        self._shared_factor = lim.shared_address_factor
        self._by_session = False
        """Set by ``_take``: the limit that refused the request was one session's
        own bucket (not its address's), so the address takes no strike."""
        self._routes = [self._route(r) for r in lim.routes]
        self._default_route = self._route(lim.default_route)
        alts = []
        for i, r in enumerate(lim.routes):
            pats = "|".join(fnmatch.translate(p) for p in r.match) or "(?!)"
            alts.append(f"(?P<r{i}>{pats})")
        self._route_re = re.compile("|".join(alts)) if alts else None
        self._route_cache: dict[str, _Route] = {}
        self._block_decision = Decision(Action.BLOCK, _SUSPECT, reason="block",
                                        response=self._canned.block, close=True)
        self._limit_decisions: dict[str, dict[int, Decision]] = {}
        """Per route, per (whole seconds, class)."""
        self._bucket_keys: dict[tuple[str, ClientClass, str, str], _Spends] = {}
        self._allow_decisions: dict[int, Decision] = {
            _allow_key(c, p, sess): Decision(_ALLOW, c, reason="allow", priority=p, session=sess)
            for c in ClientClass for p in Standing for sess in (False, True)
        }
        """By _allow_key (an int: a tuple key was built and hashed per request)."""
        adm = settings.admission
        self.conduct = Conduct(adm.history, adm.heavy_pages,
                               newcomers=settings.challenge.newcomers,
                               newcomers_window=settings.challenge.newcomers_window)
        """What each client did: its standing in the admission queue (_standing.py)."""
        self.pressure: Callable[[], bool] | None = None
        """True while a backend is overloaded: then a client that has shown no
        browser conduct is challenged, whatever the mode, instead of queueing
        with the flood that overloads it. Left None, ``admission``'s
        is asked (called natively: a call through this attribute is ~170
        instructions a request); set, it is asked instead (tests)."""
        self.admission: PriorityAdmission | None = None
        """The admission whose pressure() the gate asks (the runtime wires it)."""
        self._customer_cookie = settings.customer_cookie.encode() + b"="
        self._customer_header = settings.customer_header.encode()
        self._session_ttl = settings.session_ttl
        self._customer_ttl = settings.customer_ttl
        """(read per proxied response, as native fields)"""
        self.set_secret(secret if secret is not None else _secret(settings))

    def set_secret(self, secret: bytes) -> None:
        """Install the HMAC key (the runtime may share one through Redis at start)."""
        self._session = Signer(secret, "session")
        self._challenge = Signer(secret, "challenge")
        self._pass = Signer(secret, "pass")
        self._cookie_tokens: dict[str, _Tokens] = {}
        self.forget_last()  # (their tokens were verified with the old key)

    def forget_last(self) -> None:
        """Drop what is kept of every address's last request (its _Last, on
        its Identity: the identity cache is made anew, the lists memo with it)."""
        s = self.settings
        self._ids = IdentityCache(s.ipv4_prefixes, s.ipv6_prefixes)
        self.ids_gen += 1

    @staticmethod
    def _route(r: RouteClass) -> _Route:
        asset = r.name == "static" if r.asset is None else r.asset
        return _Route(r.name, r.rate, r.burst, r.expensive, r.checkout, asset)

    @property
    def counts(self) -> dict[str, int]:
        """What the gate did, by kind ("allow", "limit", "block", ...)."""
        c = self._counts
        n = self._n_allow
        if n:
            self._n_allow = 0
            c["allow"] = c.get("allow", 0) + n
        n = self._n_limit
        if n:
            self._n_limit = 0
            c["limit"] = c.get("limit", 0) + n
        n = self._n_challenge
        if n:
            self._n_challenge = 0
            c["challenge"] = c.get("challenge", 0) + n
        return c

    def _count(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def _refused(self, key: str, address: str, now: float) -> None:
        """Count an enforced refusal and remember its address for a while:
        its next requests are decided from their first bytes (early_wanted)."""
        self._count(key)
        self._remember(address, now + _EARLY_SECONDS)

    def _remember(self, address: str, until: float) -> None:
        self.refusing_gen += 1
        refusing = self._refusing
        if len(refusing) >= 65536:
            refusing.clear()
        refusing[address] = until

    def early_wanted(self, address: str) -> bool:
        """Whether the proxy should decide on a request from ``address`` from
        its first bytes (request line, Cookie) before parsing the rest: while
        the mode is not normal, and for a while after a refusal of that
        address. Elsewhere a shopper's request costs no extra scan. The
        decision is the same either way (``decide`` on the same facts)."""
        if self.state.mode is not _NORMAL:
            return True
        until = self._refusing.get(address)
        return until is not None and until > self.clock()

    def refusing(self, address: str) -> bool:
        """Whether ``address`` was refused lately (the early window of
        early_wanted, whatever the mode): the proxy then peeks at a new
        connection's first request and answers a refusal on the bare socket
        (shieldwall.proxy.server.ClientConnection.answer_peeked)."""
        until = self._refusing.get(address)
        return until is not None and until > self.clock()

    def refused_at_accept(self, address: str) -> bool:
        """Whether a connection from ``address`` (the client itself, not a
        trusted proxy) is closed at accept: a banned address, unless the block
        rule is in shadow mode. Nothing it could send would be answered but
        with a 403, so it gets no transport, no parser and no request."""
        if "block" in self._shadow:
            return False
        now = self.clock()
        try:
            ident = self._ids.get(address)
        except ValueError:
            return False
        ban = self._lists_for(ident, now).ban
        if ban is not None and ban.until > now:
            self._count("block:accept")
            return True
        return False

    def retract(self, d: Decision) -> None:
        """Take back the count of an enforced refusal the proxy did not send:
        the early path decided on a request llhttp then found malformed (the
        framer answers it with its own 4xx). The limit's strike and the early
        window stay: its client is hammering either way."""
        if not d.enforced:
            return
        if d.action is Action.LIMIT:
            self._n_limit -= 1
            return
        if d.action is _CHALLENGE and self._n_challenge > 0:
            self._n_challenge -= 1
            return
        key = "block" if d.action is Action.BLOCK else "challenge" \
            if d.action is _CHALLENGE else ""
        n = self._counts.get(key, 0) if key else 0
        if n > 0:
            self._counts[key] = n - 1

    # -- the decision ------------------------------------------------------

    def identity(self, client: str) -> Identity:
        """Who ``client`` is to this gate: what a connection keeps and hands
        back to :meth:`decide` and :meth:`observe_response` for each of its
        requests (its address does not change; a probe of the identity cache
        is ~170 instructions, two a request)."""
        return self._ids.get(client)

    def decide(self, facts: RequestFacts, now: float = -1.0,
               ident: Identity | None = None) -> Decision:
        """``now``: the caller's reading of ``time.time`` for this request (the
        proxy reads it once per request for its log), used only while this
        gate's clock is ``time.time``: a clock call is ~180 instructions and a
        request asked for it in ``decide`` and again in ``observe_response``.
        ``ident``: :meth:`identity` of ``facts.client``, when the caller kept it."""
        if now < 0.0 or self.clock is not _WALL:
            now = self.clock()
        d = self._decide(facts, now, ident if ident is not None else self._ids.get(facts.client))
        if facts.method != "GET" and d.response is not None and d.enforced:
            if facts.method == "HEAD":
                return replace(d, response=responses.head_only(d.response))
            if facts.method in _BODY_METHODS and not d.close:
                # the body was not read: do not leave it to be parsed as a request
                return replace(d, response=responses.with_close(d.response), close=True)
        return d

    def _decide(self, facts: RequestFacts, now: float, ident: Identity) -> Decision:
        path = facts.path
        kept_last = ident.last  # (our IdentityCache's identities only: see Identity.last)
        last = kept_last if isinstance(kept_last, _Last) else None
        if last is not None and last.path == path:
            route = last.route  # (the address's last path again: not the shield's own)
        else:
            if path.startswith(OWN_PREFIX):
                return self._own(facts, now)
            route = self._route_of(path)
        lists = self._lists_for(ident, now)
        shadowed: Decision | None = None

        if lists.ban is not None and lists.ban.until > now:
            d = self._block_decision
            if not self._shadow_block:
                self._refused("block", ident.address, now)
                return d
            shadowed = self._shadowed(d, "block", facts, now)

        cookie = facts.cookie
        if not cookie:
            tokens = _NO_TOKENS
        elif last is not None and last.cookie == cookie:
            tokens = last.tokens
        else:
            tokens = self._tokens_of(cookie)
        cls, pass_bits, session = self._classify(tokens, ident, lists, now, last)

        sid = self._sid(tokens)
        if last is None or last.route is not route or last.cls is not cls or last.sid != sid:
            if last is None:
                # (see _spends: an address without a _Last needs no _bucket_keys entry)
                last = _Last(route, cls, sid, self._spend_items(route, ident, cls, sid),
                             self.state.bucket_gen)
            else:
                had = self._spends(route, ident, cls, sid)
                last = _Last(route, cls, sid, had.items, had.gen)
            ident.last = last
        last.cookie = cookie
        last.tokens = tokens
        last.path = path
        wait = self._take(last, now, sid)
        if wait > 0.0:
            if not self._by_session:
                self._strike(ident, now)
            secs = int(wait)  # responses.retry_after_seconds, on native numbers
            if secs < wait:
                secs += 1
            if secs < 1:
                secs = 1
            kept = last.decision
            if kept is None or last.secs != secs:
                kept = last.decision = self._limit_decision(cls, route, float(secs))
                last.secs = secs
            d = kept
            if not self._shadow_limit:
                self._n_limit += 1
                early = now + _EARLY_SECONDS
                if early - last.early > 1.0:  # (refreshed once a second, not per refusal)
                    last.early = early
                    self._remember(ident.address, early)
                return d
            sd = self._shadowed(d, "limit", facts, now)
            shadowed = shadowed or sd

        pressed = -1  # self.pressure(), asked at most once a request (-1: not yet)
        conduct = self.conduct
        # The address's conduct record, looked up once for proven, the checks
        # and _standing (None: never seen, or forgotten; admits, surge_checks
        # or see make it, and see looks again for one they made)
        rec = conduct.records.get(ident.address)
        if not lists.allowed and (cls is _UNKNOWN or cls is _SUSPECT):  # (cls <= UNKNOWN,
            # without the generic comparison of two IntEnum members)
            mode = self.state.mode
            strict = mode is not _NORMAL and (
                mode is _UNDER_ATTACK or cls is _SUSPECT or route.expensive)
            if not strict and (rec is None or rec.followed <= 0):  # not conduct.proven
                pressed = 1 if self._pressure() else 0
            if strict or pressed == 1:
                need = self.required_bits(cls, mode)
                if pass_bits < need and cls is _UNKNOWN and \
                        conduct.admits(ident.address, route.asset, now, rec):
                    # a newcomer on the budget, or a browser on trial: no check
                    self._count("newcomer")
                elif pass_bits < need:
                    d = self._challenged(facts, ident, cls, need, now, "")
                    if not d.shadow:
                        return d
                    shadowed = shadowed or d
            elif cls is _UNKNOWN and pass_bits < self._difficulty \
                    and conduct.surge_checks(ident.address, now, rec):
                # one of a surge of new clients, before any verdict or pressure
                d = self._challenged(facts, ident, cls, self.required_bits(cls, mode), now,
                                    "challenge:surge")
                if not d.shadow:
                    return d
                shadowed = shadowed or d

        standing = self._standing(tokens, ident, cls, route, lists, now, rec)
        if standing is _HEAVY and not lists.allowed:
            normal = self.state.mode is _NORMAL
            if normal and pressed < 0:
                pressed = 1 if self._pressure() else 0
            if not normal or pressed == 1:
                # Pages at a rate nobody clicks, without their assets: a pass does not
                # make that a shopper. Outside normal mode, or while a backend is
                # overloaded, it pays a suspect's challenge before the detector names it.
                need = self.required_bits(_SUSPECT, self.state.mode)
                if pass_bits < need:
                    d = self._challenged(facts, ident, _SUSPECT, need, now, "challenge:heavy")
                    if not d.shadow:
                        return d
                    shadowed = shadowed or d
        if shadowed is not None:
            return shadowed
        self._n_allow += 1
        if last.allow_standing is standing and last.allow_session == session:
            kept_allow = last.allow
            if kept_allow is not None:
                return kept_allow
        allow = self._allow_decisions[_allow_key(cls, standing, session)]
        last.allow = allow
        last.allow_standing = standing
        last.allow_session = session
        return allow

    def _pressure(self) -> bool:
        """See ``pressure``."""
        p = self.pressure
        if p is None:
            adm = self.admission
            return adm is not None and adm.pressure()
        return p()

    def _challenged(self, facts: RequestFacts, ident: Identity, cls: ClientClass, need: int,
                    now: float, kind: str) -> Decision:
        """The challenge page for this request: enforced (counted as a refusal,
        and under ``kind`` too when given), or its shadow when the challenge
        rule is in shadow mode (``shadow=True``: the caller goes on)."""
        d = self._challenge_decision(facts, ident, cls, need, now)
        if self._shadow_challenge:
            return self._shadowed(d, "challenge", facts, now)
        self._n_challenge += 1
        self._remember(ident.address, now + _EARLY_SECONDS)
        if kind:
            self._count(kind)
        return d

    def _standing(self, tokens: _Tokens, ident: Identity, cls: ClientClass, route: _Route,
                  lists: _Lists, now: float, rec: Record | None) -> Standing:
        """Rank for admission from the class and what this client did (_standing.py)."""
        conduct = self.conduct
        rec = conduct.see(ident.address, route.asset, now, rec)
        age = now - tokens.issued if tokens.session else -1.0
        return conduct.standing(cls, rec, now, checkout=route.checkout, allowed=lists.allowed,
                                session_age=age)

    def _limit_decision(self, cls: ClientClass, route: _Route, wait: float) -> Decision:
        """Prebuilt per (class, route, whole seconds): a 429 costs no allocation."""
        secs = int(wait)  # responses.retry_after_seconds, on native numbers
        if secs < wait:
            secs += 1
        if secs < 1:
            secs = 1
        by_route = self._limit_decisions.get(route.name)
        if by_route is None:
            by_route = self._limit_decisions[route.name] = {}
        c: int = cls
        key = secs * 4 + c  # (an int key: a tuple's was built and hashed per refusal)
        d = by_route.get(key)
        if d is None:
            d = Decision(Action.LIMIT, cls, retry_after=float(secs),
                         reason="limit:" + route.name, response=self._canned.limit(secs))
            if len(by_route) < 65536:
                by_route[key] = d
        return d

    def _shadowed(self, d: Decision, rule: str, facts: RequestFacts, now: float) -> Decision:
        self._count("shadow:" + rule)
        self._shadow_log.note(rule, facts, now)
        return Decision(d.action, d.cls, d.retry_after, d.reason, True, d.response, d.close)

    def required_bits(self, cls: ClientClass, mode: Mode) -> int:
        bits = self._difficulty
        if cls is _SUSPECT:
            bits += self._suspect_extra
        if mode is _UNDER_ATTACK:
            bits += self._under_attack_extra
        return min(bits, 28)  # clients refuse more (docs/CHALLENGE.md)

    def _lists_for(self, ident: Identity, now: float) -> _Lists:
        st = self.state
        hit = ident.lists  # (our IdentityCache's identities only: see Identity.lists)
        if isinstance(hit, _Lists) and hit.version == st.version and now < hit.expires:
            return hit
        v, val = ident.version, ident.value
        ban = st.bans.lookup(v, val) or st.static_block.lookup(v, val)
        allow = st.allows.lookup(v, val)
        allowed = (allow is not None and allow.until > now) or \
            st.static_allow.lookup(v, val) is not None
        if ban is None and allow is None and not allowed:
            # on no list (nearly every client): one shared record per version
            # of the lists, not one made per address
            lists = self._clean_lists
            if lists.version != st.version:
                lists = self._clean_lists = _Lists(st.version, math.inf, None, False)
        else:
            expires = min(ban.until if ban is not None else math.inf,
                          allow.until if allow is not None else math.inf)
            lists = _Lists(st.version, expires, ban, allowed)
        ident.lists = lists
        return lists

    def _classify(self, tokens: _Tokens, ident: Identity, lists: _Lists,
                  now: float, last: _Last | None = None) -> tuple[ClientClass, int, bool]:
        """The class, the difficulty of a valid pass token (-1: none), and
        whether a valid session cookie came with the request. ``last``: the
        address's memo, which keeps the suspects' count (``suspects_gen``) at
        which it was found no suspect (a flood's addresses are marked often;
        the others never, and were probed per request, ~130 instructions)."""
        pass_bits = -1
        if tokens.has_pass and tokens.pass_until > now and (
                tokens.pass_prefix == ident.bind_prefix or tokens.pass_prefix == ident.address):
            pass_bits = tokens.pass_bits
        has_session = tokens.session
        if lists.allowed:
            return _VERIFIED, pass_bits, has_session
        st = self.state
        if last is None or last.clean_gen != st.suspects_gen:
            sus = st.suspects.get(ident.address)
            if sus is not None and sus[1] > now and sus[0] >= self.settings.suspect_score:
                return _SUSPECT, pass_bits, has_session
            if last is not None:
                last.clean_gen = st.suspects_gen
        if has_session and tokens.cust_until > now:
            return _CUSTOMER, pass_bits, True
        if pass_bits >= 0 and pass_bits >= self.required_bits(_UNKNOWN,
                                                              self.state.mode):
            return _VERIFIED, pass_bits, has_session
        return _UNKNOWN, pass_bits, has_session

    def _tokens_of(self, cookie: str) -> _Tokens:
        """The pass token and the session token in a Cookie header, verified
        and parsed (absent, forged or malformed ones: not there), before any
        time check. A browser sends the same header on every request, and
        ``decide`` and ``observe_response`` both need it: memoised per
        header, so a request costs one dict probe instead of three scans,
        two verifies and the fields' parsing. Bounded (headers over 1 KiB are
        not kept; cleared when full) and emptied with a new secret."""
        cache = self._cookie_tokens
        hit = cache.get(cookie)
        if hit is not None:
            return hit
        token = cookie_value(cookie, self.settings.pass_cookie)
        pf = self._pass.verify(token) if token else None
        if pf is not None and len(pf) != 5:
            pf = None
        token = cookie_value(cookie, self.settings.session_cookie)
        sf = self._session.verify(token) if token else None
        if sf is not None and len(sf) != 4:
            sf = None
        try:
            got = _Tokens(pf, sf)
        except ValueError:  # fields that are not numbers: never signed by this shield
            got = _NO_TOKENS
        if len(cookie) <= 1024:
            if len(cache) >= 4096:
                cache.clear()
            cache[cookie] = got
        return got

    def _route_of(self, path: str) -> _Route:
        hit = self._route_cache.get(path)
        if hit is not None:
            return hit
        route = self._default_route
        if self._route_re is not None:
            m = self._route_re.match(path)
            if m is not None and m.lastgroup is not None:
                route = self._routes[int(m.lastgroup[1:])]
        if len(self._route_cache) >= 16384:
            self._route_cache.clear()
        self._route_cache[path] = route
        return route

    # -- token buckets -----------------------------------------------------

    def _sid(self, tokens: _Tokens) -> str:
        """The session id the limits count this request under ("" = its address)."""
        if tokens.session and self._shared_factor > 1.0:
            return tokens.sid
        return ""

    def _spends(self, route: _Route, ident: Identity, cls: ClientClass, sid: str) -> _Spends:
        """The buckets a request of this route, class, address and session
        takes from (see _take), kept in ``_bucket_keys`` for an address that
        may come back to a route, class or session it had. An address
        without a _Last (new, or its _Last dropped) gets its _Last made from
        _spend_items without building, hashing and storing that key: its
        next request reads them from its _Last (a flood from new addresses
        stored one key per address, used by none). The buckets are the
        store's either way (found by their key in ``state.buckets``)."""
        st = self.state
        ck = (route.name, cls, ident.address, sid)
        spends = self._bucket_keys.get(ck)
        if spends is None:
            if len(self._bucket_keys) >= 65536:
                self._bucket_keys.clear()
            spends = _Spends(self._spend_items(route, ident, cls, sid), st.bucket_gen)
            self._bucket_keys[ck] = spends
        return spends

    def _spend_items(self, route: _Route, ident: Identity, cls: ClientClass,
                     sid: str) -> list[_Spend]:
        """A request's buckets as _Spend entries (the buckets found on first use)."""
        factor = self._class_factor[cls]
        if sid:
            shared = factor * self._shared_factor
            items = [_Spend(f"{route.name}|{ident.address}|{sid}", route.rate * factor,
                            route.burst * factor),
                     _Spend(f"{route.name}|{ident.address}", route.rate * shared,
                            route.burst * shared)]
        else:
            items = [_Spend(f"{route.name}|{ident.address}", route.rate * factor,
                            route.burst * factor)]
        if cls <= _UNKNOWN:
            for plen, net in ident.prefixes:
                pf = self._prefix_factor.get(plen, 16.0)
                items.append(_Spend(f"{route.name}|{net}", route.rate * pf, route.burst * pf))
        return items

    def _take(self, spends: _Spends, now: float, sid: str) -> float:
        """Take one token from every bucket of this request, or none; returns 0.0
        when allowed, else the seconds until a token will be there.

        With a signed session (``sid``) the client is that browser, not its
        address: one address may carry many people (carrier-grade NAT, an
        office proxy), and each of them gets the address's limit in a bucket
        of its own, while the address as a whole gets ``shared_address_factor``
        times it. A client without a session (every flooding tool that drops
        cookies) is limited per address as before; one that mints a session
        per request gains at most that factor, and each new session costs a
        request from the session-less bucket."""
        st = self.state
        gen = st.bucket_gen
        fresh = spends.gen != gen
        if fresh:
            spends.gen = gen
        wait = 0.0
        self._by_session = False
        first = True
        for sp in spends.items:
            b = sp.bucket
            if b is None or fresh:
                # (a bucket dropped or set meanwhile: the store's own, or a new one)
                b = st.buckets.get(sp.key)
                if b is None:
                    b = Bucket(sp.burst, now, sp.burst / sp.rate)
                    st.buckets[sp.key] = b
                sp.bucket = b
            tokens = b.tokens
            if now > b.stamp:
                tokens += (now - b.stamp) * sp.rate
                if tokens > sp.burst:
                    tokens = sp.burst
                b.tokens = tokens
                b.stamp = now
            if tokens < 1.0:
                w = (1.0 - tokens) / sp.rate
                if w > wait:
                    wait = w
                    self._by_session = first and bool(sid)
            first = False
        if wait > 0.0:
            return wait
        for sp in spends.items:
            b = sp.bucket
            assert b is not None
            b.tokens -= 1.0
        pending = st.pending
        if pending is not None:
            for sp in spends.items:
                p = pending.get(sp.key)
                if p is None:
                    pending[sp.key] = [1.0, sp.rate, sp.burst]
                else:
                    p[0] += 1.0
        return 0.0

    def _strike(self, ident: Identity, now: float) -> None:
        """A limit hit; enough of them in the window make the client a suspect."""
        lim = self.settings.limits
        strikes = self.state.strikes
        b = strikes.get(ident.address)  # (keyed by the address itself: no key to build)
        if b is None:
            burst = float(lim.strikes_to_suspect)
            b = Bucket(burst, now, lim.strike_window)
            strikes[ident.address] = b
        tokens = b.tokens
        if now > b.stamp:
            tokens += (now - b.stamp) * self._strike_rate
        burst = float(lim.strikes_to_suspect)
        if tokens > burst:
            tokens = burst
        tokens -= 1.0
        b.tokens = tokens
        b.stamp = now
        if tokens < 0.0:
            self.state.mark_suspect(ident.address, 1.0, now + lim.suspect_ttl)
            b.tokens = burst
            self._count("suspect:limit")

    # -- the challenge -----------------------------------------------------

    def _challenge_decision(self, facts: RequestFacts, ident: Identity, cls: ClientClass,
                            bits: int, now: float, note: str = "") -> Decision:
        prefix = ident.bind_prefix
        target = f"{facts.path}?{facts.query}" if facts.query else facts.path
        recent = self._recent_challenges.get(prefix)
        hit: _Recent | None = None
        if recent is not None and not note:
            # (a page with a note answers a failed attempt: always a fresh one)
            r: _Recent | None = recent
            while r is not None:
                if r.bits == bits and now - r.at < _CHALLENGE_REUSE:
                    hit = r
                    break
                r = r.older
        if hit is not None:
            if hit.decision is not None and hit.cls is cls and hit.target == target:
                return hit.decision  # the same page: its token and its target
        else:
            base = self._bases.get(bits)
            if note:
                base = self._new_base(bits, now, False)  # (a failed answer: a fresh challenge)
            elif base is None or now - base.at >= _CHALLENGE_REUSE or now < base.at:
                base = self._new_base(bits, now, True)
            hit = _Recent(bits, now, base.text + "." + prefix_tag(ident))
            # the prefix's tokens of other difficulties still in use stay behind it
            last = hit
            r = recent
            while r is not None:
                if r.bits != bits and now - r.at < _CHALLENGE_REUSE:
                    last.older = r
                    last = r
                r = r.older
            last.older = None
            if recent is None and len(self._recent_challenges) >= 65536:
                self._recent_challenges.clear()
            self._recent_challenges[prefix] = hit
        nojs = self._nojs and cls is not _SUSPECT
        page = self._pages.page(hit.token, bits, target, self._nojs_delay if nojs else None, note)
        d = Decision(_CHALLENGE, cls, reason=self._challenge_reasons.get(bits)
                     or f"challenge:{bits}", response=page)
        if not note:
            hit.cls = cls
            hit.target = target
            if hit.decision is None:
                # a place among the pages kept: the oldest kept one goes
                ring = self._kept_pages
                at = self._kept_at
                old = ring[at]
                if old is not None:
                    old.decision = None
                ring[at] = hit
                self._kept_at = (at + 1) % _KEPT_PAGES
            hit.decision = d
        return d

    def _new_base(self, bits: int, now: float, keep: bool) -> _Base:
        """Sign the signed part of a challenge of this difficulty (see
        prefix_tag); ``keep``: for every challenge of the next half second."""
        ms = int(now * 1000.0)  # the issue time as "%.3f" would print it, without str.format
        issued = str(ms // 1000) + "." + str(1000 + ms % 1000)[1:]
        self._nonce = (self._nonce + 1) & 0xFFFFFFFFFFFF
        base = _Base(now, self._challenge.sign_text(f"2|{issued}|{bits}|{hex(self._nonce)}"))
        if keep:
            self._bases[bits] = base
        return base

    def _own(self, facts: RequestFacts, now: float) -> Decision:
        if facts.path != VERIFY_PATH:
            return Decision(Action.RESPOND, _UNKNOWN, reason="own:404",
                            response=self._canned.not_found)
        ident = self._ids.get(facts.client)
        lists = self._lists_for(ident, now)
        if lists.ban is not None and lists.ban.until > now and "block" not in self._shadow:
            self._count("block")
            return Decision(Action.BLOCK, _SUSPECT, reason="block",
                            response=self._canned.block, close=True)
        tokens = self._tokens_of(facts.cookie) if facts.cookie else _NO_TOKENS
        cls = self._classify(tokens, ident, lists, now)[0]
        vcls = min(cls, _UNKNOWN)
        sid = self._sid(tokens)
        wait = self._take(self._spends(_VERIFY_ROUTE, ident, vcls, sid), now, sid)
        if wait > 0.0 and "limit" not in self._shadow:
            self._n_limit += 1
            return self._limit_decision(cls, _VERIFY_ROUTE, wait)
        q = parse_qs(facts.query, max_num_fields=8)
        challenge = q.get("c", [""])[0]
        nonce = q.get("n", [""])[0]
        nojs = q.get("nojs", [""])[0] == "1"
        target = _safe_target(q.get("r", ["/"])[0])
        c = self.settings.challenge

        def fail(why: str, note: str) -> Decision:
            self._count("verify:fail:" + why)
            retry = RequestFacts(facts.client, "GET", target.partition("?")[0],
                                 target.partition("?")[2])
            need = self.required_bits(cls, self.state.mode)
            d = self._challenge_decision(retry, ident, cls, need, now, note)
            return Decision(Action.RESPOND, cls, reason="verify:" + why, response=d.response)

        signed, dot, tag = challenge.rpartition(".")
        f = self._challenge.verify(signed) if dot and signed else None
        if f is None or len(f) != 4 or f[0] != "2":
            return fail("forged", "That answer could not be checked; trying again.")
        _, issued_s, bits_s, _ = f
        issued, bits = float(issued_s), int(bits_s)
        if tag != prefix_tag(ident):
            return fail("prefix", "Your network changed; trying again.")
        prefix = ident.bind_prefix
        if now - issued > c.challenge_ttl or issued > now + 5.0:
            return fail("expired", "That check expired; trying again.")
        if bits < self.required_bits(cls, self.state.mode):
            return fail("difficulty", "A harder check is needed now; trying again.")
        if nojs:
            if not c.nojs or cls is _SUSPECT:
                return fail("nojs", "This shop needs JavaScript right now.")
            if now - issued < c.nojs_delay:
                self._count("verify:early")
                early = math.ceil(c.nojs_delay - (now - issued))
                page = responses.build(
                    429, f"Too early: wait {early} seconds, then reload.\n".encode(),
                    headers=(("Retry-After", str(early)),))
                return Decision(Action.RESPOND, cls, retry_after=float(early), reason="verify:early",
                                response=page)
            kind = "nojs"
            prefix = ident.address  # a wait is cheap: its pass covers one address only
        else:
            if not (0 < len(nonce) <= 20 and nonce.isdigit()) or \
                    not pow_ok(challenge, nonce, bits):
                return fail("wrong", "That answer was wrong; trying again.")
            kind = "pow"
        expires = int(now + (min(c.pass_ttl, c.nojs_pass_ttl) if kind == "nojs"
                             else c.pass_ttl))
        token = self._pass.sign("1", prefix, str(expires), str(bits), kind)
        cookie = (f"{self.settings.pass_cookie}={token}; Path=/; Max-Age={int(expires - now)}; "
                  "HttpOnly; SameSite=Lax" + ("; Secure" if facts.tls else ""))
        self._count("verify:ok:" + kind)
        # the console's funnel: mean solve time = solve_ms / verify:ok:* (issue to answer)
        self._counts["verify:solve_ms"] = self._counts.get("verify:solve_ms", 0) + \
            int(max(0.0, now - issued) * 1000)
        return Decision(Action.RESPOND, max(cls, _VERIFIED), reason="verify:ok",
                        response=responses.redirect(target, cookie))

    # -- after the upstream answered ----------------------------------------

    def observe_response(self, facts: RequestFacts, decision: Decision, status: int,
                         headers: list[tuple[bytes, bytes]], now: float = -1.0,
                         ident: Identity | None = None) -> tuple[tuple[bytes, bytes], ...]:
        """Issue the session cookie to a new browser, and mark it customer when
        the shop says the session has a cart or is checking out. ``now`` and
        ``ident``: as in :meth:`decide`."""
        if decision.action is not _ALLOW and not decision.shadow:
            return ()
        if now < 0.0 or self.clock is not _WALL:
            now = self.clock()
        s = self.settings
        cookie = facts.cookie
        if not cookie:
            tokens = _NO_TOKENS
        else:
            if ident is None:
                ident = self._ids.get(facts.client)
            kept = ident.last
            last = kept if isinstance(kept, _Last) else None
            # (decide kept this header's tokens, unless another connection of the
            # address came between: compared by value, ~40 instructions against
            # ~220 for the memo's probe)
            tokens = last.tokens if last is not None and last.cookie == cookie \
                else self._tokens_of(cookie)
        customer = _marks_customer(headers, self._customer_cookie, self._customer_header)
        if tokens.session:
            cust_until = tokens.cust_until
            if not customer and now - tokens.issued < self._session_ttl / 2:
                return ()
            if customer and cust_until - now > self._customer_ttl / 2:
                return ()
            sid = tokens.sid
        else:
            sid = secrets.token_urlsafe(9)
            cust_until = 0.0
        if customer:
            cust_until = now + self._customer_ttl
            self._count("customer:marked")
        token = self._session.sign("1", sid, str(int(now)), str(int(cust_until)))
        cookie = (f"{s.session_cookie}={token}; Path=/; Max-Age={int(s.session_ttl)}; "
                  "HttpOnly; SameSite=Lax" + ("; Secure" if facts.tls else ""))
        return ((b"Set-Cookie", cookie.encode()),)


def _allow_key(cls: ClientClass, standing: Standing, session: bool) -> int:
    c: int = cls
    p: int = standing
    return c * 32 + p * 2 + (1 if session else 0)


def _marks_customer(headers: list[tuple[bytes, bytes]], prefix: bytes, header: bytes) -> bool:
    """Whether the shop's response marks a customer: it sets the customer
    cookie (``prefix``: its name and "=") to a value, or sends the customer
    header (``header``, lower case) with a value other than 0. A name is
    lowered only when its length is one of the two (lower() is a method call
    by name compiled, ~800 instructions, for every header of every response)."""
    hlen = len(header)
    for name, value in headers:
        n = len(name)
        if n != 10 and n != hlen:
            continue
        lname = name.lower()
        if lname == b"set-cookie":
            v = value.lstrip()
            if v.startswith(prefix):
                first, _, attrs = v.partition(b";")
                if first[len(prefix):].strip() and b"max-age=0" not in attrs.lower().replace(
                        b" ", b""):
                    return True
        elif lname == header and value.strip() not in (b"", b"0"):
            return True
    return False


def _safe_target(target: str) -> str:
    """Only paths on this site: no scheme, no host, no protocol-relative URL."""
    if not target.startswith("/") or target.startswith("//") or target.startswith("/\\") \
            or any(ch in target for ch in "\r\n"):
        return "/"
    return quote(target, safe="/?&=%:;,+@!$'()*~.-_[]")

