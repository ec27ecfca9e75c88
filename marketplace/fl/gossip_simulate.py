"""In-process simulation of asynchronous gossip averaging: N peers, no barrier, unequal speeds.

Every peer is a :class:`~marketplace.fl.gossip_averaging.GossipAveragingPeer`; they share an
in-memory *board* holding each peer's latest snapshot (what the pubsub announcements give a peer
on the network: every peer hears of every publication, and fetches only what it samples). All
peers publish their version-0 model first, then step:

* **deterministic** (default): one thread runs the steps in a fixed interleaving ``schedule``
  (a list of peer indices, each appearing ``rounds`` times), by default
  :func:`speed_schedule` of the peers' relative ``speeds``. Same inputs, same bits.
* **threaded** (``threaded=True``): one thread per peer runs its ``rounds`` steps back to back
  and sleeps ``step_delay / speed`` after each, so peers drift apart as on a real network; the
  interleaving (hence the result) depends on the OS scheduler.

**Per-round records.** Round ``r`` is measured on the models every peer held right after its
``r``-th step (version ``r``), whenever that happened: consensus distance
(:func:`~marketplace.fl.gossip_averaging.consensus_report`), accuracy of each peer's model on
the held-out split (mean, min, max), and the traffic of the steps that produced version ``r``:
snapshots transferred (a snapshot already held at its version is not fetched again) and their
bytes (plaintext safetensors size; announcements and encryption overhead are not counted here —
the network node counts those). Round 0 is the initial models. Models are evaluated after the
run, on the calling thread.

Example
-------
>>> result = simulate_gossip_averaging(model_spec=spec, splits=splits, partition=parts,
...                                    rounds=10, k=2, speeds=[1, 1, 0.5, 1, 0.8, 1])
>>> [r.consensus.relative for r in result.records]
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl.data import DataSplits
from marketplace.fl.gossip_averaging import (
    ConsensusDistance,
    GossipAveragingPeer,
    MixingRule,
    Snapshot,
    SnapshotInfo,
    StepReport,
    consensus_report,
)
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.serialization import dump_weights
from marketplace.fl.simulate import default_trainer_ids
from marketplace.fl.train import TrainConfig, evaluate
from marketplace.fl.weights import Weights, get_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GossipRoundRecord:
    """The peers' models at version ``round`` and the traffic of the steps that produced them."""

    round: int
    consensus: ConsensusDistance
    mean_accuracy: float
    min_accuracy: float
    max_accuracy: float
    snapshots_fetched: int  # snapshot transfers made by the steps of this round (all peers)
    bytes: int  # their payload bytes (plaintext safetensors)
    mean_mixed: float  # neighbours mixed per step (NaN for round 0)
    mean_staleness: float  # of the mixed snapshots (NaN if none was mixed)
    refused: int  # snapshots refused by the steps of this round


@dataclass(frozen=True)
class GossipSimulationResult:
    """Records for rounds ``0..rounds``, every step's report, the final model of each peer."""

    peer_ids: tuple[str, ...]
    k: int | None
    mixing: str
    staleness_exponent: float
    threaded: bool
    order: tuple[str, ...]  # the peer of each step, in the order the steps ran
    records: tuple[GossipRoundRecord, ...]
    steps: tuple[StepReport, ...]
    final_weights: Mapping[str, Weights]
    seconds: float  # wall time of the steps (not of the evaluation)

    def distances(self, kind: Literal["mean_sq", "rms", "relative"] = "mean_sq") -> list[float]:
        """The consensus distance per round, starting with round 0."""
        return [getattr(r.consensus, kind) for r in self.records]

    def accuracies(self, kind: Literal["mean", "min", "max"] = "mean") -> list[float]:
        """Peers' accuracy per round (mean, min or max over peers), starting with round 0."""
        return [getattr(r, f"{kind}_accuracy") for r in self.records]


def speed_schedule(speeds: Sequence[float], rounds: int) -> list[int]:
    """A fixed interleaving of peers running at relative ``speeds``.

    Peer ``i`` finishes its ``j``-th step at time ``j / speeds[i]``; the steps are ordered by that
    time, ties by peer index. Equal speeds give round robin; a peer at half speed steps half as
    often, and takes its last steps after the fast ones have finished.
    """
    if rounds < 1:
        raise ConfigError("rounds must be at least 1")
    if not speeds or any(not s > 0 for s in speeds):
        raise ConfigError(f"speeds must be positive, one per peer, got {list(speeds)}")
    events = [(j / s, i) for i, s in enumerate(speeds) for j in range(1, rounds + 1)]
    return [i for _, i in sorted(events)]


