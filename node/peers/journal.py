"""A local journal (SQLite) of what a node has done, so a restart resumes without repeating.

Each entry is keyed by ``(scope, task_id, round, step)`` — e.g. ``(…, 3, 2, "committed")`` — and
carries a small JSON payload (a CID, a digest, a salt). The scope names the deployment and the task
(:class:`marketplace.protocol.scope.TaskScope`: chain id, market address, task id, creation block
hash): a peer binds its journal to its task's scope (:meth:`Journal.bind`), and entries written
for another deployment — a devnet restarted and redeployed reuses addresses and task ids — are
never returned, so a node never resumes the previous chain's task. Writes are transactions with
``synchronous=FULL``, so an entry that :meth:`Journal.get` returns survived a crash. The journal
is a cache of intent and results, never the source of truth: every on-chain action also checks the
chain first (a node whose journal was lost still does not double-commit; the contract refuses a
second commit anyway).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.protocol.scope import TaskScope

log = logging.getLogger(__name__)

# Journals written before scopes existed kept a table ``journal`` without one; its entries belong
# to no known deployment and are never read.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    scope     TEXT    NOT NULL,
    task_id   INTEGER NOT NULL,
    round     INTEGER NOT NULL,
    step      TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    written_at REAL   NOT NULL,
    PRIMARY KEY (scope, task_id, round, step)
);
"""
UNBOUND = ""  # the scope of a journal no peer has bound (unit tests, tools)


@dataclass(frozen=True)
class JournalEntry:
    task_id: int
    round: int
    step: str
    payload: dict[str, Any]
    written_at: float


class Journal:
    """The node's journal in ``path`` (created if missing). Safe to share between threads.

    Unbound until :meth:`bind` (every :class:`node.peers.base.Peer` binds its journal to its
    task's scope when it is created)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.scope = UNBOUND

    def bind(self, scope: TaskScope) -> None:
        """Read and write only ``scope``'s entries from now on; says so (once) when the file
        holds entries for the same task id of another deployment, which are ignored."""
        self.scope = scope.key
        with self._lock:
            (others,) = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE task_id=? AND scope<>?",
                (scope.task_id, self.scope),
            ).fetchone()
        if others:
            log.warning(
                "journal %s: %d entries for task %d of another deployment are ignored "
                "(this is %s)",
                self.path, others, scope.task_id, scope.describe(),
            )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, task_id: int, round_: int, step: str) -> dict[str, Any] | None:
        """The payload recorded for this step, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT payload FROM entries WHERE scope=? AND task_id=? AND round=? AND step=?",
                (self.scope, task_id, round_, step),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def has(self, task_id: int, round_: int, step: str) -> bool:
        return self.get(task_id, round_, step) is not None

    def record(
        self, task_id: int, round_: int, step: str, payload: dict[str, Any] | None = None
    ) -> None:
        """Record a step (replacing an earlier record of the same step)."""
        text = json.dumps(payload or {}, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (self.scope, task_id, round_, step, text, time.time()),
            )

    def record_once(
        self, task_id: int, round_: int, step: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record a step unless already recorded; returns the payload that is on record.

        Used for values that must never change once chosen (an oracle's salt, a committed CID).
        """
        text = json.dumps(payload or {}, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (self.scope, task_id, round_, step, text, time.time()),
            )
            row = self._db.execute(
                "SELECT payload FROM entries WHERE scope=? AND task_id=? AND round=? AND step=?",
                (self.scope, task_id, round_, step),
            ).fetchone()
        return dict(json.loads(row[0]))

    def entries(self, task_id: int | None = None) -> Iterator[JournalEntry]:
        query = "SELECT task_id, round, step, payload, written_at FROM entries WHERE scope=?"
        args: tuple[Any, ...] = (self.scope,)
        if task_id is not None:
            query += " AND task_id=?"
            args = (self.scope, task_id)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY written_at", args).fetchall()
        for t, r, s, p, w in rows:
            yield JournalEntry(int(t), int(r), str(s), dict(json.loads(p)), float(w))
