"""The oracle's duties over a task's model versions: the trained model as version 1, and after a
consent withdrawal the re-validation of the unlearned version.

Once the task's final model is posted and the task is registered for retention (`fedmarket data
register`), the committee records that model as the root version (``Trained``, parent 0: the
contract takes no other digest than the task market's final model) unless one is recorded, and
each member attests it until the quorum validates it, so an unlearned version has a validated
parent. The member first in address order records at once, the others only when it has not
after a grace (:class:`~node.peers.turns.ChoreTurns`).

While a withdrawal of the task is not yet excluded by a validated version and its deadline has
not passed, a committee member waits for the remaining trainers' unlearned version. It derives
the expected model itself from the committed calibration updates
(:class:`marketplace.protocol.calibration.NetworkUnlearning`: the same deterministic steps the
trainers ran, from the chain's record; it needs no training data), and attests a recorded
``Unlearned`` version only when its digest is that one *and* it scores within the tolerance of
:func:`marketplace.protocol.withdrawal.revalidate` on the validation set. A version it refuses is
journaled, so it is not re-checked; after the deadline a recorded version is still checked, but
the oracle no longer waits for one.
"""

from __future__ import annotations

import logging

from marketplace.chain.versions_client import Reason, VersionsClient
from marketplace.errors import FedMarketError, TransactionRevertedError
from marketplace.protocol.calibration import NetworkUnlearning
from marketplace.protocol.session import open_validation_set
from marketplace.protocol.withdrawal import revalidate
from marketplace.resilience import is_transient
from node.peers.base import Peer, Step
from node.peers.turns import ChoreTurns

log = logging.getLogger(__name__)

VERSION_STEP = "version"  # journal step; its round is the version number


class VersionDuty:
    """One committee member's duties over its task's versions: the trained model as the root
    (:meth:`root_step`), then the re-validation of unlearned versions (:meth:`step`)."""

    def __init__(self, peer: Peer, turns: ChoreTurns | None = None) -> None:
        self.peer = peer
        self.turns = turns or ChoreTurns(peer.me, peer.session.market.now)
        self._run: NetworkUnlearning | None = None
        self._root_validated = False  # once seen, never undone: stop reading the versions

    def _registered(self) -> VersionsClient | None:
        """The deployment's ``ModelVersions`` when the task is registered there, else ``None``."""
        s = self.peer.session
        if "ModelVersions" not in s.market.deployment.contracts:
            return None
        versions = VersionsClient(s.market)
        try:
            versions.state(s.task_id)
        except TransactionRevertedError as exc:
            if exc.error_name == "ModelVersionsUnknownTask":
                return None
            raise
        return versions

    def root_step(self) -> Step | None:
        """Record the trained model as the task's root version (if nobody has) and attest it,
        until a version is validated; ``None`` when nothing is owed."""
        if self._root_validated:
            return None
        versions = self._registered()
        if versions is None:
            return None
        s, tid, me = self.peer.session, self.peer.session.task_id, self.peer.me
        recorded = versions.versions(tid)
        if any(v.validated for v in recorded):
            self._root_validated = True
            return None
        final_round = int(s.info().rounds) + 1
        digest = s.market.model_digest(tid, final_round)
        if digest == bytes(32):
            return None  # not trained (yet): no root to record
        roots = [v for v in recorded if v.reason == Reason.TRAINED and v.parent == 0]
        if not roots:
            if not self.turns.my_turn(("root-version",), s.market.oracles(tid), 0):
                return Step.waiting("waiting for the trained model to be recorded as version 1")
            cid, _ = s.market.final_model_post(tid, final_round - 1)
            number = versions.record_version(
                self.peer.account, tid, parent=0, reason=Reason.TRAINED, excludes=0,
                digest=digest, cid=cid,
            )  # fmt: skip
            return Step.acted(f"recorded the trained model as version {number}", detail=cid)
        # The contract refused any other digest for a root: it is the task's final model.
        root = roots[0]
        if versions.attested_by(tid, root.number, me):
            return None  # our part is done; the rest of the quorum is the others'
        try:
            versions.attest_version(self.peer.account, tid, root.number)
        except TransactionRevertedError as exc:
            if exc.error_name != "ModelVersionsAlreadyAttested":
                raise
        return Step.acted(f"attested version {root.number}, the trained model")

    def _versions(self) -> VersionsClient | None:
        """The deployment's ``ModelVersions`` when the task has a withdrawal (so it is
        registered for retention), else ``None``."""
        s = self.peer.session
        if "ModelVersions" not in s.market.deployment.contracts:
            return None
        versions = VersionsClient(s.market)
        return versions if versions.withdrawal_count(s.task_id) else None

    def step(self) -> Step | None:
        """The next re-validation step, or ``None`` when nothing is owed now."""
        versions = self._versions()
        if versions is None:
            return None
        s, tid, me = self.peer.session, self.peer.session.task_id, self.peer.me
        state = versions.state(tid)
        k = state.withdrawal_count
        if k == 0 or state.excluded_count >= k:
            return None
        owed = s.market.now() <= versions.withdrawal(tid, state.excluded_count + 1).deadline
        candidates = [
            v
            for v in versions.versions(tid)
            if v.reason == Reason.UNLEARNED and v.excludes == k and not v.validated
        ]
        if any(versions.attested_by(tid, v.number, me) for v in candidates):
            return None  # our part is done; the rest of the quorum is the others'
        fresh = [v for v in candidates if not self.peer.journal.has(tid, v.number, VERSION_STEP)]
        waiting = Step.waiting(f"waiting for an unlearned version without withdrawals 1..{k}")
        if not fresh:
            return waiting if owed else None
        if self._run is None or self._run.excludes != k:
            self._run = NetworkUnlearning.open(s, versions, excludes=k)
        result = self._run.result()
        if result is None:
            return waiting if owed else None
        version = fresh[0]
        if version.digest != result.digest:
            reason = (
                f"its digest 0x{version.digest.hex()[:12]}… is not the "
                f"0x{result.digest.hex()[:12]}… derived from the committed calibration updates"
            )
            return self._refuse(version.number, reason)
        x_val, y_val = open_validation_set(s)
        try:
            accuracy = revalidate(s, versions, self.peer.account, version.number, x_val, y_val)
        except FedMarketError as exc:
            if is_transient(exc) or isinstance(exc, TransactionRevertedError):
                raise  # a store or chain hiccup is not the version's fault
            return self._refuse(version.number, str(exc))
        self.peer.journal.record(tid, version.number, VERSION_STEP, {"accuracy": accuracy})
        return Step.acted(
            f"attested version {version.number} without withdrawals 1..{k} "
            f"(validation accuracy {accuracy:.4f})"
        )

    def _refuse(self, number: int, reason: str) -> Step:
        s = self.peer.session
        log.error("task %d: refusing version %d: %s", s.task_id, number, reason)
        self.peer.journal.record(s.task_id, number, VERSION_STEP, {"refused": reason})
        return Step.acted(f"refused version {number}: {reason}")
