"""The shield's configuration: TOML -> validated, typed settings.

Layering (lowest first): model defaults -> the TOML file -> CLI flags, where
each flag is the config field of the same name (``--listen`` is ``listen``,
``--backend URL`` adds ``[[backends]] url = URL``, ``--admin`` is
``admin.listen``, ``--workers`` is ``workers``).

Every model forbids unknown keys. :func:`load_config` never exits: it raises a
single :class:`ConfigError` whose lines each name a key path
(``backends[1].url``), the bad value and what would be accepted; only the CLI
turns that into an exit status.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shieldwall.detect.settings import DetectSettings
from shieldwall.guard.settings import GuardSettings


class ConfigError(Exception):
    """Every problem found in a config, one per line (``problems``)."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(problems)} problem(s)\n" + "\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hostport(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port). Raises ValueError."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("expected host:port, like 127.0.0.1:8080")
    host, _, port_s = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError("expected host:port with a port 0-65535, like 127.0.0.1:8080")
    return host, int(port_s)


def _check_hostport(value: str) -> str:
    parse_hostport(value)
    return value


class Backend(_Strict):
    url: str = Field(description="http://host:port of one shop backend")
    weight: int = Field(default=1, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError("expected an http:// URL with host and port, like http://127.0.0.1:9001") from exc
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError("expected an http:// URL with host and port, like http://127.0.0.1:9001")
        del port
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def key(self) -> str:
        """``host:port``, the name used in logs, metrics and admission."""
        return f"{self.host}:{self.port}"


class TLSSettings(_Strict):
    cert: str = ""
    key: str = ""

    @model_validator(mode="after")
    def _both(self) -> TLSSettings:
        if bool(self.cert) != bool(self.key):
            raise ValueError("expected both cert and key (PEM file paths), or neither")
        for name in ("cert", "key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"expected {name} to be a readable PEM file, {path!r} is not a file")
        return self


class AdminSettings(_Strict):
    listen: str = "127.0.0.1:9180"
    token: str = ""

    _v_listen = field_validator("listen")(_check_hostport)


class Limits(_Strict):
    max_connections: int = Field(default=10000, ge=1)
    max_connections_per_client: int = Field(default=256, ge=1)
    max_request_line: int = Field(default=8192, ge=64)
    max_header_bytes: int = Field(default=16384, ge=256)
    max_headers: int = Field(default=100, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)


class Timeouts(_Strict):
    header: float = Field(default=10.0, gt=0)
    idle: float = Field(default=60.0, gt=0)
    min_body_rate: float = Field(default=1024.0, ge=0)
    body_grace: float = Field(default=5.0, gt=0)
    send: float = Field(default=30.0, gt=0)
    upstream_connect: float = Field(default=3.0, gt=0)
    upstream_response: float = Field(default=30.0, gt=0)
    drain: float = Field(default=10.0, ge=0)


class HealthCheck(_Strict):
    enabled: bool = True
    path: str = "/"
    interval: float = Field(default=2.0, gt=0)
    timeout: float = Field(default=1.0, gt=0)
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)
    panic_threshold: float = Field(default=0.5, ge=0, le=1)
    """Under this share of backends passing the check, route to all of them."""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in " \r\n"):
            raise ValueError("expected an absolute path like /healthz")
        return v


class UpstreamSettings(_Strict):
    keepalive: int = Field(default=128, ge=0)
    idle_timeout: float = Field(default=4.0, gt=0)
    max_fails: int = Field(default=3, ge=1)
    eject_time: float = Field(default=10.0, gt=0)
    retry: bool = True
    health: HealthCheck = HealthCheck()


class CacheSettings(_Strict):
    enabled: bool = True
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_object_bytes: int = Field(default=1024 * 1024, ge=0)
    max_stale: float = Field(default=86400.0, gt=0)
    refresh: float = Field(default=1.0, ge=0)


class Config(_Strict):
    listen: str = "127.0.0.1:8080"
    workers: int = Field(default=1, ge=1, le=64)
    access_log: str = "-"
    trusted_proxies: tuple[str, ...] = ()
    proxy_protocol_from: tuple[str, ...] = ()
    backends: tuple[Backend, ...] = Field(min_length=1)
    tls: TLSSettings = TLSSettings()
    admin: AdminSettings = AdminSettings()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    upstream: UpstreamSettings = UpstreamSettings()
    cache: CacheSettings = CacheSettings()
    guard: GuardSettings = GuardSettings()
    detect: DetectSettings = DetectSettings()

    _v_listen = field_validator("listen")(_check_hostport)

    @field_validator("trusted_proxies", "proxy_protocol_from")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"expected CIDRs like 10.0.0.0/8 or ::1/128, got {item!r}") from exc
        return v

    @property
    def listen_addr(self) -> tuple[str, int]:
        return parse_hostport(self.listen)

    @property
    def admin_addr(self) -> tuple[str, int]:
        return parse_hostport(self.admin.listen)

    def summary(self) -> str:
        tls = " (tls)" if self.tls.cert else ""
        return (
            f"listen {self.listen}{tls}, {len(self.backends)} backend(s) "
            f"({', '.join(b.key for b in self.backends)}), {self.workers} worker(s), "
            f"admin {self.admin.listen}"
        )


# What each pydantic error type means to a person editing the file.
_EXPECT = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            model = args[0]
        else:
            model = None
    return model


def _describe(err: Any) -> str:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    where = _path(loc)
    if kind == "missing":
        if loc == ("backends",):
            return "backends: missing; expected at least one [[backends]] table with a url"
        return f"{where}: missing; expected a value"
    value = err.get("input")
    got = repr(value)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        keys = ", ".join(sorted(parent.model_fields)) if parent else "none"
        return f"{where}: unknown key; accepted keys here: {keys}"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return f"{where}: {got} is not accepted; {msg}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sym = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
               "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"{where}: {got} is not accepted; expected a number {sym} {shown}"
    if kind == "too_short" and loc == ("backends",):
        return f"{where}: {got} is not accepted; expected at least one [[backends]] table with a url"
    expect = _EXPECT.get(kind, err["msg"].lower())
    return f"{where}: {got} is not accepted; expected {expect}"


def build_config(data: dict[str, Any], source: str = "") -> Config:
    """Validate a mapping (a parsed TOML document plus CLI overrides)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()], source) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read the file ({exc.strerror})"], str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{p}: not UTF-8 text; expected a TOML file"], str(p)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML: {exc}"], str(p)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read, merge CLI overrides over the file, validate. Raises ConfigError."""
    data = read_toml(path)
    if overrides:
        data = merge(data, overrides)
    return build_config(data, str(path))


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def cli_overrides(
    listen: str | None = None,
    backends: list[str] | None = None,
    admin: str | None = None,
    workers: int | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """CLI flags -> the config fields of the same names."""
    out: dict[str, Any] = {}
    if mode is not None:
        out["guard"] = {"mode": mode}
    if listen is not None:
        out["listen"] = listen
    if backends:
        out["backends"] = [{"url": u} for u in backends]
    if admin is not None:
        out["admin"] = {"listen": admin}
    if workers is not None:
        out["workers"] = workers
    return out
