"""A trainer node's secure-aggregation rounds: the task's ``secagg`` term, driven by ``node run``.

:class:`SecAggDuty` is stepped first by :meth:`node.peers.trainer.TrainerNode.step` once training
has started. It owes two things, in this order:

1. **The last closed round's aggregate.** Round ``r - 1``'s :class:`SecAggPeer` unmasks with the
   other live trainers and sums; the survivors' mean goes into the journal and into the session
   (:meth:`TaskSession.set_round_mean`), from which the model of round ``r`` follows
   (``previous + server_lr · mean``; every survivor derives the same bits and the trainer's plain
   steps post it or check the posted one, as in plain mode). A trainer that cannot finish the sum
   (it dropped out and came back after the others moved on, or the round closed before it could
   mask) follows the model the survivors posted on-chain (digest checked).
2. **This round's input.** Train (the update is journaled as the round's ``published`` entry,
   with its DP booking), then share, collect the shares, mask and ``commitUpdate``
   (:class:`~marketplace.protocol.secagg_exchange.SecAggPeer`). Once committed, the plain steps
   take over (closing the round when everyone is in, or at its deadline).

Crash recovery: the peer's secrets (self-mask seed, plaintext salt), the share bundles it opened
and every message it signed are journaled (:class:`JournalRound`) before they leave the node, and
the input before the peer exists, so a SIGKILLed node rebuilds the same peer: it re-publishes the
same messages, masks the same bytes and never commits twice.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Protocol

import numpy as np

from marketplace.chain.clients import Phase, TaskView
from marketplace.errors import ConfigError
from marketplace.fl.data import Dataset
from marketplace.fl.weights import Weights, flatten
from marketplace.protocol.secagg_exchange import SecAggPeer, Stage
from marketplace.protocol.session import TaskSession
from marketplace.storage.pubsub import PubsubClient
from node.peers.base import Step
from node.peers.journal import Journal
from node.peers.trainer_privacy import TrainerPrivacy

log = logging.getLogger(__name__)


class TrainerHost(Protocol):
    """What the duty uses of its trainer node (:class:`node.peers.trainer.TrainerNode`)."""

    session: TaskSession
    journal: Journal
    data: Dataset
    privacy: TrainerPrivacy | None

    @property
    def me(self) -> str: ...

    def train_round(self, r: int) -> tuple[Weights, dict[str, Any] | None] | Step: ...

    def try_advance(self) -> bool: ...

    def _check_or_post_model(self, r: int) -> str | None: ...


PUBLISHED = "published"  # the round's input (and DP booking), as in plain mode
SUM = "secagg_sum"  # the round's unmasked mean, once summed
UNMASKING = (Stage.UNMASK, Stage.SUM)


def _b64(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f8").tobytes()).decode()


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


class JournalRound:
    """One round's view of the node's :class:`Journal`, as a ``SecAggPeer``'s ``RoundJournal``."""

    def __init__(self, journal: Journal, task_id: int, round_: int) -> None:
        self.journal, self.task_id, self.round = journal, task_id, round_

    def get(self, key: str) -> dict[str, Any] | None:
        return self.journal.get(self.task_id, self.round, key)

    def record(self, key: str, payload: dict[str, Any]) -> None:
        self.journal.record(self.task_id, self.round, key, payload)

    def record_once(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.journal.record_once(self.task_id, self.round, key, payload)


class SecAggDuty:
    """The secure-aggregation rounds of one trainer node (see the module docstring)."""

    def __init__(self, node: TrainerHost, pubsub: PubsubClient | None) -> None:
        if pubsub is None:
            raise ConfigError(
                f"task {node.session.task_id} uses secure aggregation, whose shares travel over "
                "Kubo pubsub: run the node with --ipfs-api ADDR (a daemon with pubsub enabled)"
            )
        self.node = node
        self.pubsub = pubsub
        self.peers: dict[int, SecAggPeer] = {}
        self._settled: set[int] = set()  # rounds whose next model is known or followed

    # --- the duty -------------------------------------------------------------------------
    def step(self, info: TaskView) -> Step | None:
        """What this trainer owes the secure aggregation now, or ``None`` (the plain steps)."""
        training = info.phase_enum == Phase.TRAINING
        if info.phase_enum in (Phase.FORMING, Phase.OPEN, Phase.CANCELLED):
            return None
        current = info.current_round if training else info.rounds + 1
        self._retire()
        if current > 1 and (owed := self._finish(current - 1)) is not None:
            return owed
        if not training:
            return None
        return self._contribute(current, info)

    def close(self) -> None:
        """Stop every round's subscription."""
        for peer in self.peers.values():
            peer.stop()
        self.peers.clear()

    # --- 1. the closed round's aggregate --------------------------------------------------
    def _finish(self, q: int) -> Step | None:
        s, tid = self.node.session, self.node.session.task_id
        if q in self._settled or s.has_round_mean(q):
            return None
        summed = self.node.journal.get(tid, q, SUM)
        if summed is not None:
            s.set_round_mean(q, None if summed["mean"] is None else _unb64(summed["mean"]))
            return None
        peer = self.peers.get(q) or self._resume(q)
        if peer is not None and peer.stage is not Stage.DONE:
            before = peer.stage
            what = peer.step()
            if peer.aggregate is not None:
                return self._summed(peer)
            if peer.stage is not before:
                return Step.acted(f"round {q}: {what}")
            if peer.stage in UNMASKING and s.market.model_digest(tid, q + 1) == bytes(32):
                return Step.waiting(f"round {q}: {what}")
        elif peer is not None and peer.aggregate is not None:
            return self._summed(peer)
        # No sum of our own (we sat the round out, dropped out, or the others moved on): the
        # model of round q + 1 is the one the survivors post (the session follows it).
        if not s.committed(q):
            s.set_round_mean(q, None)  # nobody committed: the model carries over
            return None
        if s.market.model_digest(tid, q + 1) == bytes(32):
            return Step.waiting(f"waiting for the survivors to post round {q + 1}'s model")
        self._settled.add(q)
        return None

    def _summed(self, peer: SecAggPeer) -> Step:
        s = self.node.session
        mean = peer.aggregate
        assert mean is not None
        self.node.journal.record(
            s.task_id, peer.round, SUM, {"mean": _b64(mean), "survivors": list(peer.survivors)}
        )
        s.set_round_mean(peer.round, mean)
        dropped = len(peer.roster) - len(peer.survivors)
        return Step.acted(
            f"unmasked round {peer.round}: the mean of {len(peer.survivors)} survivors "
            f"({dropped} dropped)"
        )

    def _resume(self, q: int) -> SecAggPeer | None:
        """Rebuild round ``q``'s peer after a restart, if this node took part in it."""
        rj = JournalRound(self.node.journal, self.node.session.task_id, q)
        if rj.get("secagg_secrets") is None:
            return None
        return self._peer(q, self._journaled_input(q))

    # --- 2. this round's input ------------------------------------------------------------
    def _contribute(self, r: int, info: TaskView) -> Step | None:
        node, s = self.node, self.node.session
        if r > 1 and (posted := node._check_or_post_model(r)):
            # Every step, not only the first: the trainer in the post seat may be stalled, and
            # the others take over after the grace while they still wait for its shares.
            return Step.acted(posted)
        committed = s.market.update_of(s.task_id, r, node.me)[0] != bytes(32)
        peer = self.peers.get(r)
        if peer is None:
            refused = node.privacy is not None and node.privacy.refused(r)
            said = "input ready for secure aggregation"
            if node.journal.get(s.task_id, r, PUBLISHED) is None and not refused:
                trained = node.train_round(r)
                if isinstance(trained, Step):  # the DP budget is spent: share, bring no input
                    refused, said = True, f"{trained.action}; shares, brings no input"
                else:
                    delta, dp = trained
                    entry: dict[str, Any] = {"vector": _b64(flatten(delta)), "n": len(node.data)}
                    node.journal.record_once(
                        s.task_id, r, PUBLISHED, entry if dp is None else {**entry, "dp": dp}
                    )
            peer = self._peer(r, None if refused else self._journaled_input(r))
            return Step.acted(f"round {r}: {said}")
        if committed:
            peer.step()  # keeps re-publishing our shares for the slower peers
            return None
        before = peer.stage
        what = peer.step()
        if before is Stage.MASK and peer.stage is Stage.WAIT_CLOSE and peer.vector is not None:
            # The last committer closes the round at once, as in plain mode.
            now = s.info()
            if now.round_commits >= now.trainer_count and node.try_advance():
                return Step.acted(f"committed round {r} (secure aggregation) and closed it")
            return Step.acted(f"committed round {r} (secure aggregation)")
        if peer.stage is not before:
            return Step.acted(f"round {r}: {what}")
        return Step.waiting(f"round {r}: {what}")

    def _journaled_input(self, r: int) -> np.ndarray | None:
        entry = self.node.journal.get(self.node.session.task_id, r, PUBLISHED)
        return None if entry is None or "vector" not in entry else _unb64(entry["vector"])

    def _peer(self, r: int, vector: np.ndarray | None) -> SecAggPeer:
        s = self.node.session
        entry = self.node.journal.get(s.task_id, r, PUBLISHED) or {}
        peer = SecAggPeer(
            s, self.pubsub, round_=r, vector=vector, num_samples=int(entry.get("n", 0)),
            journal=JournalRound(self.node.journal, s.task_id, r),
        )  # fmt: skip
        self.peers[r] = peer
        return peer

    def _retire(self) -> None:
        """Stop the peers of rounds whose next model is on-chain: a slower peer that still lacks
        our messages follows that model, so nothing more is owed to it. Until then a summed
        round's peer keeps re-publishing its unmasking (pubsub is best-effort: a peer that missed
        it may hold the seat that posts the next model, and would wait for it forever)."""
        s = self.node.session
        for q in [q for q, p in self.peers.items() if p.stage is Stage.DONE]:
            if s.market.model_digest(s.task_id, q + 1) != bytes(32):
                self.peers.pop(q).stop()
                self._settled.add(q)
            else:
                self.peers[q].step()  # at DONE, a step only re-publishes
