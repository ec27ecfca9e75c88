"""A remaining trainer's part in unlearning a withdrawn owner's data (``fedmarket data unlearn``).

After a consent withdrawal is recorded on-chain, each remaining trainer runs this peer with the
data it trained on. :meth:`UnlearningNode.step` reads the chain and does the one next thing owed
(:mod:`marketplace.protocol.calibration` has the protocol): train its part of the open
calibration round from the model every peer derives, publish it sealed and commit it; once every
round is closed, derive the unlearned model, record it as a version when it is this trainer's
turn (or check the recorded digest against its own), and wait for the committee's attestation.

Safe to restart: the journal keeps each published update (a committed CID is never replaced by a
fresh training of the same round), and every action checks the chain first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar

from marketplace.chain.versions_client import Reason, VersionsClient
from marketplace.errors import ConfigError
from marketplace.fl.data import Dataset
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import train_local
from marketplace.protocol.calibration import NetworkUnlearning, StepStatus
from marketplace.protocol.session import TaskSession
from marketplace.protocol.withdrawal import publish_version
from node.peers.base import Peer, Step
from node.peers.journal import Journal

log = logging.getLogger(__name__)


def calibration_step_name(excludes: int) -> str:
    """The journal step of this trainer's published update in unlearning ``excludes``."""
    return f"calibration-{excludes}"


