"""Which Redis a URL names: one server, Sentinels and a service, or Cluster
nodes; a bad URL is a config error that names the key and what is accepted."""

from __future__ import annotations

import pytest

from shieldwall.config import ConfigError, build_config
from shieldwall.guard._redis_url import RedisTarget, key_prefix, parse_url

ACCEPTED = ("expected redis://host:port[/db], unix:///path, "
            "redis+sentinel://host:port[,host:port...]/service[/db] or "
            "redis+cluster://host:port[,host:port...]")


def test_the_three_kinds() -> None:
    assert parse_url("unix:///run/redis.sock").kind == "single"
    assert parse_url("redis://10.0.0.5:6379/2").kind == "single"
    assert parse_url("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/shop/3") == \
        RedisTarget("sentinel", "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/shop/3",
                    (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)), "shop", 3, None, "s@cret")
    c = parse_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
    assert (c.kind, c.nodes) == ("cluster", (("10.0.0.1", 7000), ("10.0.0.2", 7000)))


def test_cluster_keys_share_one_hash_slot() -> None:
    c = parse_url("redis+cluster://10.0.0.1:7000")
    assert key_prefix(c, "sw:") == "{sw:}"
    assert key_prefix(c, "{shop}:sw:") == "{shop}:sw:"
    assert key_prefix(parse_url("redis://h:1"), "sw:") == "sw:"


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://10.0.0.1:26379", "the Sentinel URL needs the primary's service name after the hosts"),
    ("redis+sentinel://10.0.0.1:26379/shop/x", "database 'x' is not a number"),
    ("redis+sentinel://10.0.0.1/shop", "'10.0.0.1' is not host:port"),
    ("redis+cluster://10.0.0.1:7000/0", "a Redis Cluster has no service name or database"),
    ("sentinel://10.0.0.1:26379/shop", "unknown scheme 'sentinel'"),
])
def test_bad_urls_name_the_key_the_value_and_the_fix(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"backends": [{"url": "http://127.0.0.1:9001"}], "guard": {"redis": {"url": url}}})
    assert exc.value.problems == [f"guard.redis.url: {url!r} is not accepted; {why}; {ACCEPTED}"]
