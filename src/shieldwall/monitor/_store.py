"""Incidents and every notification sent, in SQLite (WAL), so a restarted
monitor resumes open incidents and never pages twice for the same step.

A notification row is written *before* Apprise is called ("sending") and
finished after ("sent"/"failed"): a crash between the two loses at most that
one page and never repeats it. Failed deliveries are retried a few times.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shieldwall.monitor._incident import Incident

DB_NAME = "monitor.sqlite3"
MAX_ATTEMPTS = 3

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
"""


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


def _notification(row: sqlite3.Row) -> Notification:
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

    def resumable(self) -> list[tuple[Incident, list[str]]]:
        """Open incidents, and closed ones still owing their recovery message,
        each with the page keys that must not be sent again."""
        rows = self._db.execute(
            "SELECT * FROM incidents i WHERE i.ended_at IS NULL OR ("
            " EXISTS (SELECT 1 FROM notifications n WHERE n.incident_id = i.id AND n.key LIKE 'step:%')"
            " AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.incident_id = i.id AND n.key = 'recovery'"
            "   AND n.status != 'failed'))"
        ).fetchall()
        out = []
        for row in rows:
            inc = _incident(row)
            out.append((inc, self.done_keys(inc.id)))
        return out

    # -- notifications -----------------------------------------------------------
    def done_keys(self, incident_id: int) -> list[str]:
        """Keys never to send again: sent, possibly sent (a crash mid-send), or out of retries."""
        rows = self._db.execute(
            "SELECT key FROM notifications WHERE incident_id = ? AND (status != 'failed' OR attempts >= ?)",
            (incident_id, MAX_ATTEMPTS),
        )
        return [r["key"] for r in rows]

    def begin_notification(
        self,
        incident_id: int,
        key: str,
        kind: str,
        targets: tuple[str, ...],
        title: str,
        body: str,
        now: float,
    ) -> int | None:
        """Claim ``key`` for sending; None if it was sent (or is being sent) already."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, status, attempts FROM notifications WHERE incident_id = ? AND key = ?",
                (incident_id, key),
            ).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO notifications (incident_id, key, kind, targets, title, body, status, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, 'sending', ?)",
                    (incident_id, key, kind, json.dumps(list(targets)), title, body, now),
                )
                return int(cur.lastrowid or 0)
            if row["status"] == "failed" and row["attempts"] < MAX_ATTEMPTS:
                db.execute(
                    "UPDATE notifications SET status = 'sending', attempts = attempts + 1, title = ?, "
                    "body = ? WHERE id = ?",
                    (title, body, row["id"]),
                )
                return int(row["id"])
            return None

    def finish_notification(self, row_id: int, *, ok: bool, error: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE notifications SET status = ?, sent_at = ?, error = ? WHERE id = ?",
                ("sent" if ok else "failed", now if ok else None, error, row_id),
            )

    def notifications(self, incident_id: int | None = None) -> list[Notification]:
        if incident_id is None:
            rows = self._db.execute("SELECT * FROM notifications ORDER BY id")
        else:
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE incident_id = ? ORDER BY id", (incident_id,)
            )
        return [_notification(r) for r in rows]

    def attempts_left(self, incident_id: int, key: str) -> bool:
        row = self._db.execute(
            "SELECT attempts, status FROM notifications WHERE incident_id = ? AND key = ?",
            (incident_id, key),
        ).fetchone()
        return row is None or (row["status"] == "failed" and row["attempts"] < MAX_ATTEMPTS)
