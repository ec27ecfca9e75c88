"""The oracle service: follow a task on-chain, score it, commit, reveal, enforce.

:meth:`OracleNode.step` does the one next thing this oracle owes the task and is safe to repeat
after a crash: the journal holds the chosen ``(root, reportCid, salt)`` *before* the commitment is
sent, so a restarted oracle reveals what it committed and never commits twice (the chain refuses a
second commitment anyway).

Scoring refuses to run on a validation set that does not hash to the on-chain commitment; an
update that fails to decrypt, match its digest or validate is scored as invalid and flagged, never a
crash. An update that no IPFS provider serves *yet* is retried (transient is not invalid) until
the session's fetch patience runs out or the commit deadline is near; only then is it counted as
missing — the oracle commits with what it could verify rather than miss the commit window.

After finalization the oracle enforces the result: it slashes committee members
that revealed another root or did not reveal, and settles flagged trainers' leaves (which slashes
their stake), since a flagged trainer has no reason to claim. Then it evaluates the task's model
submissions, and in a task registered for retention records and attests the trained model as
version 1 and re-validates unlearned versions (:mod:`node.peers.oracle_versions`).
"""

from __future__ import annotations

import logging
import secrets
from typing import ClassVar

from marketplace.chain.clients import Phase
from marketplace.errors import FedMarketError, TransactionRevertedError
from marketplace.fl.dp_rounds import privacy_report
from marketplace.oracle.scoring import RoundInput, ScoringResult, score_task
from marketplace.protocol.committee import accept_seat, may_slash
from marketplace.protocol.published_report import claim_args, entries_of, final_report, seal_report
from marketplace.protocol.session import TaskSession, open_validation_set
from marketplace.valuation.report import UpdateRef
from node.peers.base import Peer, Step
from node.peers.journal import Journal
from node.peers.oracle_secagg import secagg_round_input
from node.peers.oracle_sourcing import SourcingDuty
from node.peers.oracle_submissions import evaluate_submissions
from node.peers.oracle_versions import VersionDuty
from node.peers.turns import ChoreTurns

# Steps an oracle owes a task once its scoring is enforced (each: None when nothing is owed).
AFTER_FINALIZATION = (evaluate_submissions,)

log = logging.getLogger(__name__)

SCORE_STEP = "score"
# Within this many chain seconds of the commit deadline, an oracle stops waiting for updates no
# IPFS provider serves and scores without them (see TaskSession.fetch_patience).
COMMIT_MARGIN_SECONDS = 60


