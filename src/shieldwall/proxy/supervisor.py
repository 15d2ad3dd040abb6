"""``shieldwall serve``: one worker in this process, or N worker processes
under a supervisor.

With N workers the supervisor reserves the port (bound, not listening, with
SO_REUSEPORT) so port 0 resolves once; each forked worker binds its own
SO_REUSEPORT listener on that port and the kernel spreads connections. The
admin socket is opened by the supervisor and served by worker 0 only; metrics
of the other workers reach it through snapshot files (shieldwall.metrics),
operator changes reach them through their private unix sockets
(shieldwall.proxy.fanout). A worker that dies is restarted and takes a live
peer's guard state before it serves. SIGTERM: each worker drains (stops
accepting, finishes in-flight requests up to ``timeouts.drain``) and exits.
SIGHUP: the config file is re-read and validated; if valid each worker
applies it (backends, limits, timeouts, cache) without dropping connections;
if not, the problems are printed and the old config stays.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from shieldwall.config import Config, ConfigError, build_config, load_config
from shieldwall.proxy.wiring import wire
from shieldwall.proxy.worker import Shield, Worker, _fmt_host, banner, listen_socket, serving_gc


class Source:
    """Where the config comes from, so SIGHUP can read it again."""

    def __init__(self, path: str | None, overrides: dict[str, Any]) -> None:
        self.path = path
        self.overrides = overrides

    def load(self) -> Config:
        if self.path is None:
            return build_config(self.overrides, "command line")
        return load_config(self.path, self.overrides)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_worker(source: Source, config: Config, index: int, sock: socket.socket,
                     admin_sock: socket.socket | None, metrics_dir: Path | None,
                     ready_fd: int | None, peer_dir: Path | None = None,
                     restarted: bool = False, secret: bytes | None = None) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(config, wire(config, secret), index, metrics_dir, peer_dir, config.workers,
                    restarted)
    await worker.start(sock, admin_sock)
    serving_gc()
    if ready_fd is None:
        a_host, a_port = (admin_sock.getsockname()[:2] if admin_sock is not None else ("-", 0))
        shield = Shield(worker, sock.getsockname()[0], sock.getsockname()[1], a_host, a_port)
        print(banner(shield), flush=True)
    else:
        try:
            os.write(ready_fd, b"1")
        except OSError:
            pass  # the supervisor stopped waiting; serving matters more
        os.close(ready_fd)
    stop = asyncio.Event()

    def reload() -> None:
        try:
            new = source.load()
        except ConfigError as exc:
            _say(f"shieldwall[{index}]: reload refused, keeping the running config:\n{exc}")
            return
        if new.listen != worker.config.listen or new.admin.listen != worker.config.admin.listen:
            _say(f"shieldwall[{index}]: listen addresses change only on restart")
        worker.apply(new)
        _say(f"shieldwall[{index}]: reloaded: {new.summary()}")

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    _say(f"shieldwall[{index}]: draining ({len(worker.conns)} connection(s))")
    await worker.drain(worker.timeouts.drain)
    _say(f"shieldwall[{index}]: stopped")


def serve(source: Source, config: Config) -> int:
    host, port = config.listen_addr
    a_host, a_port = config.admin_addr
    if config.workers == 1:
        sock = listen_socket(host, port, reuse_port=False)
        admin_sock = listen_socket(a_host, a_port, reuse_port=False)
        uvloop.run(run_worker(source, config, 0, sock, admin_sock, None, None))
        return 0
    return _supervise(source, config)


def _supervise(source: Source, config: Config) -> int:
    host, port = config.listen_addr
    a_host, a_port = config.admin_addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserve = socket.socket(family, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserve.bind((host, port))
    port = reserve.getsockname()[1]
    admin_sock = listen_socket(a_host, a_port, reuse_port=False)
    metrics_dir = Path(tempfile.mkdtemp(prefix="shieldwall-metrics-"))
    peer_dir = Path(tempfile.mkdtemp(prefix="shieldwall-peers-"))  # 0700: the workers' sockets
    secret = _shared_secret(config)
    flags = {"term": False, "hup": False}

    def on_term(signum: int, frame: object) -> None:
        flags["term"] = True

    def on_hup(signum: int, frame: object) -> None:
        flags["hup"] = True

    def spawn(index: int, cfg: Config, restarted: bool = False) -> tuple[int, int]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                os.close(r)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                reserve.close()
                sock = listen_socket(host, port, reuse_port=True)
                mine = admin_sock if index == 0 else None
                if mine is None:
                    admin_sock.close()
                uvloop.run(run_worker(source, cfg, index, sock, mine, metrics_dir, w, peer_dir,
                                      restarted, secret))
            except BaseException as exc:  # the child must never return into the CLI
                _say(f"shieldwall[{index}]: worker failed: {exc!r}")
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        return pid, r

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    workers: dict[int, int] = {}
    started: dict[int, float] = {}
    pipes: list[int] = []
    for i in range(config.workers):
        pid, r = spawn(i, config)
        workers[i] = pid
        started[i] = time.monotonic()
        pipes.append(r)
    deadline = time.monotonic() + 30
    for r in pipes:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            os.read(r, 1)
        os.close(r)
    print(f"shieldwall listening on {'https' if config.tls.cert else 'http'}://"
          f"{_fmt_host(host)}:{port} admin http://{_fmt_host(a_host)}:"
          f"{admin_sock.getsockname()[1]} workers {config.workers}", flush=True)
    current = config
    try:
        while not flags["term"]:
            time.sleep(0.1)
            if flags["hup"]:
                flags["hup"] = False
                try:
                    current = source.load()
                except ConfigError as exc:
                    _say(f"shieldwall: reload refused, keeping the running config:\n{exc}")
                else:
                    for pid in workers.values():
                        _kill(pid, signal.SIGHUP)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                for i, wpid in list(workers.items()):
                    if wpid == pid and not flags["term"]:
                        _say(f"shieldwall: worker {i} (pid {pid}) died with status {status}; restarting")
                        if time.monotonic() - started[i] < 1.0:
                            time.sleep(1.0)  # do not spin on a worker that cannot start
                        npid, r = spawn(i, current, restarted=True)
                        select.select([r], [], [], 10.0)  # until it listens
                        os.close(r)
                        workers[i] = npid
                        started[i] = time.monotonic()
        for pid in workers.values():
            _kill(pid, signal.SIGTERM)
        end = time.monotonic() + current.timeouts.drain + 5
        alive = set(workers.values())
        while alive and time.monotonic() < end:
            for pid in list(alive):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    alive.discard(pid)
            time.sleep(0.05)
        for pid in alive:
            _kill(pid, signal.SIGKILL)
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(peer_dir, ignore_errors=True)
        reserve.close()
        admin_sock.close()


def _shared_secret(config: Config) -> bytes | None:
    """One guard signing key for all the workers (made before they fork, so a
    restarted one gets it too) unless the config, the environment or Redis
    provides one: without it a challenge passed on one worker, or a session
    the shop marked customer, would not hold on the next connection."""
    g = config.guard
    if (g.secret is not None and g.secret.get_secret_value()) or g.redis.url \
            or os.environ.get("SHIELDWALL_GUARD_SECRET"):
        return None
    return secrets.token_bytes(32)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    """``python -m shieldwall.proxy.supervisor '{"path": ..., "overrides": {...}}'``:
    what ``shieldwall serve`` execs into once its flags are validated."""
    spec = json.loads(argv[1])
    source = Source(spec.get("path"), spec.get("overrides") or {})
    try:
        config = source.load()
    except ConfigError as exc:
        _say(str(exc))
        return 2
    return serve(source, config)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
