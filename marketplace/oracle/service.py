"""The oracle service: follow a task on-chain, score it, commit, reveal, enforce.

:meth:`OracleNode.step` does the one next thing this oracle owes the task and is safe to repeat
after a crash: the journal holds the chosen ``(root, reportCid, salt)`` *before* the commitment is
sent, so a restarted oracle reveals what it committed and never commits twice (the chain refuses a
second commitment anyway).

Scoring refuses to run on a validation set that does not hash to the on-chain commitment; an
update that fails to fetch, decrypt, match its digest or validate is scored as invalid and flagged,
never a crash. After finalization the oracle enforces the result: it slashes committee members
that revealed another root or did not reveal, and settles flagged trainers' leaves (which slashes
their stake), since a flagged trainer has no reason to claim.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from web3 import Web3

from marketplace.chain.clients import Phase
from marketplace.errors import FedMarketError, TransactionRevertedError
from marketplace.journal import Journal
from marketplace.oracle.scoring import RoundInput, ScoringConfig, ScoringResult, score_task
from marketplace.protocol.committee import accept_seat, may_slash
from marketplace.protocol.report import claim_args, entries_of, final_report, seal_report
from marketplace.protocol.session import TaskSession, open_validation_set
from marketplace.valuation.report import UpdateRef

log = logging.getLogger(__name__)

SCORE_STEP = "score"


class OracleNode:
    """One committee member scoring one task."""

    def __init__(self, session: TaskSession, journal: Journal, *, num_threads: int = 1):
        self.session = session
        self.journal = journal
        self.num_threads = num_threads
        self.result: ScoringResult | None = None

    @property
    def me(self) -> str:
        return self.session.identity.address

    def _now(self) -> int:
        return int(self.session.market.w3.eth.get_block("latest")["timestamp"])

    def _advance(self) -> bool:
        try:
            self.session.market.advance(self.session.identity.eth, self.session.task_id)
            return True
        except TransactionRevertedError as exc:
            if exc.error_name in ("TaskMarketWrongPhase", "TaskMarketTooEarly"):
                return False
            raise

    # --- the state machine ----------------------------------------------------------------
    def step(self) -> tuple[str, bool]:
        """Do the next thing; returns ``(what was done, finished)``."""
        s = self.session
        m = s.market
        tid = s.task_id
        info = s.info()
        phase = info.phase_enum
        fn = m.market.functions
        if phase == Phase.FORMING:  # consent: take the seat (marketplace/protocol/committee.py)
            return accept_seat(m, s.identity.eth, tid), False
        if phase in (Phase.OPEN, Phase.TRAINING):
            return "waiting for training to end", False
        if phase == Phase.CANCELLED:
            return "task cancelled", True
        commitment = bytes(m.call(fn.commitmentOf(tid, self.me)))
        if phase == Phase.COMMITTING:
            if commitment == bytes(32):
                chosen = self._chosen()
                digest = m.score_commitment(
                    tid, self.me, bytes.fromhex(chosen["root"]), chosen["report_cid"],
                    bytes.fromhex(chosen["salt"]),
                )  # fmt: skip
                m.commit_score(s.identity.eth, tid, digest)
                return f"committed root 0x{chosen['root'][:12]}…", False
            if (
                int(info.committed_count) >= int(info.committee_size)
                or self._now() > int(info.phase_deadline)
            ) and self._advance():
                return "closed the commit phase", False
            return "waiting for the other oracles to commit", False
        if phase == Phase.REVEALING:
            revealed = bytes(m.call(fn.revealedRootOf(tid, self.me))) != bytes(32)
            if not revealed and commitment == bytes(32):
                return (
                    "missed the commit phase: nothing to reveal (this oracle will be slashed)",
                    True,
                )
            if not revealed:
                chosen = self.journal.get(tid, 0, SCORE_STEP)
                if chosen is None:
                    raise FedMarketError(
                        f"task {tid}: committed but the journal lost the salt, so this oracle "
                        "cannot reveal; restore the node's journal"
                    )
                m.reveal_score(
                    s.identity.eth, tid, bytes.fromhex(chosen["root"]), chosen["report_cid"],
                    bytes.fromhex(chosen["salt"]),
                )  # fmt: skip
                return "revealed", False
            if (
                int(info.revealed_count) >= int(info.committed_count)
                or self._now() > int(info.phase_deadline)
            ) and self._advance():
                return "closed the reveal phase", False
            return "waiting for the other oracles to reveal", False
        if phase == Phase.DISPUTED:
            return "waiting for the arbiter", False
        # Finalized or Closed: enforce the outcome once the dispute window is over.
        if phase == Phase.FINALIZED and self._now() < int(info.claims_open_at):
            return "waiting for the dispute window to close", False
        slashed = self._slash_dissenters()
        if slashed:
            return f"slashed oracle {slashed}", False
        if phase == Phase.FINALIZED:
            settled = self._settle_flagged()
            if settled:
                return f"settled flagged trainer {settled}", False
        return "task finalized", True

    def run(self, *, poll: float = 1.0, timeout: float | None = None,
            on_step: Callable[[str], None] | None = None) -> str:  # fmt: skip
        start = time.monotonic()
        while True:
            action, done = self.step()
            if on_step:
                on_step(action)
            if done:
                return action
            if action.startswith("waiting"):
                if timeout is not None and time.monotonic() - start > timeout:
                    raise FedMarketError(f"oracle {self.me}: timed out ({action})")
                time.sleep(poll)

    # --- scoring --------------------------------------------------------------------------
    def _chosen(self) -> dict[str, str]:
        """The root, report CID and salt this oracle commits to (chosen once, journaled)."""
        s = self.session
        recorded = self.journal.get(s.task_id, 0, SCORE_STEP)
        if recorded is not None:
            return {k: str(v) for k, v in recorded.items()}
        result = self.score()
        report_cid = s.store.put(seal_report(s, result.report_bytes))
        chosen = self.journal.record_once(
            s.task_id,
            0,
            SCORE_STEP,
            {
                "root": result.root.hex(),
                "report_cid": report_cid,
                "salt": secrets.token_bytes(32).hex(),
            },
        )
        return {k: str(v) for k, v in chosen.items()}

    def score(self) -> ScoringResult:
        """Score the task from what the chain says was committed."""
        if self.result is not None:
            return self.result
        s = self.session
        x_val, y_val = open_validation_set(s)  # refuses a set that does not match the commitment
        info = s.info()
        members = s.members(refresh=True)
        rounds = []
        for r in range(1, int(info.rounds) + 1):
            updates = s.round_updates(r)
            rounds.append(
                RoundInput(
                    round=r,
                    global_weights=s.global_weights(r),
                    updates=updates.valid,
                    invalid=dict(updates.invalid),
                    commit_order={c.sender: c.order for c in updates.committed},
                    refs=tuple(
                        UpdateRef(c.sender, c.cid, "0x" + c.digest.hex())
                        for c in updates.committed
                    ),
                )
            )
        v = s.doc.valuation
        self.result = score_task(
            task={"chain_id": s.chain_id, "market": s.market.market.address, "task_id": s.task_id},
            model_spec=s.doc.model,
            strategy=s.doc.strategy(),
            rounds=rounds,
            x_val=x_val,
            y_val=y_val,
            validation_digest=s.doc.validation.sha256,
            budget=int(info.budget),
            trainers=members.trainers,
            config=ScoringConfig(
                method=v.method,
                seed=v.seed,
                metric=v.metric,
                gtg_budget_fraction=v.gtg_budget_fraction,
                floor_ppm=v.floor_ppm,
                flagged=v.flagged,
            ),
        )
        return self.result

    # --- enforcement ----------------------------------------------------------------------
    def _slash_dissenters(self) -> str | None:
        s = self.session
        m = s.market
        fn = m.market.functions
        final = bytes(s.info().payout_root)
        for oracle in s.members().oracles:
            if oracle == self.me or m.call(fn.isOracleSlashed(s.task_id, oracle)):
                continue
            if bytes(m.call(fn.revealedRootOf(s.task_id, oracle))) != final and may_slash(
                m, s.task_id, oracle
            ):
                try:
                    m.slash_oracle(s.identity.eth, s.task_id, oracle)
                except TransactionRevertedError as exc:
                    if exc.error_name != "TaskMarketOracleAlreadySlashed":
                        raise  # another committee member got there first otherwise
                    continue
                return oracle
        return None

    def _settle_flagged(self) -> str | None:
        s = self.session
        m = s.market
        report = final_report(s)
        for entry in entries_of(report):
            if not entry.flags or m.call(m.market.functions.isClaimed(s.task_id, entry.index)):
                continue
            found = claim_args(report, entry.account)
            assert found is not None
            _, proof = found
            try:
                m.claim(
                    s.identity.eth, s.task_id, index=entry.index, account=entry.account,
                    amount=entry.amount, score_ppm=entry.score_ppm, flags=entry.flags, proof=proof,
                )  # fmt: skip
            except TransactionRevertedError as exc:
                if exc.error_name != "TaskMarketAlreadyClaimed":
                    raise  # settled by another oracle or the trainer itself otherwise
                continue
            return Web3.to_checksum_address(entry.account)
        return None