class UnlearningNode(Peer):
    """One remaining trainer unlearning the task's withdrawn data with the others."""

    role: ClassVar[str] = "unlearning"

    def __init__(
        self,
        session: TaskSession,
        data: Dataset,
        journal: Journal,
        *,
        num_threads: int = 1,
        seed: int = 0,
        wait_validated: bool = True,
        post_grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(session, journal)
        if session.doc.privacy is not None:
            raise ConfigError(
                f"task {session.task_id} trains under differential privacy; calibration rounds "
                "do not spend its budget yet, so this node does not run them: unlearn by "
                "retraining the task instead"
            )
        if "ModelVersions" not in session.market.deployment.contracts:
            raise ConfigError(
                f"the deployment for chain {session.chain_id} has no ModelVersions: no "
                "withdrawals to unlearn (redeploy with `fedmarket deploy`)"
            )
        self.versions = VersionsClient(session.market)
        self.data = data
        self.num_threads = num_threads
        self.seed = seed
        self.wait_validated = wait_validated
        self.post_grace = post_grace
        self._clock = clock
        self._first_noticed: dict[object, tuple[float, int]] = {}
        self._run: NetworkUnlearning | None = None
        self.recorded: int | None = None  # the version this run ended with

    @property
    def derived_digest(self) -> bytes | None:
        """The unlearned model's digest as this node derived it (``None``: not derived yet)."""
        result = self._run.result() if self._run is not None else None
        return result.digest if result is not None else None

    # --- the state machine ----------------------------------------------------------------
    def step(self) -> Step:
        s, v, tid = self.session, self.versions, self.session.task_id
        if v.withdrawal_count(tid) == 0:  # also: a task not registered for retention
            return Step.done(f"task {tid} has no withdrawal to unlearn")
        if v.has_withdrawn(tid, self.me):
            return Step.done("this trainer withdrew: the remaining trainers unlearn its data")
        state = v.state(tid)
        k = state.withdrawal_count
        if state.excluded_count >= k:
            return Step.done(f"a validated version excludes withdrawals 1..{k}")
        if not s.members().is_trainer(self.me):
            raise ConfigError(f"{self.me} is not a trainer of task {tid}: nothing to unlearn")
        if self._run is None and s.market.model_digest(tid, int(s.info().rounds) + 1) == bytes(32):
            return Step.waiting("waiting for training to end (the task's final model)")
        run = self._unlearning(k)
        statuses = run.status()
        current = statuses[-1]
        if not current.closed:
            if self.me in current.expected and self.me not in current.commits:
                return self._train_and_commit(run, statuses, current)
            n = len(run.plan.steps)
            return Step.waiting(
                f"waiting for calibration round {current.step.round} ({current.index + 1} of {n}):"
                f" {len(current.commits)} of {len(current.expected)} committed"
            )
        return self._record(run, statuses)

    def _unlearning(self, k: int) -> NetworkUnlearning:
        if self._run is None or self._run.excludes != k:
            self._run = NetworkUnlearning.open(self.session, self.versions, excludes=k)
        return self._run

    # --- steps ----------------------------------------------------------------------------
    def _train_and_commit(
        self, run: NetworkUnlearning, statuses: Sequence[StepStatus], current: StepStatus
    ) -> Step:
        s, tid, k, j = self.session, self.session.task_id, run.excludes, current.step.round
        name = calibration_step_name(k)
        published = self.journal.get(tid, j, name)
        if published is None:
            start = run.start_model(current.index, statuses)
            config = replace(
                s.doc.train, epochs=current.step.epochs, num_threads=self.num_threads,
                seed=derive_seed(self.seed, "unlearn", self.me, k, j),
            )  # fmt: skip
            delta = train_local(s.doc.model, start, self.data, config).delta
            cid, digest = run.publish(current.step, delta)
            published = self.journal.record_once(tid, j, name, {"cid": cid, "digest": digest.hex()})
        cid, digest = str(published["cid"]), bytes.fromhex(published["digest"])
        if self.versions.calibration_of(tid, k, j, self.me) == bytes(32):
            self.versions.commit_calibration(
                self.account, tid, excludes=k, round_=j, digest=digest, cid=cid
            )
        return Step.acted(f"committed calibration round {j} of withdrawals 1..{k}", detail=cid)

    def _record(self, run: NetworkUnlearning, statuses: Sequence[StepStatus]) -> Step:
        s, v, tid, k = self.session, self.versions, self.session.task_id, run.excludes
        result = run.result(statuses)
        if result is None:  # every step closed: cannot happen
            raise ConfigError(f"task {tid}: calibration of withdrawals 1..{k} is not complete")
        recorded = [
            ver for ver in v.versions(tid) if ver.reason == Reason.UNLEARNED and ver.excludes == k
        ]
        ours = [ver for ver in recorded if ver.digest == result.digest]
        if not ours:
            for other in recorded:
                log.error(
                    "UNLEARNED VERSION MISMATCH: version %d records 0x%s…, this node derived "
                    "0x%s… from the committed calibration updates; recording ours",
                    other.number, other.digest.hex()[:12], result.digest.hex()[:12],
                )  # fmt: skip
            if not any(ver.validated for ver in v.versions(tid)):
                # The unlearned version's parent: the committee (`oracle run`) records and
                # attests the trained model as version 1 in a task registered for retention.
                return Step.waiting(
                    "waiting for the committee to validate the trained model as version 1"
                )
            last = statuses[-1].participants or statuses[-1].expected
            if not self._my_turn(("record", k), last):
                return Step.waiting(f"waiting for the unlearned version of withdrawals 1..{k}")
            made = publish_version(s, v, self.account, result, excludes=k, withdrawn=run.withdrawn)
            self.recorded = made.number
            return Step.acted(
                f"recorded version {made.number} without withdrawals 1..{k} "
                f"(digest 0x{result.digest.hex()[:12]}…, {result.method})",
                detail=made.cid,
            )
        version = ours[0]
        self.recorded = version.number
        if version.validated or not self.wait_validated:
            what = "validated" if version.validated else "recorded"
            return Step.done(
                f"version {version.number} without withdrawals 1..{k} {what} "
                f"(digest 0x{version.digest.hex()[:12]}…, the one this node derived)"
            )
        return Step.waiting(f"waiting for the committee to attest version {version.number}")

    def _my_turn(self, chore: object, seats: Sequence[str]) -> bool:
        """The first of ``seats`` (address order) does ``chore`` at once; any other remaining
        trainer once it is still undone ``post_grace`` seconds after this node first saw it due
        (local or chain clock), so a crashed recorder does not stall the unlearning."""
        if seats and min(seats, key=str.lower).lower() == self.me.lower():
            return True
        now, now_chain = self._clock(), self.session.market.now()
        seen, seen_chain = self._first_noticed.setdefault(chore, (now, now_chain))
        return now - seen >= self.post_grace or now_chain - seen_chain >= self.post_grace
