"""monitor.toml -> validated settings. Every problem in one error, each with
its key path, the bad value and what would be accepted.

The quick start (``--check URL --every 30s --notify URL``) builds the same
settings object, so both routes share every rule below.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shieldwall.monitor._delivery import RetryPolicy
from shieldwall.monitor._duration import ACCEPTED as DURATION_ACCEPTED
from shieldwall.monitor._duration import parse_duration
from shieldwall.monitor._escalation import Policy, Step, Window

TOKEN_ENV = "SHIELDWALL_MONITOR_TOKEN"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_ACCEPTED = "letters, digits, '_', '.', '-' (1-64, starting with a letter or digit)"


class ConfigError(Exception):
    """Every problem found, one per line in ``problems``."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(problems)} problem(s) in the monitor config\n  " + "\n  ".join(problems))


def _duration(v: Any) -> float:
    return parse_duration(v)


Duration = Annotated[float, BeforeValidator(_duration)]


def _name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME.match(v):
        raise ValueError(f"expected a name made of {_NAME_ACCEPTED}")
    return v


Name = Annotated[str, BeforeValidator(_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSettings(_Strict):
    """One URL to watch and what "up" means for it."""

    name: Name
    url: str
    method: Literal["GET", "HEAD"] = "GET"
    interval: Duration = 30.0
    timeout: Duration = 10.0
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    max_latency: Duration | None = None
    body_contains: str | None = None
    body_excludes: str | None = None
    tls_min_days: Annotated[float, Field(ge=0)] | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    probes: list[str] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("expected an http:// or https:// URL, like https://shop.example/")
        return v

    def accepts(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 400
        return status in self.expect_status

    def public(self) -> dict[str, Any]:
        """What a remote probe needs to run this check (no secrets of ours)."""
        return self.model_dump(exclude={"probes", "ca_file"})


class LocalProbeSettings(_Strict):
    name: Name
    source_address: str | None = None


class RemoteProbeSettings(_Strict):
    name: Name
    token: Annotated[str, Field(min_length=16)]


class ProbeSettings(_Strict):
    local: list[LocalProbeSettings] = Field(default_factory=lambda: [LocalProbeSettings(name="local")])
    remote: list[RemoteProbeSettings] = Field(default_factory=list)
    quorum: Annotated[int, Field(ge=1)] | None = None
    confirm_rounds: Annotated[int, Field(ge=1, le=100)] = 2
    recover_rounds: Annotated[int, Field(ge=1, le=100)] = 1

    def names(self) -> list[str]:
        return [p.name for p in self.local] + [p.name for p in self.remote]


class StepSettings(_Strict):
    after: Duration = 0.0
    notify: Annotated[list[str], Field(min_length=1)]


class AlertSettings(_Strict):
    targets: dict[str, str | list[str]] = Field(default_factory=dict)
    escalation: list[StepSettings] | None = None
    realert_every: Duration | None = 600.0
    fallback: list[str] = Field(default_factory=list)
    retry_backoff: Duration = 2.0
    retry_backoff_max: Duration = 60.0

    def urls(self, target: str) -> list[str]:
        v = self.targets[target]
        return [v] if isinstance(v, str) else list(v)


class MaintenanceSettings(_Strict):
    start: dt.datetime
    end: dt.datetime
    reason: str = ""


class MonitorSection(_Strict):
    listen: str = "127.0.0.1:9190"
    data_dir: str = "monitor-data"
    api_token: str | None = None
    title: str = "Shop status"
    revenue_per_minute: Annotated[float, Field(ge=0)] = 0.0
    currency: str = "USD"
    shield_admin: str | None = None
    shield_token: str | None = None
    round_grace: Duration = 0.25


class MonitorSettings(_Strict):
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    checks: Annotated[list[CheckSettings], Field(min_length=1)]
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    maintenance: list[MaintenanceSettings] = Field(default_factory=list)

    # -- derived -------------------------------------------------------------
    def quorum(self) -> int:
        n = len(self.probes.names())
        return self.probes.quorum if self.probes.quorum is not None else n // 2 + 1

    def probes_for(self, check: CheckSettings) -> list[str]:
        return check.probes if check.probes is not None else self.probes.names()

    def places_for(self, check: CheckSettings) -> int:
        """Vantage points that are truly apart: every local probe runs on this
        host (one place, whatever its source address); each remote probe is
        counted as a place of its own."""
        mine = set(self.probes_for(check))
        local = any(p.name in mine for p in self.probes.local)
        return int(local) + sum(1 for p in self.probes.remote if p.name in mine)

    def quorum_for(self, check: CheckSettings) -> int:
        return min(self.quorum(), len(self.probes_for(check)))

    def policy(self) -> Policy:
        primary = [t for t in self.alerts.targets if t not in self.alerts.fallback] or list(self.alerts.targets)
        steps = self.alerts.escalation or [StepSettings(after=0.0, notify=primary)]
        return Policy(
            steps=tuple(Step(s.after, tuple(s.notify)) for s in steps if s.notify),
            realert_every=self.alerts.realert_every or None,
            fallback=tuple(self.alerts.fallback),
            maintenance=tuple(
                Window(_utc(m.start).timestamp(), _utc(m.end).timestamp(), m.reason)
                for m in self.maintenance
            ),
        )

    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.alerts.retry_backoff, self.alerts.retry_backoff_max, tuple(self.alerts.fallback))

    def api_token(self) -> str | None:
        return self.monitor.api_token or os.environ.get(TOKEN_ENV) or None


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


# -- errors --------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys accepted by the table at ``loc`` (for "unknown key" errors)."""
    model: Any = MonitorSettings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        model = _model_in(ann)
        if model is None:
            return None
    return list(model.model_fields) if hasattr(model, "model_fields") else None


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_MISSING_HINTS = {
    "checks": ' (add at least one [[checks]] table with name and url, like url = "https://shop.example/")',
    "name": " (letters, digits, '_', '.', '-')",
    "url": ' (like "https://shop.example/")',
    "notify": ' (a list of target names from [alerts.targets], like ["chat"])',
    "token": " (at least 16 characters, given to `shieldwall probe --token`)",
}


def _describe(err: Any) -> str:
    loc = tuple(err["loc"])
    path = _path(loc)
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        accepted = _fields_at(loc[:-1])
        hint = f"; accepted keys here: {', '.join(accepted)}" if accepted else ""
        return f"{path}: unknown key (got {value!r}){hint}"
    if kind == "missing":
        return f"{path}: required, missing{_MISSING_HINTS.get(str(loc[-1]), '')}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{path}: {msg} (got {value!r})"


def _cross_checks(s: MonitorSettings) -> list[str]:
    """Rules that join several tables; run only when each table is valid."""
    from shieldwall.monitor._alerts import valid_url  # apprise is slow to import; only when needed

    problems: list[str] = []
    names = s.probes.names()
    if len(set(names)) != len(names):
        problems.append(f"probes: probe names must be unique across local and remote (got {names})")
    if not names:
        problems.append("probes.local: at least one probe (local or remote) is needed (got none)")
    if s.probes.quorum is not None and s.probes.quorum > len(names):
        problems.append(
            f"probes.quorum: must be between 1 and the number of probes, {len(names)} (got {s.probes.quorum})"
        )
    checks = [c.name for c in s.checks]
    for i, c in enumerate(s.checks):
        if checks.count(c.name) > 1 and checks.index(c.name) == i:
            problems.append(f"checks[{i}].name: check names must be unique (got {c.name!r} twice)")
        if c.timeout >= c.interval:
            problems.append(
                f"checks[{i}].timeout: must be shorter than the interval ({c.interval:g}s) (got {c.timeout:g}s)"
            )
        for p in c.probes or []:
            if p not in names:
                problems.append(f"checks[{i}].probes: unknown probe {p!r}; configured probes: {', '.join(names)}")
        if c.tls_min_days is not None and (not c.url.startswith("https://") or not c.verify_tls):
            problems.append(
                f"checks[{i}].tls_min_days: needs an https:// URL with verify_tls = true "
                f"(use ca_file for a private CA) (got url={c.url!r}, verify_tls={c.verify_tls})"
            )
        if c.ca_file is not None and not Path(c.ca_file).is_file():
            problems.append(f"checks[{i}].ca_file: no such file (got {c.ca_file!r})")
    if not s.alerts.targets:
        problems.append("alerts.targets: name at least one Apprise URL to notify, like chat = \"json://host/hook\" (got none)")
    for name, urls in s.alerts.targets.items():
        for url in [urls] if isinstance(urls, str) else urls:
            if "://" not in url:
                problems.append(
                    f"alerts.targets.{name}: expected an Apprise URL like json://host/path or tgram://token/chat (got {url!r})"
                )
            elif not valid_url(url):
                scheme = url.split("://", 1)[0]
                problems.append(
                    f"alerts.targets.{name}: Apprise does not accept this {scheme}:// URL (bad or missing "
                    f"credentials or numbers? see the Apprise wiki for {scheme}://) (value not shown: it may hold secrets)"
                )
    for i, step in enumerate(s.alerts.escalation or []):
        for t in step.notify:
            if t not in s.alerts.targets:
                known = ", ".join(s.alerts.targets) or "none defined"
                problems.append(f"alerts.escalation[{i}].notify: unknown target {t!r}; targets: {known}")
    for t in s.alerts.fallback:
        if t not in s.alerts.targets:
            known = ", ".join(s.alerts.targets) or "none defined"
            problems.append(f"alerts.fallback: unknown target {t!r}; targets: {known}")
    if s.alerts.retry_backoff <= 0 or s.alerts.retry_backoff_max < s.alerts.retry_backoff:
        problems.append(
            "alerts.retry_backoff: must be positive and at most alerts.retry_backoff_max "
            f"(got {s.alerts.retry_backoff:g}s and {s.alerts.retry_backoff_max:g}s)"
        )
    afters = [st.after for st in s.alerts.escalation or []]
    if afters != sorted(afters):
        problems.append(f"alerts.escalation: steps must be in order of their delay (got {afters})")
    for i, m in enumerate(s.maintenance):
        if _utc(m.end) <= _utc(m.start):
            problems.append(f"maintenance[{i}].end: must be after start {m.start.isoformat()} (got {m.end.isoformat()})")
    if s.monitor.shield_admin is not None and not re.match(r"^https?://", s.monitor.shield_admin):
        problems.append(
            f"monitor.shield_admin: expected the shield's admin URL, like http://127.0.0.1:9180 (got {s.monitor.shield_admin!r})"
        )
    try:
        parse_listen(s.monitor.listen)
    except ValueError as e:
        problems.append(f"monitor.listen: {e} (got {s.monitor.listen!r})")
    return problems


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected host:port, like 127.0.0.1:9190")
    return host, int(port)


def validate(data: dict[str, Any], source: str = "") -> MonitorSettings:
    try:
        settings = MonitorSettings.model_validate(data)
    except ValidationError as e:
        raise ConfigError([_describe(err) for err in e.errors()], source) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(problems, source)
    return settings


def load(path: str | Path) -> MonitorSettings:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"cannot read the file: {e.strerror}"], str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError([f"not valid TOML: {e}"], str(p)) from None
    return validate(data, str(p))


def quick_start(
    urls: list[str],
    *,
    every: str,
    notify: list[str],
    data_dir: str,
    listen: str,
    timeout: str | None = None,
) -> MonitorSettings:
    """The settings behind ``shieldwall monitor --check URL --every 30s --notify URL``."""
    problems: list[str] = []
    try:
        interval = parse_duration(every)
    except ValueError as e:
        raise ConfigError([f"--every: {e}"]) from None
    t_out = timeout if timeout is not None else min(10.0, interval * 0.8)
    checks: list[dict[str, Any]] = []
    for i, url in enumerate(urls):
        host = re.sub(r"^https?://", "", url).split("/")[0].split(":")[0] or f"check{i + 1}"
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", host)[:60] or f"check{i + 1}"
        if any(c["name"] == name for c in checks):
            name = f"{name}-{i + 1}"
        checks.append({"name": name, "url": url, "interval": interval, "timeout": t_out})
    data = {
        "monitor": {"data_dir": data_dir, "listen": listen},
        "checks": checks,
        "alerts": {"targets": {f"notify-{i + 1}": u for i, u in enumerate(notify)}},
    }
    if not notify:
        problems.append("--notify: name at least one Apprise URL to page, like json://host/hook or tgram://token/chat")
    try:
        settings = validate(data, "command line")
    except ConfigError as e:
        problems += [_flagify(p) for p in e.problems if not (p.startswith("alerts.targets:") and not notify)]
        raise ConfigError(problems, "command line") from None
    if problems:
        raise ConfigError(problems, "command line")
    return settings


def _flagify(problem: str) -> str:
    return (
        problem.replace("checks[0].url", "--check")
        .replace("alerts.targets.notify-", "--notify #")
        .replace("alerts.targets", "--notify")
        .replace("checks[0].timeout", "--every/timeout")
    )


DURATION_HELP = DURATION_ACCEPTED
