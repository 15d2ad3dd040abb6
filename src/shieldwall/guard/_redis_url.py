"""Which Redis the guard talks to, from one URL: a single server, a primary
watched by Sentinels, or a Redis Cluster (all through redis-py's asyncio
clients).

- ``redis://[user:pass@]host:port[/db]``, ``rediss://...``, ``unix:///path``:
  one server (what it always was).
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]``:
  the Sentinels to ask, and the name of the primary they watch. The client
  asks them where the primary is and asks again after a connection error, so
  a failover costs one failed sync round and a rediscovery (docs/CLUSTER.md).
  The credentials are the primary's.
- ``redis+cluster://[user:pass@]host:port[,host:port...]``: any reachable
  nodes of a Redis Cluster; the client learns the slot map and follows
  failovers. Every key the guard writes is in one hash slot (the prefix is
  wrapped in ``{}``): the bucket script touches many keys at once.

Parsing is pure (:func:`parse_url`); :func:`make_client` builds the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

Kind = Literal["single", "sentinel", "cluster"]
_SINGLE = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisTarget:
    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


_FIX = ("expected redis://host:port[/db], unix:///path, "
        "redis+sentinel://host:port[,host:port...]/service[/db] or "
        "redis+cluster://host:port[,host:port...]")


def parse_url(url: str) -> RedisTarget:
    """Raises ValueError with what is wrong and what is accepted."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(_FIX)
    if scheme in _SINGLE:
        return RedisTarget("single", url)
    if scheme not in ("redis+sentinel", "redis+cluster"):
        raise ValueError(f"unknown scheme {scheme!r}; {_FIX}")
    creds, at, hostpart = rest.rpartition("@")
    if not at:
        creds = ""
    netloc, _, path = hostpart.partition("/")
    nodes = tuple(_hostport(item) for item in netloc.split(","))
    username = password = None
    if creds:
        user, colon, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    parts = [p for p in path.split("/") if p]
    if scheme == "redis+cluster":
        if parts:
            raise ValueError(f"a Redis Cluster has no service name or database; {_FIX}")
        return RedisTarget("cluster", url, nodes, username=username, password=password)
    if not parts or len(parts) > 2:
        raise ValueError(f"the Sentinel URL needs the primary's service name after the hosts; {_FIX}")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"database {parts[1]!r} is not a number; {_FIX}")
        db = int(parts[1])
    return RedisTarget("sentinel", url, nodes, unquote(parts[0]), db, username, password)


def _hostport(item: str) -> tuple[str, int]:
    split = urlsplit("//" + item)
    try:
        port = split.port
    except ValueError:
        port = None
    if not split.hostname or port is None:
        raise ValueError(f"{item!r} is not host:port; {_FIX}")
    return split.hostname, port


def key_prefix(target: RedisTarget, prefix: str) -> str:
    """In a cluster every guard key shares one hash slot: ``{sw:}`` hashes
    the same for all of them, so multi-key scripts and pipelines stay legal."""
    if target.kind == "cluster" and not (prefix.startswith("{") and "}" in prefix):
        return "{" + prefix + "}"
    return prefix


def make_client(target: RedisTarget, timeout: float) -> tuple[Any, list[Any]]:
    """The client for the primary (or the cluster), and the extra clients
    to close with it (the Sentinels')."""
    if target.kind == "single":
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(target.url, socket_timeout=timeout,
                                       socket_connect_timeout=timeout), []
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(target.nodes), socket_timeout=timeout,  # type: ignore[no-untyped-call]
                            socket_connect_timeout=timeout)
        primary = sentinel.master_for(target.service, socket_timeout=timeout,
                                      socket_connect_timeout=timeout, db=target.db,
                                      username=target.username, password=target.password)
        return primary, list(sentinel.sentinels)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                          socket_timeout=timeout, socket_connect_timeout=timeout,
                          username=target.username, password=target.password)
    return client, []