class _Board:
    """Each peer's latest published snapshot, shared by the simulated peers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Snapshot] = {}

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            held = self._latest.get(snapshot.info.peer)
            if held is None or held.info.version < snapshot.info.version:
                self._latest[snapshot.info.peer] = snapshot

    def view(self) -> dict[str, Snapshot]:
        with self._lock:
            return dict(self._latest)


def simulate_gossip_averaging(
    *,
    model_spec: ModelSpec,
    splits: DataSplits,
    partition: Sequence[np.ndarray],
    rounds: int,
    k: int | None = 2,
    train_config: TrainConfig | None = None,
    mixing: MixingRule = "uniform",
    staleness_exponent: float = 0.0,
    max_staleness: int | None = None,
    init: Literal["shared", "per_peer"] = "shared",
    seed: int = 0,
    speeds: Sequence[float] | None = None,
    schedule: Sequence[int] | None = None,
    threaded: bool = False,
    step_delay: float = 0.0,
    eval_split: Literal["test", "validation"] = "test",
    peer_ids: Sequence[str] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> GossipSimulationResult:
    """Run asynchronous gossip averaging in one process.

    Parameters
    ----------
    model_spec, splits, partition:
        The model, the data (``splits.train`` rows split by ``partition``, one index array per
        peer) and the held-out split named by ``eval_split`` for accuracy.
    rounds:
        Local rounds (steps) per peer.
    k, mixing, staleness_exponent, max_staleness:
        The mixing of every peer (see :class:`GossipAveragingPeer`).
    train_config:
        Local training per step (its seed is replaced per peer and version).
    init:
        ``"shared"``: every peer starts from the spec's initial model (a task's initial weights);
        ``"per_peer"``: peer ``i`` starts from the spec with seed ``spec.seed + i`` (no common
        start, so consensus must come from mixing alone).
    speeds:
        Relative speeds of the peers (default all 1): the default schedule, and the sleeps of
        the threaded mode.
    schedule:
        Deterministic mode only: the peer index of every step, each peer ``rounds`` times.
    threaded, step_delay:
        Run one thread per peer, sleeping ``step_delay / speeds[i]`` seconds after each step.
    on_step:
        Called with every step's report (from the peer's thread in threaded mode).
    """
    n = len(partition)
    if n < 1 or rounds < 1:
        raise ConfigError("need at least one peer and one round")
    ids = list(peer_ids) if peer_ids is not None else default_trainer_ids(n)
    if len(ids) != n or len(set(ids)) != n:
        raise ConfigError("peer_ids must be unique and one per partition part")
    rel = list(speeds) if speeds is not None else [1.0] * n
    if len(rel) != n or any(not s > 0 for s in rel):
        raise ConfigError(f"speeds must be positive, one per peer, got {rel}")
    if step_delay < 0:
        raise ConfigError("step_delay must be >= 0")
    if init not in ("shared", "per_peer"):
        raise ConfigError(f"init must be 'shared' or 'per_peer', got {init!r}")
    if threaded and schedule is not None:
        raise ConfigError("a fixed schedule is for the deterministic mode: drop threaded=True")
    if schedule is None:
        order_idx = speed_schedule(rel, rounds)
    else:
        order_idx = [int(i) for i in schedule]
        counts = np.bincount(order_idx, minlength=n) if order_idx else np.zeros(n, dtype=int)
        if min(order_idx, default=0) < 0 or len(counts) != n or (counts != rounds).any():
            raise ConfigError(f"schedule must list each of the {n} peers exactly {rounds} times")

    config = train_config or TrainConfig()
    peers = []
    for i, (pid, idx) in enumerate(zip(ids, partition, strict=True)):
        spec_i = (
            model_spec
            if init == "shared"
            else dataclasses.replace(model_spec, seed=model_spec.seed + i)
        )
        peers.append(
            GossipAveragingPeer(
                peer_id=pid, model_spec=model_spec, dataset=splits.train.subset(idx),
                initial_weights=get_weights(build_model(spec_i)), train_config=config, k=k,
                mixing=mixing, staleness_exponent=staleness_exponent,
                max_staleness=max_staleness, seed=seed,
            )
        )  # fmt: skip
    snapshot_bytes = len(dump_weights(peers[0].weights))
    board = _Board()
    history: dict[str, list[Weights]] = {p.peer_id: [p.weights] for p in peers}
    reports: list[StepReport] = []
    lock = threading.Lock()
    for p in peers:
        board.publish(p.snapshot())

    def run_step(peer: GossipAveragingPeer) -> None:
        view = board.view()
        candidates = {pid: s.info for pid, s in view.items()}

        def fetch(info: SnapshotInfo) -> Weights:
            return view[info.peer].weights

        report = peer.step(candidates, fetch)
        board.publish(peer.snapshot())
        with lock:
            history[peer.peer_id].append(peer.weights)
            reports.append(report)
        if on_step is not None:
            on_step(report)

    started = time.perf_counter()
    if not threaded:
        for i in order_idx:
            run_step(peers[i])
    else:
        errors: list[BaseException] = []

        def run_peer(i: int) -> None:
            try:
                for _ in range(rounds):
                    run_step(peers[i])
                    if step_delay:
                        time.sleep(step_delay / rel[i])
            except BaseException as exc:  # re-raised on the calling thread
                errors.append(exc)

        threads = [
            threading.Thread(target=run_peer, args=(i,), name=f"gossip-avg-{ids[i]}")
            for i in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    seconds = time.perf_counter() - started

    evaluation = splits.test if eval_split == "test" else splits.validation
    records = []
    for r in range(rounds + 1):
        models = [history[pid][r] for pid in ids]
        accs = [evaluate(model_spec, w, evaluation.x, evaluation.y).accuracy for w in models]
        steps = [s for s in reports if s.version == r]
        mixed = [m.staleness for s in steps for m in s.mixed]
        fetched = sum(len(s.fetched) for s in steps)
        records.append(
            GossipRoundRecord(
                round=r, consensus=consensus_report(models), mean_accuracy=float(np.mean(accs)),
                min_accuracy=float(min(accs)), max_accuracy=float(max(accs)),
                snapshots_fetched=fetched, bytes=fetched * snapshot_bytes,
                mean_mixed=float(np.mean([len(s.mixed) for s in steps])) if steps else float("nan"),
                mean_staleness=float(np.mean(mixed)) if mixed else float("nan"),
                refused=sum(len(s.refused) for s in steps),
            )
        )  # fmt: skip
    return GossipSimulationResult(
        peer_ids=tuple(ids),
        k=k,
        mixing=mixing,
        staleness_exponent=staleness_exponent,
        threaded=threaded,
        order=tuple(s.peer for s in reports),
        records=tuple(records),
        steps=tuple(reports),
        final_weights={p.peer_id: p.weights for p in peers},
        seconds=seconds,
    )
