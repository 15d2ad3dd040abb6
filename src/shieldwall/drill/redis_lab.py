"""A Redis that must not be a single point of failure, on loopback: one
primary, one replica, one Sentinel watching them (Debian's redis-server and
redis-sentinel), started and stopped through the lab's process registry.

The Sentinel is told to give up on a silent primary after ``down_after``
seconds (production uses 5-30 s; a drill wants the failover inside its
fault window). With one Sentinel the quorum is 1: enough on a laptop, never
in production (docs/CLUSTER.md says three, on three machines).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.exceptions import RedisError

from shieldwall.drill.procs import Lab, free_port

SERVICE = "shieldwall"


def redis_binary() -> str:
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def sentinel_available() -> bool:
    return Path(redis_binary()).exists()


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0)


def start_single(lab: Lab, workdir: Path, name: str = "redis") -> int:
    """One redis-server on a loopback port; returns the port once it answers."""
    port = free_port()
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    lab.start(name, [redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(d)])

    def up() -> bool:
        with _client(port) as c:
            return bool(c.ping())

    SentinelRedis._wait(up, f"{name} up")
    return port


class SentinelRedis:
    def __init__(self, lab: Lab, workdir: Path, down_after: float = 0.5) -> None:
        self.lab = lab
        self.workdir = workdir
        self.down_after = down_after
        self.ports = {"redis-a": free_port(), "redis-b": free_port()}
        self.sentinel_port = free_port()
        self.first_primary = "redis-a"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def start(self) -> None:
        a, b = self.ports["redis-a"], self.ports["redis-b"]
        for name, port, extra in (("redis-a", a, []), ("redis-b", b, ["--replicaof", "127.0.0.1", str(a)])):
            d = self.workdir / name
            d.mkdir(parents=True, exist_ok=True)
            self.lab.start(name, [redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", str(d), *extra])
        def in_sync() -> bool:
            with _client(b) as c:
                return bool(c.info("replication").get("master_link_status") == "up")

        self._wait(in_sync, "replica in sync")
        conf = self.workdir / "sentinel.conf"
        ms = int(self.down_after * 1000)
        conf.write_text(f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                        f"sentinel monitor {SERVICE} 127.0.0.1 {a} 1\n"
                        f"sentinel down-after-milliseconds {SERVICE} {ms}\n"
                        f"sentinel failover-timeout {SERVICE} 3000\n"
                        f"sentinel parallel-syncs {SERVICE} 1\n")
        self.lab.start("sentinel", [redis_binary(), str(conf), "--sentinel"])
        self._wait(lambda: self.primary_port() == a, "sentinel sees the primary")
        # a Sentinel learns the replica from the primary's INFO (every 10 s at
        # first contact it is asked at once): wait until it would promote it
        def knows_replica() -> bool:
            with _client(self.sentinel_port) as c:
                info = c.sentinel_master(SERVICE)
            return isinstance(info, dict) and int(info["num-slaves"]) >= 1

        self._wait(knows_replica, "sentinel knows the replica")

    def primary_port(self) -> int | None:
        try:
            with _client(self.sentinel_port) as c:
                got = c.sentinel_get_master_addr_by_name(SERVICE)
        except (RedisError, OSError):
            return None
        return int(got[1]) if isinstance(got, tuple) else None

    def primary(self) -> str:
        port = self.primary_port()
        return next(name for name, p in self.ports.items() if p == port)

    def kill_primary(self) -> str:
        name = self.primary()
        self.lab.kill(name)
        return name

    def wait_promoted(self, old: str, timeout: float = 15.0) -> float:
        """Seconds until the Sentinel names another primary."""
        t0 = time.monotonic()
        self._wait(lambda: self.primary_port() not in (None, self.ports[old]), "a replica promoted", timeout)
        return time.monotonic() - t0

    def hkeys(self, name: str, key: str) -> set[str]:
        with _client(self.ports[name]) as c:
            keys: list[bytes] = c.hkeys(key)  # type: ignore[assignment]
        return {k.decode() for k in keys}

    @staticmethod
    def _wait(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except (RedisError, OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis lab: {what} not seen within {timeout:g}s")
            time.sleep(0.05)


class RedisClusterLab:
    """Three masters (no replicas) of a Redis Cluster on loopback, made with
    ``redis-cli --cluster create``: enough to prove the guard's keys, bucket
    script and pipelines work against a cluster (one hash slot)."""

    def __init__(self, lab: Lab, workdir: Path, size: int = 3) -> None:
        self.lab = lab
        self.workdir = workdir
        self.ports = [free_port() for _ in range(size)]
        self.bus_ports = [free_port() for _ in range(size)]
        """Given explicitly: the default (port + 10,000) is out of range for
        the high ports the OS hands out."""

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        import subprocess

        for i, port in enumerate(self.ports):
            d = self.workdir / f"cluster-{i}"
            d.mkdir(parents=True, exist_ok=True)
            self.lab.start(f"cluster-{i}", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                            "--cluster-enabled", "yes", "--cluster-port", str(self.bus_ports[i]),
                                            "--cluster-config-file",
                                            str(d / "nodes.conf"), "--cluster-node-timeout", "1000",
                                            "--save", "", "--appendonly", "no", "--dir", str(d)])
        for port in self.ports:
            def up(p: int = port) -> bool:
                with _client(p) as c:
                    return bool(c.ping())

            SentinelRedis._wait(up, f"cluster node {port} up")
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-yes"], check=True, capture_output=True, timeout=30)

        def ok() -> bool:
            with _client(self.ports[0]) as c:
                info: dict[str, object] = c.cluster("info")  # type: ignore[assignment]
                return str(info.get("cluster_state")) == "ok"

        SentinelRedis._wait(ok, "cluster state ok")
