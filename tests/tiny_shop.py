"""The smallest shop a shield can stand in front of: a threaded HTTP server on
127.0.0.1 (port from the OS) that records every path it serves, except the
shield's own health checks, so a test can assert what reached the shop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import ClassVar

PAGE = b"<html>the shop</html>"
STYLE = b"body{}"


class Shop(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.headers.get("User-Agent") != "shieldwall-health":
            Shop.hits.append(self.path)
        css = self.path.endswith(".css")
        body = STYLE if css else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/css" if css else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def running_shop() -> Iterator[str]:
    """Start the shop, yield its URL, stop it (also when the test fails)."""
    Shop.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
