"""PROXY protocol on the listener: a balancer in ``proxy_protocol_from`` names
the client, and the guard, the access log and the shop's X-Forwarded-For all
carry that client; a header from anyone else, a malformed one, a missing one
or one that never completes closes the connection with a log line."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy_backends import Backend, Reply, shield_config
from test_proxy_path import RecordingGate

from shieldwall.config import build_config
from shieldwall.http.proxy_protocol import v1_header, v2_header
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import run_shield

GET = b"GET /p HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend(lambda s: Reply(body=b"shop")).start()
    yield b
    await b.stop()


async def exchange(port: int, pieces: list[bytes], pause: float = 0.0, timeout: float = 5.0) -> bytes:
    """Send the pieces on one connection; return what came back before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        out = b""
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                out += chunk
        return out
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def balanced(backend: Backend, log: Path, balancer: str = "127.0.0.1/32", **over: object) -> dict[str, object]:
    return shield_config([backend.url], proxy_protocol_from=[balancer], access_log=str(log), **over)


async def test_v2_header_makes_the_relayed_client_the_client_everywhere(backend: Backend, tmp_path: Path) -> None:
    log, gate = tmp_path / "access.log", RecordingGate()
    async with run_shield(build_config(balanced(backend, log)), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, [v2_header(("203.0.113.9", 40000), ("192.0.2.1", 80)) + GET])
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"shop")
    assert gate.facts[0].client == "203.0.113.9"
    # the client's own X-Forwarded-For is not believed: it is not a trusted proxy
    assert backend.seen[0].header("x-forwarded-for") == "203.0.113.9"
    assert log.read_text().startswith("203.0.113.9 - - [")


async def test_v1_header_sent_a_byte_at_a_time_then_the_request(backend: Backend, tmp_path: Path) -> None:
    log, gate = tmp_path / "access.log", RecordingGate()
    header = v1_header(("2001:db8::7", 5555), ("::1", 443))
    async with run_shield(build_config(balanced(backend, log)), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, [header[i:i + 1] for i in range(len(header))] + [GET],
                             pause=0.005)
    assert out.startswith(b"HTTP/1.1 200")
    assert gate.facts[0].client == "2001:db8::7"
    assert backend.seen[0].header("x-forwarded-for") == "2001:db8::7"
    assert log.read_text().startswith("2001:db8::7 - - [")


async def test_header_and_request_in_one_segment_keep_alive_requests_stay_that_client(
        backend: Backend, tmp_path: Path) -> None:
    log, gate = tmp_path / "access.log", RecordingGate()
    keep = b"GET /a HTTP/1.1\r\nHost: shop\r\n\r\n"
    async with run_shield(build_config(balanced(backend, log)), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, [v1_header(("198.51.100.4", 1), ("127.0.0.1", 2)) + keep + GET])
    assert out.count(b"HTTP/1.1 200") == 2
    assert [f.client for f in gate.facts] == ["198.51.100.4", "198.51.100.4"]


async def test_local_command_is_the_balancer_itself(backend: Backend, tmp_path: Path) -> None:
    log, gate = tmp_path / "access.log", RecordingGate()
    async with run_shield(build_config(balanced(backend, log)), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, [v2_header(None) + GET])
    assert out.startswith(b"HTTP/1.1 200")
    assert gate.facts[0].client == "127.0.0.1"


@pytest.mark.parametrize("forged", [
    v1_header(("192.0.2.66", 1), ("127.0.0.1", 2)),
    v2_header(("192.0.2.66", 1), ("127.0.0.1", 2)),
])
async def test_a_clients_own_header_behind_the_balancers_is_not_trusted(
        backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str], forged: bytes) -> None:
    """A cloud balancer (AWS NLB) passes on whatever the client sends after its
    own header: the second header comes from the client the first one named,
    which is not a balancer, so the connection is closed, never trusted."""
    log, gate = tmp_path / "access.log", RecordingGate()
    async with run_shield(build_config(balanced(backend, log)), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, [v2_header(("203.0.113.9", 40000), ("192.0.2.1", 80)) + forged + GET])
    assert out == b""
    assert backend.seen == [] and gate.facts == []
    err = capfd.readouterr().err
    assert "proxy_protocol 203.0.113.9: header from a peer not in proxy_protocol_from" in err, err


