"""The index's SQLite schema (versioned) and how a file is opened.

Every table that holds chain-derived rows has a ``block`` column, so a reorganization is undone
by deleting the rows at and above the fork block (:func:`rollback`). A file written by another
schema version is refused with a one-line error (delete it; the index is rebuilt from the chain).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from marketplace.errors import ConfigError

SCHEMA_VERSION = 2  # 2: batched rounds (the batches table, updates.via)

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- blocks whose hash is kept to detect a reorganization (the last reorg_depth ones), with the
-- cost of indexing the sync batch each one ended
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, from_block INTEGER NOT NULL, to_block INTEGER NOT NULL,
    events INTEGER NOT NULL, seconds REAL NOT NULL, rpc_calls INTEGER NOT NULL
);
-- every decoded event of every contract in the deployment
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    address TEXT NOT NULL, contract TEXT NOT NULL, name TEXT NOT NULL,
    task_id INTEGER, args TEXT NOT NULL, types TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, name);
CREATE INDEX IF NOT EXISTS events_name ON events (name);
-- every address argument of every event (a participant's history)
CREATE TABLE IF NOT EXISTS event_accounts (
    account TEXT NOT NULL, block INTEGER NOT NULL, log_index INTEGER NOT NULL, arg TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_accounts_account ON event_accounts (account, block);
CREATE INDEX IF NOT EXISTS event_accounts_block ON event_accounts (block);
-- snapshots of view functions, taken at the end of the sync batch that touched them
CREATE TABLE IF NOT EXISTS task_state (
    task_id INTEGER NOT NULL, block INTEGER NOT NULL, state TEXT NOT NULL, oracles TEXT NOT NULL,
    PRIMARY KEY (task_id, block)
);
CREATE TABLE IF NOT EXISTS participant_state (
    account TEXT NOT NULL, block INTEGER NOT NULL, role INTEGER NOT NULL, stake TEXT NOT NULL,
    unbonding TEXT NOT NULL, reputation_ppm INTEGER NOT NULL,
    PRIMARY KEY (account, block)
);
-- task projections for the pages
-- every committed update: direct (UpdateCommitted) or in a round's batch (RoundCommitted: one
-- row per included trainer; cid, digest and samples from its verified leaf, else empty and 0)
CREATE TABLE IF NOT EXISTS updates (
    task_id INTEGER NOT NULL, round INTEGER NOT NULL, trainer TEXT NOT NULL, cid TEXT NOT NULL,
    digest TEXT NOT NULL, samples INTEGER NOT NULL, block INTEGER NOT NULL, via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_task ON updates (task_id, round);
-- every round batch (its RoundCommitted event at block, log_index) and what its leaf set showed
CREATE TABLE IF NOT EXISTS batches (
    task_id INTEGER NOT NULL, round INTEGER NOT NULL, closer TEXT NOT NULL, root TEXT NOT NULL,
    count INTEGER NOT NULL, samples INTEGER NOT NULL, leaves_cid TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL, block INTEGER NOT NULL,
    log_index INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
    tried_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, round)
);
CREATE TABLE IF NOT EXISTS models (
    task_id INTEGER NOT NULL, round INTEGER NOT NULL, poster TEXT NOT NULL, cid TEXT NOT NULL,
    digest TEXT NOT NULL, mismatch INTEGER NOT NULL, block INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS models_task ON models (task_id, round);
-- the committee's reports as fetched from the content store
CREATE TABLE IF NOT EXISTS reports (
    task_id INTEGER NOT NULL, oracle TEXT NOT NULL, cid TEXT NOT NULL, root TEXT NOT NULL,
    status TEXT NOT NULL, body TEXT, detail TEXT NOT NULL, block INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1, tried_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS reports_task ON reports (task_id);
-- views to refresh at the next sync after a rollback deleted their snapshot
CREATE TABLE IF NOT EXISTS dirty (kind TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (kind, key));
"""

# Tables with a block column: what a rollback to a fork block deletes from.
BLOCK_TABLES = (
    "blocks", "events", "event_accounts", "task_state", "participant_state", "updates", "models",
    "reports", "batches",
)  # fmt: skip


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index file (WAL mode, so pages read while the indexer writes)."""
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{Path(path)}?mode=ro", uri=True, check_same_thread=False, timeout=5.0
            )
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(
            f"cannot open the index {path} ({exc}): delete it (it is rebuilt from the chain) "
            "or pass another --db"
        ) from None
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection, path: Path | str) -> None:
    """Create the schema in a new file, or check the version of an existing one."""
    try:
        conn.executescript(DDL)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{path} is not a usable index ({exc}): delete it (it is rebuilt from the chain) "
            "or pass another --db"
        ) from None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.commit()
    elif int(row["value"]) != SCHEMA_VERSION:
        raise ConfigError(
            f"{path} holds index schema v{row['value']}, this fedmarket writes "
            f"v{SCHEMA_VERSION}: delete the file and the dashboard rebuilds it from the chain"
        )


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def rollback(conn: sqlite3.Connection, fork_block: int) -> None:
    """Delete every row at or above ``fork_block``; mark the views they held as dirty."""
    for (task_id,) in conn.execute(
        "SELECT DISTINCT task_id FROM task_state WHERE block >= ?", (fork_block,)
    ).fetchall():
        conn.execute("INSERT OR IGNORE INTO dirty VALUES ('task', ?)", (str(task_id),))
    for (account,) in conn.execute(
        "SELECT DISTINCT account FROM participant_state WHERE block >= ?", (fork_block,)
    ).fetchall():
        conn.execute("INSERT OR IGNORE INTO dirty VALUES ('account', ?)", (account,))
    for table in BLOCK_TABLES:
        col = "number" if table == "blocks" else "block"
        conn.execute(f"DELETE FROM {table} WHERE {col} >= ?", (fork_block,))  # noqa: S608 (fixed names)
    set_meta(conn, "last_block", str(fork_block - 1))
