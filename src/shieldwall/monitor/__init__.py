"""The monitor: know from outside that the shop is down, and wake a person.

Start reading here. Layout, pure core first (no sockets, no clock of its own):

    _quorum.py      ProbeResult, QuorumTracker: rounds, quorum, confirmation
    _incident.py    Incident and its transitions (open, update, ack, close)
    _escalation.py  Policy, Step, Window, due_pages/recovery_page: who, when
    _engine.py      MonitorCore: the three above as one object the shell drives
    _history.py     month report (uptime, MTTD, MTTR, revenue at risk), day bars
    _messages.py    the words on the phone
    _duration.py    "30s", "2m", "1h"

The IO shell:

    _config.py      monitor.toml / quick start -> MonitorSettings (ConfigError)
    _checks.py      run_check: one probe, one check, over httpx
    _store.py       SQLite (WAL): incidents and every notification sent
    _alerts.py      Apprise delivery (blocking; run in a thread pool)
    _shield.py      the shield's verdict, when it answers
    _service.py     Monitor: round loops, escalation loop, persistence
    _web.py         status page, /metrics, probe API, ack API (starlette)
    _statuspage.py  the HTML
    _remote.py      `shieldwall probe`: a probe on another host
    _cli.py         `monitor`, `probe`, `incidents`
"""

from shieldwall.monitor._config import ConfigError, MonitorSettings, load, quick_start
from shieldwall.monitor._engine import CheckRule, MonitorCore
from shieldwall.monitor._escalation import Page, PageKind, Policy, Step, Window
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._quorum import Health, ProbeResult, QuorumTracker

__all__ = [
    "CheckRule",
    "ConfigError",
    "Health",
    "Incident",
    "MonitorCore",
    "MonitorSettings",
    "Page",
    "PageKind",
    "Policy",
    "ProbeResult",
    "QuorumTracker",
    "Step",
    "Window",
    "load",
    "quick_start",
]
