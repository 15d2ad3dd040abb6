"""What stands between the clients and the shop in a drill.

- ``none``: nothing; each client picks a backend at random (round-robin DNS).
- ``nginx``: nginx with ``limit_req``/``limit_conn`` as its documentation
  recommends, written to a temp dir with its own pid file and logs.
- ``shieldwall``: ``shieldwall serve`` with an admin listener; the lab reads
  its mode and verdict from the admin API.

The shop cluster (two or more backends sharing one SQLite file) is here too,
with the fault actions the scenarios use.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shieldwall.drill import netsafety
from shieldwall.drill.procs import Lab, free_port, wait_http
from shieldwall.drill.shop import init_db

AGAINST = ("none", "nginx", "shieldwall")


@dataclass(frozen=True)
class ShopShape:
    """The shop's capacity (see shieldwall.drill.shop)."""

    db_slots: int = 2
    page_ms: float = 25.0
    search_ms: float = 80.0
    checkout_ms: float = 20.0
    max_connections: int = 200


@dataclass
class ShopCluster:
    lab: Lab
    workdir: Path
    count: int = 2
    shape: ShopShape = field(default_factory=ShopShape)
    ports: list[int] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.workdir / "shop.db"

    @property
    def counters_dir(self) -> Path:
        return self.workdir / "counters"

    def name(self, i: int) -> str:
        return f"backend{i}"

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def start(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.db) + suffix).unlink(missing_ok=True)
        if self.counters_dir.exists():
            shutil.rmtree(self.counters_dir)
        self.counters_dir.mkdir(parents=True)
        init_db(self.db)
        self.ports = [free_port() for _ in range(self.count)]
        for i in range(self.count):
            self._launch(i)
        for i in range(self.count):
            self.wait(i)

    def _launch(self, i: int) -> None:
        s = self.shape
        self.lab.python(self.name(i), "-m", "shieldwall.drill.shop", "--port", str(self.ports[i]),
                        "--db", str(self.db), "--counters-dir", str(self.counters_dir),
                        "--name", f"backend{i}", "--db-slots", str(s.db_slots), "--page-ms", str(s.page_ms),
                        "--search-ms", str(s.search_ms), "--checkout-ms", str(s.checkout_ms),
                        "--max-connections", str(s.max_connections))

    def wait(self, i: int, timeout: float = 20.0) -> None:
        wait_http("127.0.0.1", self.ports[i], "/healthz", timeout, self.lab.procs[self.name(i)].proc)

    def kill(self, i: int) -> None:
        self.lab.kill(self.name(i))

    def freeze(self, i: int) -> None:
        self.lab.freeze(self.name(i))

    def thaw(self, i: int) -> None:
        self.lab.thaw(self.name(i))

    def restart(self, i: int) -> None:
        m = self.lab.procs[self.name(i)]
        if m.alive():
            self.lab.kill(self.name(i))
        self._launch(i)
        self.wait(i)

    def slow(self, i: int, ms: float) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports[i]}/_lab/slow?ms={ms}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()


class Front:
    """A front: where clients connect, and what its admin API says (if any)."""

    name = "none"
    edge: str | None = None
    """The address of a layer-4 balancer hop this front trusts to write PROXY
    protocol headers (IPv6 shoppers arrive through it); None: there is none."""

    def __init__(self, lab: Lab, cluster: ShopCluster, workdir: Path) -> None:
        self.lab = lab
        self.cluster = cluster
        self.workdir = workdir

    def start(self) -> None:
        return None

    def targets(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.cluster.ports]

    def admin_get(self, path: str) -> Any | None:
        return None

    def access_log(self) -> Path | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"against": self.name, "targets": [f"{h}:{p}" for h, p in self.targets()]}

    def inject(self, action: str) -> str:
        """Faults of the front itself (shieldwall.drill.cluster_front has some)."""
        raise RuntimeError(f"{action} needs a drill with --nodes")


class NoneFront(Front):
    name = "none"


