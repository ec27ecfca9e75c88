"""The incremental indexer: chain events and committee reports into SQLite.

Each :meth:`Indexer.sync_once` call checks for a reorganization (the stored hash of the last
indexed block against the chain's; on a change it walks back through the last ``reorg_depth``
stored hashes to the fork and deletes everything above it), then indexes the next batch of blocks
up to ``head - confirmations`` in one SQLite transaction: every log of the deployment's contracts
decoded from their ABIs, the task projections (updates, models), the reports revealed in it, and
snapshots of the task and participant views the batch touched, read at the batch's last block.
A restart resumes after the last indexed block; the cost of each batch is recorded per block.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress, HexAddress, HexStr
from web3 import Web3
from web3.exceptions import BlockNotFound

from marketplace.chain.batch_client import RecordedBatch
from marketplace.chain.clients import view_at, view_fields_at
from marketplace.chain.deploy import Deployment
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import ChainError, ConfigError
from marketplace.indexer import schema
from marketplace.indexer.abi import DecodedEvent, EventCatalog, jsonable
from marketplace.indexer.batches import read_batch
from marketplace.indexer.reports import UNAVAILABLE, read_report
from marketplace.protocol.round_batch import bitmap_members
from marketplace.storage.base import ContentStore

log = logging.getLogger(__name__)

MAX_SAFE_INT = 2**53 - 1


@dataclass(frozen=True)
class IndexerConfig:
    """How the indexer follows the chain.

    Attributes
    ----------
    reorg_depth : int
        Blocks kept re-indexable: their hashes are stored and a changed hash rolls the index
        back to the fork. A reorganization deeper than this is an error (rebuild the index).
    confirmations : int
        Index only up to ``head - confirmations`` (0 on a devnet, which does not reorganize
        unless asked to; a few blocks on a real network).
    batch_blocks : int
        Most blocks per ``eth_getLogs`` call and transaction.
    poll_seconds : float
        How often :meth:`Indexer.follow` asks for the head.
    report_attempts, report_retry_seconds : int, float
        A report (or a batch's leaf set) the store could not give is fetched again by
        :meth:`Indexer.retry_reports` (:meth:`Indexer.retry_batches`) from
        :meth:`Indexer.follow`, at most this many times in all, this far apart.
    """

    reorg_depth: int = 64
    confirmations: int = 0
    batch_blocks: int = 2000
    poll_seconds: float = 0.25
    report_attempts: int = 3
    report_retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.reorg_depth < 1:
            raise ConfigError(f"reorg depth must be at least 1 block (got {self.reorg_depth})")
        if self.confirmations < 0:
            raise ConfigError(f"confirmations must be >= 0 (got {self.confirmations})")
        if self.batch_blocks < 1:
            raise ConfigError(f"batch_blocks must be >= 1 (got {self.batch_blocks})")


@dataclass(frozen=True)
class SyncStats:
    """One sync step: the blocks indexed (none when caught up) and what it cost."""

    from_block: int
    to_block: int
    events: int
    seconds: float
    rpc_calls: int
    rolled_back_to: int | None = None

    @property
    def blocks(self) -> int:
        return max(0, self.to_block - self.from_block + 1)


def _store_value(value: Any) -> Any:
    """Integers beyond JSON's safe range as decimal strings (amounts in wei)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
        return str(value)
    if isinstance(value, list):
        return [_store_value(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_store_value(value), sort_keys=True, separators=(",", ":"))


class Indexer:
    """Indexes one deployment into one SQLite file; one writer per file."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        db_path: Path | str,
        *,
        store: ContentStore | None = None,
        config: IndexerConfig | None = None,
    ):
        self.w3 = w3
        self.deployment = deployment
        self.db_path = Path(db_path)
        self.store = store
        self.config = config or IndexerConfig()
        self.catalog = EventCatalog(
            {n: (c.address, c.abi) for n, c in deployment.contracts.items()}
        )
        self._contracts = {
            n: w3.eth.contract(address=c.address, abi=c.abi)  # type: ignore[call-overload]
            for n, c in deployment.contracts.items()
        }
        self.conn = schema.connect(self.db_path)
        schema.migrate(self.conn, self.db_path)
        self._bind_deployment()
        self._rpc_calls = 0
        self.changed = threading.Condition()
        self.generation = 0  # bumped after every sync that changed the index
        self.last_error: str | None = None  # the follow loop's last failure, until it recovers

    # --- identity of the file ---------------------------------------------------------------
    def _bind_deployment(self) -> None:
        # Chain id, market address and the hash of the deployment's block: a devnet stopped,
        # restarted and redeployed has the same chain id and addresses, not the same blocks.
        market = self.deployment.contracts.get("TaskMarket")
        ident = f"{self.deployment.chain_id}:{market.address if market else '-'}"
        anchor = bytes(self.w3.eth.get_block(max(self.deployment.block, 0))["hash"]).hex()
        full = f"{ident}:{anchor}"
        have = schema.get_meta(self.conn, "deployment")
        if have is None or have == ident:  # new, or written before the block hash was kept
            schema.set_meta(self.conn, "deployment", full)
            if have is None:
                schema.set_meta(self.conn, "last_block", str(self.deployment.block - 1))
            self.conn.commit()
        elif have != full:
            raise ConfigError(
                f"{self.db_path} indexes deployment {have}, not {full} (a chain restarted and "
                "redeployed at the same addresses is another deployment): pass another --db "
                "or delete the file"
            )

    @property
    def last_block(self) -> int:
        """The last block in the index."""
        return int(schema.get_meta(self.conn, "last_block") or self.deployment.block - 1)

    # --- chain reads (counted) ----------------------------------------------------------------
    def _block(self, number: int) -> Any:
        self._rpc_calls += 1
        return self.w3.eth.get_block(number)

    def _head(self) -> int:
        self._rpc_calls += 1
        return int(self.w3.eth.block_number)

    def _chain_hash(self, number: int) -> str | None:
        try:
            return "0x" + bytes(self._block(number)["hash"]).hex()
        except BlockNotFound:
            return None

    # --- reorganizations ------------------------------------------------------------------------
    def _check_reorg(self) -> int | None:
        """Roll back to the fork if the last indexed block changed; returns the fork block."""
        last = self.last_block
        row = self.conn.execute("SELECT hash FROM blocks WHERE number = ?", (last,)).fetchone()
        if row is None or self._chain_hash(last) == row["hash"]:
            return None
        stored = self.conn.execute(
            "SELECT number, hash FROM blocks WHERE number < ? ORDER BY number DESC", (last,)
        ).fetchall()
        fork = None
        for r in stored:
            if self._chain_hash(int(r["number"])) == r["hash"]:
                fork = int(r["number"]) + 1
                break
        if fork is None:
            oldest = int(stored[-1]["number"]) if stored else last
            if oldest > self.deployment.block:
                raise ChainError(
                    f"the chain reorganized deeper than the {self.config.reorg_depth} blocks the "
                    f"index keeps (below block {oldest}): delete {self.db_path} to rebuild it, "
                    "and raise --reorg-depth"
                )
            fork = self.deployment.block
        log.warning("chain reorganized: rolling the index back to block %d", fork - 1)
        with self.conn:
            schema.rollback(self.conn, fork)
        return fork

    # --- one step -------------------------------------------------------------------------------
    def sync_once(self) -> SyncStats:
        """Index the next batch of blocks (after a reorg check); cheap when caught up."""
        started = time.perf_counter()
        self._rpc_calls = 0
        fork = self._check_reorg()
        target = self._head() - self.config.confirmations
        start = self.last_block + 1
        end = min(target, start + self.config.batch_blocks - 1)
        if end < start:
            if fork is not None:
                self._notify()
            return SyncStats(start, start - 1, 0, time.perf_counter() - started,
                             self._rpc_calls, fork)  # fmt: skip
        self._rpc_calls += 1
        addresses = [ChecksumAddress(HexAddress(HexStr(a))) for a in self.catalog.addresses]
        logs = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": addresses})
        events = [self.catalog.decode(entry) for entry in logs]
        end_block = self._block(end)
        with self.conn:
            tasks, accounts = self._write_events(events)
            for kind, key in self.conn.execute("SELECT kind, key FROM dirty").fetchall():
                if kind == "task":
                    tasks.add(int(key))
                else:
                    accounts.add(str(key))
            self.conn.execute("DELETE FROM dirty")
            for task_id in sorted(tasks):
                self._snapshot_task(task_id, end)
            for account in sorted(accounts):
                self._snapshot_participant(account, end)
            self._record_blocks(events, end, end_block)
            seconds = time.perf_counter() - started
            self.conn.execute(
                "INSERT INTO syncs (from_block, to_block, events, seconds, rpc_calls) "
                "VALUES (?, ?, ?, ?, ?)",
                (start, end, len(events), seconds, self._rpc_calls),
            )
            schema.set_meta(self.conn, "last_block", str(end))
        self._notify()
        return SyncStats(start, end, len(events), seconds, self._rpc_calls, fork)

    def sync(self) -> list[SyncStats]:
        """Sync until caught up with ``head - confirmations``."""
        out = []
        while True:
            stats = self.sync_once()
            out.append(stats)
            if stats.blocks == 0 or stats.to_block >= self._head() - self.config.confirmations:
                return out

    def retry_reports(self, *, limit: int = 1) -> int:
        """Fetch again up to ``limit`` reports that were unavailable (content not yet reachable
        when revealed); returns how many became readable or encrypted."""
        if self.store is None:
            return 0
        rows = self.conn.execute(
            "SELECT rowid, cid, root FROM reports WHERE status = ? AND attempts < ? "
            "AND tried_at < ? ORDER BY tried_at LIMIT ?",
            (UNAVAILABLE, self.config.report_attempts,
             time.time() - self.config.report_retry_seconds, limit),
        ).fetchall()  # fmt: skip
        found = 0
        for row in rows:
            read = read_report(self.store, str(row["cid"]), root=str(row["root"]))
            body = None if read.body is None else json.dumps(read.body, sort_keys=True)
            with self.conn:
                self.conn.execute(
                    "UPDATE reports SET status = ?, body = ?, detail = ?, attempts = attempts + 1, "
                    "tried_at = ? WHERE rowid = ?",
                    (read.status, body, read.detail, time.time(), row["rowid"]),
                )
            found += read.status != UNAVAILABLE
        if found:
            self._notify()
        return found

    def retry_batches(self, *, limit: int = 1) -> int:
        """Fetch again up to ``limit`` leaf sets that were unavailable (as
        :meth:`retry_reports`, with the same limits); returns how many became readable."""
        if self.store is None:
            return 0
        rows = self.conn.execute(
            "SELECT * FROM batches WHERE status = ? AND attempts < ? AND tried_at < ? "
            "ORDER BY tried_at LIMIT ?",
            (UNAVAILABLE, self.config.report_attempts,
             time.time() - self.config.report_retry_seconds, limit),
        ).fetchall()  # fmt: skip
        found = 0
        for row in rows:
            task_id, round_ = int(row["task_id"]), int(row["round"])
            event = self.conn.execute(
                "SELECT address, args FROM events WHERE block = ? AND log_index = ?",
                (row["block"], row["log_index"]),
            ).fetchone()
            recorded = self._as_recorded(task_id, json.loads(event["args"]), int(row["block"]))
            read = read_batch(
                self.store, recorded, join_order=self._join_order(task_id),
                chain_id=self.deployment.chain_id, market_address=str(event["address"]),
            )  # fmt: skip
            with self.conn:
                self.conn.execute(
                    "UPDATE batches SET status = ?, detail = ?, attempts = attempts + 1, "
                    "tried_at = ? WHERE task_id = ? AND round = ?",
                    (read.status, read.detail, time.time(), task_id, round_),
                )
                self._fill_leaves(task_id, round_, read.leaves)
            found += read.status != UNAVAILABLE
        if found:
            self._notify()
        return found

    def follow(
        self, stop: threading.Event, *, on_error: Callable[[Exception], None] | None = None
    ) -> None:
        """Sync every ``poll_seconds`` until ``stop`` is set (run it on a thread)."""
        while not stop.is_set():
            try:
                while self.sync_once().blocks and not stop.is_set():
                    pass
                self.retry_reports()
                self.retry_batches()
                if self.last_error is not None:
                    self.last_error = None
                    self._notify()
            except Exception as exc:  # keep following: the next poll retries
                if str(exc) != self.last_error:  # say it once, not every poll
                    log.warning("indexer: %s", exc)
                    self.last_error = str(exc)
                    self._notify()
                if on_error:
                    on_error(exc)
            stop.wait(self.config.poll_seconds)

    def close(self) -> None:
        self.conn.close()

    def _notify(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    # --- writing --------------------------------------------------------------------------------
    def _write_events(self, events: list[DecodedEvent]) -> tuple[set[int], set[str]]:
        tasks: set[int] = set()
        accounts: set[str] = set()
        for ev in events:
            task_id = ev.args.get("taskId") if ev.input_types.get("taskId") == "uint256" else None
            if task_id is not None:
                task_id = int(task_id)
                tasks.add(task_id)
            self.conn.execute(
                "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ev.block, ev.log_index, ev.tx_hash, ev.address, ev.contract, ev.name, task_id,
                 _dumps(ev.args), json.dumps(ev.input_types, sort_keys=True)),
            )  # fmt: skip
            for arg, kind in ev.input_types.items():
                if kind == "address":
                    account = str(ev.args[arg])
                    self.conn.execute(
                        "INSERT INTO event_accounts VALUES (?, ?, ?, ?)",
                        (account, ev.block, ev.log_index, arg),
                    )
                    if ev.contract == "ParticipantRegistry" or ev.name == "TrainerJoined":
                        accounts.add(account)
            if task_id is not None:
                self._project(ev, task_id)
        return tasks, accounts

    def _project(self, ev: DecodedEvent, task_id: int) -> None:
        a = ev.args
        if ev.name == "UpdateCommitted":
            self.conn.execute(
                "INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?, ?, 'direct')",
                (task_id, int(a["round"]), a["trainer"], str(a["cid"]), a["digest"],
                 int(a["numSamples"]), ev.block),
            )  # fmt: skip
        elif ev.name == "RoundCommitted":
            self._project_batch(ev, task_id)
        elif ev.name == "LeafChallenged":  # the leaf is void: its trainer may commit directly
            self.conn.execute(
                "DELETE FROM updates WHERE task_id = ? AND round = ? AND trainer = ? "
                "AND via = 'batch'",
                (task_id, int(a["round"]), a["trainer"]),
            )
        elif ev.name in ("ModelPosted", "ModelMismatchReported"):
            poster = a.get("poster", a.get("reporter", ""))
            self.conn.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task_id, int(a["round"]), poster, str(a["cid"]), a["digest"],
                 int(ev.name == "ModelMismatchReported"), ev.block),
            )  # fmt: skip
        elif ev.name == "ScoreRevealed":
            cid, root = str(a["reportCid"]), str(a["root"])
            read = read_report(self.store, cid, root=root)
            self.conn.execute(
                "INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (task_id, a["oracle"], cid, root, read.status,
                 None if read.body is None else json.dumps(read.body, sort_keys=True),
                 read.detail, ev.block, time.time()),
            )  # fmt: skip

    def _project_batch(self, ev: DecodedEvent, task_id: int) -> None:
        """A round's batch: one ``updates`` row per included trainer, filled from its genuine
        leaf when the leaf set is readable (else later, by :meth:`retry_batches`), and the
        batch's own row."""
        recorded = self._as_recorded(task_id, ev.args, ev.block)
        order = self._join_order(task_id)
        read = read_batch(
            self.store, recorded, join_order=order, chain_id=self.deployment.chain_id,
            market_address=ev.address,
        )  # fmt: skip
        for trainer in bitmap_members(recorded.included, order):
            self.conn.execute(
                "INSERT INTO updates VALUES (?, ?, ?, '', '', 0, ?, 'batch')",
                (task_id, recorded.round, trainer, ev.block),
            )
        self.conn.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            (task_id, recorded.round, recorded.closer, "0x" + recorded.root.hex(), recorded.count,
             recorded.samples, recorded.leaves_cid, read.status, read.detail, ev.block,
             ev.log_index, time.time()),
        )  # fmt: skip
        self._fill_leaves(task_id, recorded.round, read.leaves)

    def _join_order(self, task_id: int) -> list[str]:
        """The task's trainers in join order (their bits in a batch's bitmap)."""
        joined = self.conn.execute(
            "SELECT args FROM events WHERE task_id = ? AND name = 'TrainerJoined' "
            "ORDER BY block, log_index",
            (task_id,),
        ).fetchall()
        return [str(json.loads(row["args"])["trainer"]) for row in joined]

    @staticmethod
    def _as_recorded(task_id: int, args: dict[str, Any], block: int) -> RecordedBatch:
        return RecordedBatch(
            task_id=task_id, round=int(args["round"]), closer=str(args["closer"]),
            root=bytes.fromhex(str(args["root"])[2:]),
            included=tuple(int(w) for w in args["included"]), count=int(args["count"]),
            samples=int(args["samples"]), leaves_cid=str(args["leavesCid"]), block=block,
        )  # fmt: skip

    def _fill_leaves(self, task_id: int, round_: int, leaves: tuple[UpdateLeaf, ...]) -> None:
        """Each genuine leaf's CID, digest and samples into its trainer's batched row."""
        for leaf in leaves:
            self.conn.execute(
                "UPDATE updates SET cid = ?, digest = ?, samples = ? WHERE task_id = ? "
                "AND round = ? AND trainer = ? AND via = 'batch'",
                (leaf.cid, "0x" + leaf.digest.hex(), leaf.num_samples, task_id, round_,
                 leaf.sender),
            )  # fmt: skip

    def _snapshot_task(self, task_id: int, block: int) -> None:
        market = self._contracts.get("TaskMarket")
        if market is None:
            return
        self._rpc_calls += 2
        state = {
            n: jsonable(v) for n, v in view_fields_at(market, "task", task_id, block=block).items()
        }
        try:
            committee = view_at(market, "oracles", task_id, block=block)
            oracles = [str(o) for o in committee]
        except Exception:  # a market without the view: no committee list
            oracles = []
        self.conn.execute(
            "INSERT OR REPLACE INTO task_state VALUES (?, ?, ?, ?)",
            (task_id, block, _dumps(state), json.dumps(oracles)),
        )

    def _snapshot_participant(self, account: str, block: int) -> None:
        registry = self._contracts.get("ParticipantRegistry")
        if registry is None:
            return
        self._rpc_calls += 1
        fields = view_fields_at(
            registry, "participant", Web3.to_checksum_address(account), block=block
        )
        role = fields["role"]
        stake = fields.get("stake", fields.get("stakeAmount", 0))
        unbonding = fields["unbonding"]
        rep = fields["reputationPpm"]
        self.conn.execute(
            "INSERT OR REPLACE INTO participant_state VALUES (?, ?, ?, ?, ?, ?)",
            (account, block, int(role), str(stake), str(unbonding), int(rep)),
        )

    def _record_blocks(self, events: list[DecodedEvent], end: int, end_block: Any) -> None:
        seen: dict[int, str] = {ev.block: ev.block_hash for ev in events}
        seen[end] = "0x" + bytes(end_block["hash"]).hex()
        stamp = int(end_block["timestamp"])
        for number, block_hash in seen.items():
            self.conn.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?)",
                (number, block_hash, stamp if number == end else 0),
            )
        self.conn.execute("DELETE FROM blocks WHERE number < ?", (end - self.config.reorg_depth,))
