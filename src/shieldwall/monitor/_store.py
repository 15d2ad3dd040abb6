"""Incidents and every page owed or sent, in SQLite (WAL), so a restarted
monitor resumes open incidents and every page it cannot prove was delivered.

A page (``notifications``: incident, key, deduplication key) is written when
it is planned, before anything is sent; each of its channels
(``deliveries``) is ``pending`` until the provider accepted it, then
``sent``. A crash between a send and its record leaves it ``pending``: the
restarted monitor sends it again, with the same deduplication key, and the
receiver folds the two (at least once, the convention for paging).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shieldwall.monitor._delivery import Delivery, DeliveryStatus, Outgoing, dedup_key
from shieldwall.monitor._escalation import Page, PageKind
from shieldwall.monitor._incident import Incident

DB_NAME = "monitor.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checks (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    started_at REAL NOT NULL,
    declared_at REAL NOT NULL,
    reason TEXT NOT NULL,
    probes TEXT NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    recovered_at REAL,
    acked_at REAL,
    acked_by TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    verdict_kind TEXT,
    quiet INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS incidents_started ON incidents (started_at);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    targets TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    sent_at REAL,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (incident_id, key)
);
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    sent_at REAL,
    error TEXT NOT NULL DEFAULT '',
    fallback INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, target)
);
CREATE TABLE IF NOT EXISTS observed (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    span_start REAL NOT NULL,
    span_end REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS observed_end ON observed (span_end);
"""

# columns added after the first release: (table, column, definition)
_ADDED = (
    ("notifications", "dedup", "TEXT NOT NULL DEFAULT ''"),
    ("notifications", "step", "INTEGER NOT NULL DEFAULT -1"),
    ("notifications", "due_at", "REAL"),
    ("notifications", "exhausted", "REAL"),
)
OWED = ("pending", "sending", "failed")  # "sending"/"failed": rows written before at-least-once


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    incident_id: int
    key: str
    kind: str
    targets: tuple[str, ...]
    title: str
    body: str
    status: str
    attempts: int
    created_at: float
    sent_at: float | None
    error: str
    dedup: str = ""
    deliveries: tuple[DeliveryRow, ...] = ()

    @property
    def undelivered(self) -> bool:
        return self.status in OWED and self.attempts > 0


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    target: str
    status: str
    attempts: int
    sent_at: float | None
    error: str
    fallback: bool


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"],
        check=row["check_name"],
        started_at=row["started_at"],
        declared_at=row["declared_at"],
        reason=row["reason"],
        probes=tuple(json.loads(row["probes"])),
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
        recovered_at=row["recovered_at"],
        acked_at=row["acked_at"],
        acked_by=row["acked_by"],
        verdict=row["verdict"],
        verdict_kind=row["verdict_kind"],
        quiet=bool(row["quiet"]),
    )


def _notification(row: sqlite3.Row, deliveries: tuple[DeliveryRow, ...] = ()) -> Notification:
    return Notification(
        id=row["id"],
        incident_id=row["incident_id"],
        key=row["key"],
        kind=row["kind"],
        targets=tuple(json.loads(row["targets"])),
        title=row["title"],
        body=row["body"],
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        error=row["error"],
        dedup=row["dedup"],
        deliveries=deliveries,
    )