NGINX_CONF = """\
# Written by shieldwall drill: nginx in front of the demo shop, rate-limited as
# nginx's documentation recommends (ngx_http_limit_req_module,
# ngx_http_limit_conn_module; timeouts against slow clients from
# ngx_http_core_module).
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {dir}/access.log combined;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;
    limit_conn_zone $binary_remote_addr zone=peraddr:10m;
    limit_req_status 429;
    limit_conn_status 429;

    upstream shop {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_header_timeout 10s;
        client_body_timeout 10s;
        send_timeout 10s;
        keepalive_timeout 15s;
        limit_conn peraddr 10;
        limit_req zone=perip burst=20 nodelay;
        location / {{
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("nginx is not installed: run `make debs` (Debian package nginx-light) to drill against nginx")


class NginxFront(Front):
    name = "nginx"

    def start(self) -> None:
        binary = nginx_binary()
        d = (self.workdir / "nginx").resolve()  # nginx takes a relative -c/-e under -p: twice
        if d.exists():
            shutil.rmtree(d)
        (d / "tmp").mkdir(parents=True)
        self.port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                            for p in self.cluster.ports)
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=d, servers=servers, port=self.port))
        m = self.lab.start("nginx", [binary, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")])
        wait_http("127.0.0.1", self.port, "/healthz", 15, m.proc)

    def targets(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def access_log(self) -> Path | None:
        return self.workdir / "nginx" / "access.log"


class ShieldwallFront(Front):
    name = "shieldwall"
    edge: str | None = str(netsafety.EDGE_NET.network_address + 1)

    def __init__(self, lab: Lab, cluster: ShopCluster, workdir: Path, extra_toml: str = "") -> None:
        super().__init__(lab, cluster, workdir)
        self.token = secrets.token_hex(16)
        self.extra_toml = extra_toml

    def config_text(self) -> str:
        """The shield's config for this shop: its backends, an access log in the
        drill's directory, the shop's cheap health endpoint; guard and detector
        at their defaults (the drill tests the product as shipped)."""
        lines = [f'listen = "127.0.0.1:{self.port}"', f'access_log = "{self.log_path}"']
        if self.edge is not None:
            # the lab's balancer hop: IPv6 shoppers arrive through it (drill/shoppers.py)
            lines.append(f'proxy_protocol_from = ["{netsafety.EDGE_NET}"]')
        lines.append("")
        for url in self.cluster.urls():
            lines += ["[[backends]]", f'url = "{url}"', ""]
        lines += ["[admin]", f'listen = "127.0.0.1:{self.admin_port}"', f'token = "{self.token}"', "",
                  "[upstream.health]", 'path = "/healthz"', "interval = 1.0", ""]
        return "\n".join(lines) + self.extra_toml

    def start(self) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = self.workdir / "access.log"
        self.log_path.unlink(missing_ok=True)
        conf = self.workdir / "shieldwall.toml"
        conf.write_text(self.config_text())
        args = [sys.executable, "-m", "shieldwall.cli", "serve", "--config", str(conf)]
        m = self.lab.start("shieldwall", args, env={"SHIELDWALL_ADMIN_TOKEN": self.token})
        try:
            wait_http("127.0.0.1", self.admin_port, "/healthz", 20, m.proc)
            wait_http("127.0.0.1", self.port, "/healthz", 20, m.proc)
        except RuntimeError as exc:
            tail = m.log.read_text(errors="replace")[-2000:] if m.log.exists() else ""
            raise RuntimeError(f"shieldwall did not start: {exc}\n--- {m.log} ---\n{tail}") from exc

    def targets(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def access_log(self) -> Path | None:
        return self.log_path

    def admin_get(self, path: str) -> Any | None:
        """GET an admin API path as JSON; None when the route is missing or failing."""
        netsafety.check_target("127.0.0.1", self.admin_port)
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=1.0) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError, TimeoutError):
            return None

    def admin_post(self, path: str, body: dict[str, Any]) -> Any | None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2.0) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError, TimeoutError):
            return None


def make_front(against: str, lab: Lab, cluster: ShopCluster, workdir: Path) -> Front:
    if against == "none":
        return NoneFront(lab, cluster, workdir)
    if against == "nginx":
        return NginxFront(lab, cluster, workdir)
    if against == "shieldwall":
        return ShieldwallFront(lab, cluster, workdir)
    raise ValueError(f"--against must be one of {', '.join(AGAINST)}, not {against!r}")
