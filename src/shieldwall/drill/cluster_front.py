"""The drill at cluster scale (``shieldwall drill SCENARIO --nodes N``):
HAProxy in TCP mode, ``send-proxy-v2`` and health checks, in front of N
``shieldwall serve`` processes that share a Redis primary + replica watched
by a Sentinel; the demo shop behind them all.

Clients (shoppers and attackers, from their own loopback addresses) connect
to HAProxy only, which sends each client address to one node (``balance
source``, consistent hashing: a browser's several connections, its page and
its assets, meet the same node's view of its conduct); each node learns the
client from the PROXY header. IPv6 shoppers (scenario ``flood-ipv6``) come
through the lab's edge hop, a balancer in front of HAProxy: HAProxy takes
the client from the edge's PROXY header (``expect-proxy``, from the edge
network only) and hands it on. The front samples every node each second
(its mode, its detector's own verdict, the cluster's verdict, which one is
in force), and at the end reads each node's access log. Faults it owns:
``kill-node`` (SIGKILL one shield: HAProxy's checks take it out and a
failed connect is redispatched) and ``kill-redis`` (SIGKILL the Redis
primary: the Sentinel promotes the replica). Mid-run it also bans a
documentation address on one node and times how long every node takes to
refuse it.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shieldwall.drill import netsafety
from shieldwall.drill.fronts import ShieldwallFront, ShopCluster
from shieldwall.drill.procs import Lab, free_port, wait_http
from shieldwall.drill.redis_lab import SentinelRedis
from shieldwall.http.proxy_protocol import v2_header

HAPROXY_CONF = """\
# Written by shieldwall drill: a layer-4 balancer in front of the shield nodes.
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend shop
    bind 127.0.0.1:{port}
    # the lab's edge hop (IPv6 shoppers, drill/shoppers.py) is a balancer in
    # front of this one: its PROXY header names the client, which HAProxy
    # then hashes and hands on to the node (send-proxy-v2)
    tcp-request connection expect-proxy layer4 if {{ src {edge_net} }}
    default_backend shields