@pytest.mark.parametrize("pieces, logged", [
    ([GET], "no PROXY protocol header"),
    ([b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n" + GET], "over 65535"),
    ([b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x08" + bytes(8) + GET], "address block"),
    ([b"PROXY TCP4 1.2.3.4 ", b"5.6.7.8 1 2\n" + GET], "CRLF"),
])
async def test_malformed_or_missing_header_from_the_balancer_closes(
        backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        pieces: list[bytes], logged: str) -> None:
    gate = RecordingGate()
    async with run_shield(build_config(balanced(backend, tmp_path / "a.log")), Wiring(gate=gate)) as shield:
        out = await exchange(shield.port, pieces, pause=0.05)
    assert out == b""
    assert backend.seen == [] and gate.facts == []
    err = capfd.readouterr().err
    assert "proxy_protocol 127.0.0.1: " in err and logged in err, err


async def test_header_that_never_completes_is_closed_at_the_header_timeout(
        backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = balanced(backend, tmp_path / "a.log", timeouts={"header": 0.3})
    async with run_shield(build_config(config), Wiring(gate=RecordingGate())) as shield:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await exchange(shield.port, [b"PROXY TCP4 1.2.3.4"], timeout=3.0)
        took = loop.time() - t0
    assert out == b"" and 0.25 < took < 2.5
    assert "no complete header within 0.3 s" in capfd.readouterr().err
    assert backend.seen == []


async def test_header_from_a_peer_outside_proxy_protocol_from_is_never_trusted(
        backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    gate = RecordingGate()
    config = balanced(backend, tmp_path / "a.log", balancer="10.9.0.0/16")
    async with run_shield(build_config(config), Wiring(gate=gate)) as shield:
        v1 = await exchange(shield.port, [v1_header(("203.0.113.9", 1), ("127.0.0.1", 2)) + GET])
        v2 = await exchange(shield.port, [v2_header(("203.0.113.9", 1)) + GET])
        plain = await exchange(shield.port, [GET])
    assert v1 == b"" and v2 == b""
    assert plain.startswith(b"HTTP/1.1 200")  # a peer that is not a balancer speaks plain HTTP
    assert [f.client for f in gate.facts] == ["127.0.0.1"]
    assert "proxy_protocol 127.0.0.1: header from a peer not in proxy_protocol_from" in capfd.readouterr().err


async def test_tcp_health_check_connect_and_close_is_not_an_error(
        backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async with run_shield(build_config(balanced(backend, tmp_path / "a.log")),
                          Wiring(gate=RecordingGate())) as shield:
        for _ in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", shield.port)
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.1)
        out = await exchange(shield.port, [v2_header(("192.0.2.50", 7)) + GET])
    assert out.startswith(b"HTTP/1.1 200")
    assert "proxy_protocol" not in capfd.readouterr().err


async def test_tls_behind_the_header_is_left_whole_for_the_handshake(backend: Backend, tmp_path: Path) -> None:
    # The header is read off the socket before any transport exists, and only
    # its own bytes: the ClientHello behind it reaches the TLS layer intact.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    gate = RecordingGate()
    config = balanced(backend, tmp_path / "a.log", tls={"cert": str(cert), "key": str(key)})
    async with run_shield(build_config(config), Wiring(gate=gate)) as shield:
        sock = socket.create_connection(("127.0.0.1", shield.port))
        sock.sendall(v2_header(("203.0.113.77", 1234)))
        sock.setblocking(False)
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost")
        writer.write(GET)
        out = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert out.startswith(b"HTTP/1.1 200")
    assert gate.facts[0].client == "203.0.113.77" and gate.facts[0].tls
    assert backend.seen[0].header("x-forwarded-proto") == "https"