class OracleNode(Peer):
    """One committee member scoring one task."""

    role: ClassVar[str] = "oracle"

    def __init__(self, session: TaskSession, journal: Journal, *, num_threads: int = 1):
        super().__init__(session, journal)
        self.num_threads = num_threads
        self.result: ScoringResult | None = None
        self.sourcing = SourcingDuty(self)  # the task's data request, before training
        # The committee takes turns closing phases (node/peers/turns.py).
        self.turns = ChoreTurns(self.me, session.market.now)
        # The trained model as version 1; re-validating unlearned versions, after withdrawals.
        self.unlearning = VersionDuty(self, self.turns)

    # --- the state machine ----------------------------------------------------------------
    def step(self) -> Step:
        s = self.session
        m = s.market
        tid = s.task_id
        info = s.info()
        phase = info.phase_enum
        if phase == Phase.FORMING:  # consent: take the seat (marketplace/protocol/committee.py)
            acted, what = accept_seat(m, self.account, tid)
            return Step.acted(what) if acted else self.sourcing.step() or Step.waiting(what)
        if phase in (Phase.OPEN, Phase.TRAINING):
            return self.sourcing.step() or Step.waiting("waiting for training to end")
        if phase == Phase.CANCELLED:
            return Step.done("task cancelled")
        commitment = m.commitment_of(tid, self.me)
        if phase == Phase.COMMITTING:
            if commitment == bytes(32):
                if int(info.phase_deadline) - m.now() <= COMMIT_MARGIN_SECONDS:
                    # Late in the window: score with what is verifiable now (an update still
                    # unavailable counts as missing) rather than miss the commit altogether.
                    s.fetch_patience = 0.0
                chosen = self._chosen()
                digest = m.score_commitment(
                    tid, self.me, bytes.fromhex(chosen["root"]), chosen["report_cid"],
                    bytes.fromhex(chosen["salt"]),
                )  # fmt: skip
                m.commit_score(self.account, tid, digest)
                return Step.acted(f"committed root 0x{chosen['root'][:12]}…")
            all_in = info.committed_count >= info.committee_size
            due = all_in or m.now() > info.phase_deadline
            if due and self._advance_turn(phase) and self.try_advance():
                return Step.acted("closed the commit phase")
            return Step.waiting("waiting for the other oracles to commit")
        if phase == Phase.REVEALING:
            revealed = m.revealed_root_of(tid, self.me) != bytes(32)
            if not revealed and commitment == bytes(32):
                return Step.done(
                    "missed the commit phase: nothing to reveal (this oracle will be slashed)"
                )
            if not revealed:
                recorded = self.journal.get(tid, 0, SCORE_STEP)
                if recorded is None:
                    raise FedMarketError(
                        f"task {tid}: committed but the journal lost the salt, so this oracle "
                        "cannot reveal; restore the node's journal"
                    )
                m.reveal_score(
                    self.account, tid, bytes.fromhex(recorded["root"]), recorded["report_cid"],
                    bytes.fromhex(recorded["salt"]),
                )  # fmt: skip
                return Step.acted("revealed")
            all_in = info.revealed_count >= info.committed_count
            due = all_in or m.now() > info.phase_deadline
            if due and self._advance_turn(phase) and self.try_advance():
                return Step.acted("closed the reveal phase")
            return Step.waiting("waiting for the other oracles to reveal")
        if phase == Phase.DISPUTED:
            return Step.waiting("waiting for the arbiter")
        # Finalized or Closed: enforce the outcome once the dispute window is over.
        if phase == Phase.FINALIZED and m.now() < info.claims_open_at:
            return Step.waiting("waiting for the dispute window to close")
        slashed = self._slash_dissenters()
        if slashed:
            return Step.acted(f"slashed oracle {slashed}")
        if phase == Phase.FINALIZED:
            settled = self._settle_flagged()
            if settled:
                return Step.acted(f"settled flagged trainer {settled}")
        for after in AFTER_FINALIZATION:
            owed = after(self)
            if owed is not None:
                return owed
        if (owed := self.unlearning.root_step()) is not None:
            return owed
        if (owed := self.unlearning.step()) is not None:
            return owed
        return Step.done("task finalized")

    def _advance_turn(self, phase: Phase) -> bool:
        """Whether this oracle closes ``phase`` now: the committee takes turns by phase."""
        members = self.session.market.oracles(self.session.task_id)
        return self.turns.my_turn(("advance", int(phase)), members, int(phase))

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
        for r in range(1, info.rounds + 1):
            if s.doc.secagg is not None:  # the plaintexts sealed to the committee
                rounds.append(secagg_round_input(s, r))
                continue
            updates = s.round_updates(r)
            rounds.append(
                RoundInput(
                    round=r,
                    global_weights=s.global_weights(r),
                    updates=updates.valid,
                    invalid=dict(updates.invalid),
                    commit_order={c.sender: c.order for c in updates.committed},
                    refs=tuple(
                        UpdateRef(c.sender, c.cid, "0x" + c.digest.hex()) for c in updates.committed
                    ),
                )
            )
        self.result = score_task(
            domain=s.leaf_domain,
            model_spec=s.doc.model,
            strategy=s.doc.strategy(),
            rounds=rounds,
            x_val=x_val,
            y_val=y_val,
            validation_digest=s.doc.validation.sha256,
            budget=info.budget,
            trainers=members.trainers,
            config=s.doc.valuation,
            privacy=self._privacy(info.rounds),
        )
        return self.result

    def _privacy(self, rounds: int) -> dict[str, object] | None:
        """The report's ε ledger, when the task has a DP mode (from committed row counts)."""
        s = self.session
        if s.doc.privacy is None:
            return None
        rows = {r: {c.sender: c.num_samples for c in s.committed(r)} for r in range(1, rounds + 1)}
        return privacy_report(s.doc.privacy, s.doc.train, rounds, rows)

    # --- enforcement ----------------------------------------------------------------------
    def _slash_dissenters(self) -> str | None:
        s = self.session
        m = s.market
        final = bytes(s.info().payout_root)
        for oracle in s.members().oracles:
            if oracle == self.me or m.is_oracle_slashed(s.task_id, oracle):
                continue
            if m.revealed_root_of(s.task_id, oracle) != final and may_slash(m, s.task_id, oracle):
                try:
                    m.slash_oracle(self.account, s.task_id, oracle)
                except TransactionRevertedError as exc:
                    if exc.error_name != "TaskMarketOracleAlreadySlashed":
                        raise  # another committee member got there first otherwise
                    continue
                return oracle
        return None

    def _settle_flagged(self) -> str | None:
        """Settle one flagged trainer's leaf (which slashes its stake); its address, or ``None``
        when every flagged leaf is settled."""
        report = final_report(self.session)
        for entry in entries_of(report):
            if not entry.flags:
                continue
            found = claim_args(report, entry.account, self.session.leaf_domain)
            if found is None:  # entries_of and claim_args read the same table
                raise FedMarketError(f"payout table lost {entry.account}'s leaf")
            if self.claim_leaf(*found):
                return entry.account
        return None