class Store:
    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no monitor data at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            for table, column, definition in _ADDED:
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        self._db.row_factory = sqlite3.Row

    @classmethod
    def in_dir(cls, data_dir: str | Path, *, readonly: bool = False) -> Store:
        return cls(Path(data_dir) / DB_NAME, readonly=readonly)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta and checks -------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def note_check(self, name: str, url: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO checks (name, url, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET url = excluded.url, last_seen = excluded.last_seen",
                (name, url, now, now),
            )

    def first_seen(self) -> float | None:
        row = self._db.execute("SELECT MIN(first_seen) AS t FROM checks").fetchone()
        return None if row is None or row["t"] is None else float(row["t"])

    def last_seen(self) -> float | None:
        row = self._db.execute("SELECT MAX(last_seen) AS t FROM checks").fetchone()
        return None if row is None or row["t"] is None else float(row["t"])

    def observe(self, check: str, span: tuple[float, float], *, new: bool) -> None:
        """Record that ``check`` was watched over ``span`` (a new span, or the
        latest one of the check grown to it)."""
        with self._tx() as db:
            if not new:
                cur = db.execute(
                    "UPDATE observed SET span_end = ? WHERE id = (SELECT MAX(id) FROM observed WHERE check_name = ?)"
                    " AND span_start = ?",
                    (span[1], check, span[0]),
                )
                if cur.rowcount:
                    return
            db.execute("INSERT INTO observed (check_name, span_start, span_end) VALUES (?, ?, ?)", (check, span[0], span[1]))

    def observed(self, check: str | None = None, *, since: float | None = None) -> list[tuple[float, float]]:
        """The spans a check (any check) was watched, oldest first."""
        sql = "SELECT span_start, span_end FROM observed WHERE 1 = 1"
        args: list[str | float] = []
        if check is not None:
            sql += " AND check_name = ?"
            args.append(check)
        if since is not None:
            sql += " AND span_end >= ?"
            args.append(since)
        rows = self._db.execute(sql + " ORDER BY span_start", args)
        return [(float(r["span_start"]), float(r["span_end"])) for r in rows]

    # -- incidents -------------------------------------------------------------
    def save_incident(self, inc: Incident) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO incidents (id, check_name, started_at, declared_at, reason, probes, "
                "updated_at, ended_at, recovered_at, acked_at, acked_by, verdict, verdict_kind, quiet) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, probes = excluded.probes, "
                "updated_at = excluded.updated_at, ended_at = excluded.ended_at, "
                "recovered_at = excluded.recovered_at, acked_at = excluded.acked_at, "
                "acked_by = excluded.acked_by, verdict = excluded.verdict, "
                "verdict_kind = excluded.verdict_kind",
                (
                    inc.id,
                    inc.check,
                    inc.started_at,
                    inc.declared_at,
                    inc.reason,
                    json.dumps(list(inc.probes)),
                    inc.updated_at,
                    inc.ended_at,
                    inc.recovered_at,
                    inc.acked_at,
                    inc.acked_by,
                    inc.verdict,
                    inc.verdict_kind,
                    int(inc.quiet),
                ),
            )

    def incident(self, incident_id: int) -> Incident | None:
        row = self._db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return None if row is None else _incident(row)

    def incidents(self, *, since: float | None = None, limit: int | None = None) -> list[Incident]:
        sql = "SELECT * FROM incidents"
        args: list[float | int] = []
        if since is not None:
            sql += " WHERE ended_at IS NULL OR ended_at >= ?"
            args.append(since)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_incident(r) for r in self._db.execute(sql, args)]

    def next_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM incidents").fetchone()
        return int(row["n"])

    def resumable(self) -> list[tuple[Incident, list[Outgoing]]]:
        """Open incidents, and closed ones still owing a page (or their
        recovery message), each with every page planned for it."""
        rows = self._db.execute(
            "SELECT * FROM incidents i WHERE i.ended_at IS NULL"
            " OR EXISTS (SELECT 1 FROM notifications n WHERE n.incident_id = i.id"
            f"   AND n.status IN ({', '.join('?' * len(OWED))}))"
            " OR (EXISTS (SELECT 1 FROM notifications n WHERE n.incident_id = i.id AND n.key LIKE 'step:%')"
            "   AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.incident_id = i.id AND n.key = 'recovery'))",
            OWED,
        ).fetchall()
        return [(inc, self.outbox(inc.id)) for inc in map(_incident, rows)]

    # -- pages -------------------------------------------------------------------
    def outbox(self, incident_id: int) -> list[Outgoing]:
        """Every page planned for the incident, in the order planned. Rows from
        before per-channel delivery become one pending delivery per target,
        unless they were sent: what is not proven sent is owed."""
        out = []
        for row in self._db.execute("SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", (incident_id,)):
            targets = tuple(json.loads(row["targets"]))
            kind = PageKind(row["kind"])
            page = Page(row["key"], kind, targets, row["due_at"] or row["created_at"], row["step"])
            if row["step"] < 0 and row["key"].startswith("step:"):
                page = Page(row["key"], kind, targets, page.due_at, int(row["key"].split(":", 1)[1]))
            o = Outgoing(incident_id, page, row["dedup"] or dedup_key("old", incident_id, row["key"]), row["created_at"])
            o.exhausted = row["exhausted"]
            got = self._db.execute("SELECT * FROM deliveries WHERE notification_id = ?", (row["id"],)).fetchall()
            for d in got:
                o.deliveries[d["target"]] = Delivery(
                    d["target"],
                    DeliveryStatus(d["status"]),
                    d["attempts"],
                    d["next_try"],
                    d["error"],
                    d["sent_at"],
                    bool(d["fallback"]),
                )
            if not got:
                sent = row["status"] == "sent"
                for t in targets:
                    o.deliveries[t] = Delivery(
                        t,
                        DeliveryStatus.SENT if sent else DeliveryStatus.PENDING,
                        row["attempts"],
                        0.0,
                        row["error"],
                        row["sent_at"] if sent else None,
                    )
            out.append(o)
        return out

    def save_outgoing(self, o: Outgoing, *, title: str = "", body: str = "", now: float = 0.0) -> None:
        """Write the page and each channel's state (title and body: the words
        last sent, kept when not given)."""
        status = o.status.value
        sent_at = max((d.sent_at for d in o.deliveries.values() if d.sent_at is not None), default=None)
        errors = [f"{d.target}: {d.error}" for d in o.pending if d.error]
        with self._tx() as db:
            db.execute(
                "INSERT INTO notifications (incident_id, key, kind, targets, title, body, status, attempts, "
                "created_at, sent_at, error, dedup, step, due_at, exhausted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (incident_id, key) DO UPDATE SET targets = excluded.targets, "
                "title = COALESCE(NULLIF(excluded.title, ''), title), "
                "body = COALESCE(NULLIF(excluded.body, ''), body), status = excluded.status, "
                "attempts = excluded.attempts, sent_at = excluded.sent_at, error = excluded.error, "
                "dedup = excluded.dedup, exhausted = excluded.exhausted",
                (
                    o.incident_id,
                    o.key,
                    o.page.kind.value,
                    json.dumps(list(o.deliveries)),
                    title,
                    body,
                    status,
                    o.attempts,
                    o.created_at or now,
                    sent_at,
                    "; ".join(errors),
                    o.dedup,
                    o.page.step,
                    o.page.due_at,
                    o.exhausted,
                ),
            )
            nid = db.execute(
                "SELECT id FROM notifications WHERE incident_id = ? AND key = ?", (o.incident_id, o.key)
            ).fetchone()["id"]
            db.executemany(
                "INSERT OR REPLACE INTO deliveries (notification_id, target, status, attempts, next_try, sent_at, "
                "error, fallback) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (nid, d.target, d.status.value, d.attempts, d.next_try, d.sent_at, d.error, int(d.fallback))
                    for d in o.deliveries.values()
                ],
            )

    def notifications(self, incident_id: int | None = None) -> list[Notification]:
        if incident_id is None:
            rows = self._db.execute("SELECT * FROM notifications ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", (incident_id,)
            ).fetchall()
        out = []
        for r in rows:
            ds = tuple(
                DeliveryRow(d["target"], d["status"], d["attempts"], d["sent_at"], d["error"], bool(d["fallback"]))
                for d in self._db.execute("SELECT * FROM deliveries WHERE notification_id = ? ORDER BY rowid", (r["id"],))
            )
            out.append(_notification(r, ds))
        return out

    def undelivered(self) -> list[Notification]:
        """Pages tried and not yet through, oldest first."""
        rows = self._db.execute(
            f"SELECT DISTINCT incident_id FROM notifications WHERE status IN ({', '.join('?' * len(OWED))})"
            " AND attempts > 0",
            OWED,
        ).fetchall()
        owed = [n for r in rows for n in self.notifications(r["incident_id"]) if n.undelivered]
        return sorted(owed, key=lambda n: n.id)