backend shields
    # one client, one node: a shopper's page, its assets and its challenge
    # land where its conduct (admission standing) is known; consistent, so a
    # node that leaves moves only its own clients
    balance source
    hash-type consistent
{servers}
"""

BAN_PROBE = netsafety.LAB_PROBE


def haproxy_binary() -> str:
    for cand in (shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if cand:
            return cand
    raise RuntimeError("haproxy is not installed: run `make debs` (Debian package haproxy) "
                       "for drills with --nodes")


class ClusterFront(ShieldwallFront):
    # IPv6 shoppers reach HAProxy through the lab's edge hop (HAProxy trusts its
    # header); the nodes trust only HAProxy
    edge = str(netsafety.EDGE_NET.network_address + 1)
    name = "shieldwall"

    def __init__(self, lab: Lab, cluster: ShopCluster, workdir: Path, nodes: int,
                 extra_toml: str = "") -> None:
        super().__init__(lab, cluster, workdir, extra_toml)
        self.nodes = nodes
        self.redis = SentinelRedis(lab, workdir / "redis", down_after=0.5)
        self.node_ports: list[tuple[int, int]] = []
        self.samples: list[dict[str, Any]] = []
        self.ban_probe: dict[str, Any] | None = None
        self.ban_at: float | None = None
        self.t0 = time.monotonic()

    def node_name(self, i: int) -> str:
        return f"shield{i}"

    def start(self) -> None:
        haproxy = haproxy_binary()
        (self.workdir / "redis").mkdir(parents=True, exist_ok=True)
        self.redis.start()
        extra = (f'\n[guard.redis]\nurl = "{self.redis.url}"\n' if "[guard.redis]" not in self.extra_toml
                 else "")
        for i in range(self.nodes):
            self.port, self.admin_port = free_port(), free_port()
            self.log_path = self.workdir / f"access-{i}.log"
            self.log_path.unlink(missing_ok=True)
            conf = self.workdir / f"shieldwall-{i}.toml"
            edge_line = f'proxy_protocol_from = ["{netsafety.EDGE_NET}"]'
            text = self.config_text()
            assert edge_line in text
            text = text.replace(edge_line, 'proxy_protocol_from = ["127.0.0.1/32"]', 1)  # HAProxy only
            conf.write_text(text + extra)
            m = self.lab.start(self.node_name(i), [sys.executable, "-m", "shieldwall.cli", "serve",
                                                   "--config", str(conf)],
                               env={"SHIELDWALL_ADMIN_TOKEN": self.token})
            wait_http("127.0.0.1", self.admin_port, "/healthz", 20, m.proc)
            self.node_ports.append((self.port, self.admin_port))
        self.port = free_port()
        servers = "\n".join(f"    server {self.node_name(i)} 127.0.0.1:{p} send-proxy-v2 check inter 300ms "
                            "fall 1 rise 2" for i, (p, _) in enumerate(self.node_ports))
        d = self.workdir / "haproxy"
        d.mkdir(exist_ok=True)
        conf = d / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(port=self.port, servers=servers, edge_net=netsafety.EDGE_NET))
        m = self.lab.start("haproxy", [haproxy, "-db", "-f", str(conf)])
        wait_http("127.0.0.1", self.port, "/healthz", 20, m.proc)
        self.admin_port = self.node_ports[0][1]
        self.t0 = time.monotonic()

    def targets(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def access_log(self) -> Path | None:
        return None  # one per node: read in describe()

    # -- admin, per node --------------------------------------------------------
    def _node_get(self, i: int, path: str, timeout: float = 1.0) -> Any | None:
        port = self.node_ports[i][1]
        netsafety.check_target("127.0.0.1", port)
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError, TimeoutError):
            return None

    def admin_get(self, path: str) -> Any | None:
        """The first live node's answer (the cluster's verdict is the same on all)."""
        for i in range(self.nodes):
            if self.lab.procs[self.node_name(i)].alive():
                got = self._node_get(i, path)
                if got is not None:
                    return got
        return None

    def sample(self, second: int) -> None:
        """Each node's view this second (called by the runner's sampler)."""
        row: dict[str, Any] = {"t": second, "nodes": []}
        for i in range(self.nodes):
            v = self._node_get(i, "/api/verdict", 0.5) if self.lab.procs[self.node_name(i)].alive() else None
            cl = v.get("cluster") if isinstance(v, dict) else None
            row["nodes"].append(None if not isinstance(v, dict) else {
                "mode": v.get("mode"), "local_verdict": v.get("verdict"),
                "cluster_state": cl.get("state") if isinstance(cl, dict) else None,
                "cluster_mode": cl.get("mode") if isinstance(cl, dict) else None,
                "in_force": cl.get("in_force") if isinstance(cl, dict) else None,
                "feeds": cl.get("feeds") if isinstance(cl, dict) else None})
        self.samples.append(row)
        if self.ban_at is not None and self.ban_probe is None and second >= self.ban_at:
            self.ban_probe = {"started": True}
            threading.Thread(target=self._probe_ban, daemon=True).start()

    def _probe_ban(self) -> None:
        """Ban BAN_PROBE on node 0, then ask every node (through a PROXY header
        naming that address) until each refuses it."""
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.node_ports[0][1]}/api/ban", method="POST",
                data=json.dumps({"value": BAN_PROBE, "ttl": 120, "reason": "drill ban probe"}).encode(),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            t0 = time.monotonic()
            with urllib.request.urlopen(req, timeout=2.0) as r:
                r.read()
            refused: dict[str, float | None] = {}
            for i in range(self.nodes):
                name = self.node_name(i)
                refused[name] = None
                while time.monotonic() - t0 < 5.0 and self.lab.procs[name].alive():
                    if self._status_as(i, BAN_PROBE) in (403, -1):
                        refused[name] = round(time.monotonic() - t0, 3)
                        break
                    time.sleep(0.02)
            self.ban_probe = {"address": BAN_PROBE, "banned_on": self.node_name(0),
                              "refused_after_s": refused}
        except Exception as exc:  # the drill goes on; the report says what failed
            self.ban_probe = {"error": repr(exc)}

    def _status_as(self, i: int, client: str) -> int:
        port = self.node_ports[i][0]
        netsafety.check_target("127.0.0.1", port)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(v2_header((client, 40000), ("127.0.0.1", port))
                          + b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
                data = s.recv(64)
            if not data:
                return -1  # closed without an answer: refused at accept
            return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
        except ConnectionResetError:
            return -1
        except (OSError, ValueError):
            return 0

    # -- faults --------------------------------------------------------------
    def inject(self, action: str) -> str:
        if action == "kill-node":
            i = self.nodes - 1
            pid = self.lab.kill(self.node_name(i))
            return f"kill-node {self.node_name(i)} (pid {pid})"
        if action == "kill-redis":
            old = self.redis.kill_primary()
            return f"kill-redis primary {old}"
        raise ValueError(f"unknown fault {action!r}")

    # -- report --------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        out = super().describe()
        nodes = []
        seen_on: dict[str, set[int]] = {}
        """Shopper address -> the nodes that logged it (netsafety.SHOPPER_NET)."""
        for i in range(self.nodes):
            log = self.workdir / f"access-{i}.log"
            clients: dict[str, int] = {}
            lines = 0
            by_who: dict[str, int] = {"shopper": 0, "attacker": 0}
            ipv6 = 0
            if log.exists():
                with open(log, errors="replace") as fh:
                    for line in fh:
                        lines += 1
                        c = line.split(" ", 1)[0]
                        if '"GET /healthz ' in line and c == "127.0.0.1":
                            c = "lab-healthz"  # the lab's own readiness probe, through HAProxy
                        clients[c] = clients.get(c, 0) + 1
                for c, k in clients.items():
                    who = netsafety.who(c)
                    if who in by_who:
                        by_who[who] += k
                    if who == "shopper":
                        seen_on.setdefault(c, set()).add(i)
                        if ":" in c:
                            ipv6 += k
            nodes.append({
                "name": self.node_name(i), "access_log": str(log), "requests_logged": lines,
                "distinct_clients": len(clients),
                "logged_as_balancer": clients.get("127.0.0.1", 0),
                "shopper_requests": by_who["shopper"], "attack_requests": by_who["attacker"],
                "ipv6_shopper_requests": ipv6,
                "first_cluster_ddos_s": next((r["t"] for r in self.samples
                                              if (n := r["nodes"][i]) and n.get("cluster_state") == "ddos"), None),
                "first_local_ddos_s": next((r["t"] for r in self.samples
                                            if (n := r["nodes"][i]) and n.get("local_verdict") == "ddos"), None),
                "seconds_on_local_view": sum(1 for r in self.samples if (n := r["nodes"][i])
                                             and str(n.get("in_force", "")).startswith("local")),
            })
        out["cluster"] = {"nodes": nodes, "balancer": "haproxy tcp send-proxy-v2 balance source",
                          "shoppers": len(seen_on),
                          "ipv6_shoppers": sum(1 for c in seen_on if ":" in c),
                          "shoppers_on_several_nodes": sum(1 for s in seen_on.values() if len(s) > 1),
                          "redis": self.redis.url, "ban_probe": self.ban_probe,
                          "samples": self.samples}
        return out


def make_cluster_front(lab: Lab, cluster: ShopCluster, workdir: Path, nodes: int) -> ClusterFront:
    return ClusterFront(lab, cluster, workdir, nodes, extra_toml="")


__all__ = ["ClusterFront", "haproxy_binary", "make_cluster_front"]
