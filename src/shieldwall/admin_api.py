"""The admin listener's route contract.

The proxy owns the admin listener (default 127.0.0.1:9180: ``/healthz``,
``/metrics`` and ``/api/...``) and its token check; each part contributes
routes as plain async handlers over these records, so parts never import the
proxy and the CLI's ``ban``/``unban``/``status``/``mode`` are clients of this
API, not file editors.

Authentication: every route with ``auth=True`` requires
``Authorization: Bearer <token>`` where the token comes from the config
(``admin.token``) or the ``SHIELDWALL_ADMIN_TOKEN`` environment variable,
or the operator console's session cookie (shieldwall.console: a browser
logs in once with the token; its changes also need a CSRF token and a
same-origin request).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AdminRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers, names in lower case (the last one wins when repeated)."""

    def json(self) -> Any:
        """The body parsed as JSON; ``{}`` for an empty body. Raises ValueError."""
        return json.loads(self.body) if self.body.strip() else {}


@dataclass(frozen=True, slots=True)
class AdminResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (Set-Cookie, Content-Disposition, ...)."""

    @classmethod
    def of_json(cls, value: Any, status: int = 200) -> AdminResponse:
        return cls(status, json.dumps(value, sort_keys=True).encode() + b"\n")

    @classmethod
    def error(cls, status: int, message: str) -> AdminResponse:
        return cls.of_json({"error": message}, status)


AdminHandler = Callable[[AdminRequest], Awaitable[AdminResponse]]


@dataclass(frozen=True, slots=True)
class AdminRoute:
    method: str
    path: str
    handler: AdminHandler
    auth: bool = True
