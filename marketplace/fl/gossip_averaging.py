"""Asynchronous gossip averaging: every peer trains, then mixes with ``k`` sampled neighbours.

The second aggregation mode of the design (step 5 of a round): no global model, no barrier. A
peer holds a model and a version counter (the number of local rounds it has finished). One step
of a peer is:

1. **train** one local round (:func:`marketplace.fl.train.train_local`) from its current model
   ``x_i``, giving the local delta ``Δ_i``;
2. **mix**: sample up to ``k`` neighbours, uniformly without replacement and from a seeded RNG,
   among the peers whose latest snapshot it currently knows of, *whatever their version*, fetch
   each sampled snapshot (a cached one is reused), and set
   ``x_i ← w_i·x_i + Σ_j w_j·x_j + Δ_i`` with the convex weights of :func:`mixing_weights`;
3. increment its version and publish the new model as its snapshot.

The delta is added after the mix, in full, as in AD-PSGD (Lian et al., 2018), rather than mixing
the freshly trained model ``x_i + Δ_i``: neighbours' snapshots do not contain this step's progress,
so mixing the trained model would scale every step's progress by the self weight ``1/(m+1)`` —
measured here, that made mixing with everyone learn several times slower than not mixing at all.
Snapshots are fetched after training, so they are as fresh as the network allows.

Nobody waits for anybody: a slow peer's snapshot is simply older (*stale*). The staleness of a
neighbour's snapshot is ``max(0, v - v_j)``, where ``v`` is the version the peer trained from and
``v_j`` the snapshot's version; it can down-weight the snapshot (``staleness_exponent``) or exclude
it (``max_staleness``).

A snapshot that cannot be fetched or is invalid (the ``fetch`` callable raises a
:class:`~marketplace.errors.FedMarketError`, or the weights have the wrong layout or hold
NaN/Inf) is skipped and the walk goes on to the next sampled candidate, so a bad neighbour costs
a fetch, not a mixing slot; that ``(peer, version)`` is never tried again (a newer version of the
same peer gets a fresh chance).

**Consensus distance.** :func:`consensus_report` measures how far the peers are from agreeing:
``mean_sq = (1/n) Σ_i ||x_i - x̄||²`` over the flattened float64 models ``x_i`` and their average
``x̄`` (the quantity decentralized-SGD analyses bound, e.g. Koloskova et al. 2020), its square
root ``rms`` (in weight units), and ``relative = rms / ||x̄||`` (scale-free, comparable across
models). :func:`consensus_distance` returns ``mean_sq``.

Example
-------
>>> peer = GossipAveragingPeer(peer_id="p0", model_spec=spec, dataset=local, k=2,
...                            initial_weights=w0, train_config=TrainConfig(epochs=1))
>>> report = peer.step(candidates={"p1": SnapshotInfo("p1", 3, 120)}, fetch=fetch_snapshot)
>>> peer.snapshot().info.version
1
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch

from marketplace.errors import ConfigError, FedMarketError, InvalidUpdateError
from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import TrainConfig, train_local
from marketplace.fl.weights import (
    Weights,
    apply_delta,
    check_finite,
    check_same_layout,
    flatten,
    unflatten,
)

log = logging.getLogger(__name__)


MixingRule = Literal["uniform", "samples"]
MIXING_RULES: tuple[MixingRule, ...] = get_args(MixingRule)


@dataclass(frozen=True)
class SnapshotInfo:
    """What a peer knows of a neighbour's latest snapshot before fetching it."""

    peer: str
    version: int  # local rounds the neighbour had finished when it published the snapshot
    num_samples: int  # rows it trains on (self-reported: only the "samples" rule uses it)


@dataclass(frozen=True)
class Snapshot:
    """A published model: its description and its weights (float32, sorted keys)."""

    info: SnapshotInfo
    weights: Weights = field(repr=False)


@dataclass(frozen=True)
class MixedNeighbour:
    """One neighbour that entered a mix: which snapshot, how stale, with what weight."""

    peer: str
    version: int
    staleness: int
    weight: float


@dataclass(frozen=True)
class StepReport:
    """What one step of a peer did.

    ``version`` is the version the step produced; ``fetched`` the neighbours whose snapshot was
    transferred for this step (cached ones are not); ``refused`` maps a neighbour whose snapshot
    was skipped to a one-line ``"reason: detail"``.
    """

    peer: str
    version: int
    train_loss: float
    self_weight: float
    mixed: tuple[MixedNeighbour, ...]
    fetched: tuple[str, ...]
    refused: Mapping[str, str]
    candidates: int  # eligible neighbours known at the time of the mix

    @property
    def mean_staleness(self) -> float:
        """Mean staleness of the mixed snapshots (NaN when nothing was mixed)."""
        return float(np.mean([m.staleness for m in self.mixed])) if self.mixed else float("nan")


@dataclass(frozen=True)
class ConsensusDistance:
    """How far a set of models is from agreeing (see the module docstring).

    ``mean_sq`` = mean over peers of ``||x_i - x̄||²``; ``rms`` = its square root;
    ``relative`` = ``rms / ||x̄||`` (0 when every model is identical); ``average_norm`` = ``||x̄||``.
    """

    mean_sq: float
    rms: float
    relative: float
    average_norm: float


Fetch = Callable[[SnapshotInfo], Weights]
"""Fetch the weights of a neighbour's snapshot; raise a ``FedMarketError`` if it is unusable."""


class SnapshotRefusedError(FedMarketError):
    """A neighbour's snapshot was not usable; ``reason`` is a short counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- pure math ---------------------------------------------------------------------------------
def _stack(models: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
    if not models:
        raise ConfigError("consensus distance needs at least one model")
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        check_same_layout(first, m, what=f"model {i}")
    return np.stack([flatten(m) for m in models])  # (n, d) float64


def consensus_report(models: Sequence[Mapping[str, torch.Tensor]]) -> ConsensusDistance:
    """The consensus distance of ``models`` (weights with one layout), in float64."""
    x = _stack(models)  # (n, d)
    average = x.mean(axis=0)  # (d,)
    mean_sq = float(((x - average) ** 2).sum(axis=1).mean())
    rms = math.sqrt(mean_sq)
    norm = float(np.linalg.norm(average))
    relative = rms / norm if norm > 0 else (0.0 if rms == 0 else float("inf"))
    return ConsensusDistance(mean_sq=mean_sq, rms=rms, relative=relative, average_norm=norm)


def consensus_distance(models: Sequence[Mapping[str, torch.Tensor]]) -> float:
    """Mean over peers of the squared L2 distance of each flattened model to the peers' average."""
    return consensus_report(models).mean_sq


def mixing_weights(
    self_samples: int,
    neighbours: Sequence[tuple[int, int]],
    *,
    rule: MixingRule = "uniform",
    staleness_exponent: float = 0.0,
) -> tuple[float, list[float]]:
    """Weights of a mix: ``(self_weight, [neighbour weights])``, non-negative, summing to 1.

    ``neighbours`` lists ``(num_samples, staleness)`` of the snapshots mixed. With ``m`` of them:

    * ``"uniform"``: each neighbour's base weight is ``1 / (m + 1)`` (equal weights over the
      peer and its sampled neighbours);
    * ``"samples"``: ``n_j / (n_self + Σ_l n_l)`` (FedAvg's weighting, on self-reported counts).

    A neighbour's base weight is multiplied by ``(1 + staleness) ** -staleness_exponent``
    (polynomial staleness discount, as FedAsync's ``s(t - τ)``; exponent 0 = none) and the peer
    keeps the rest, so a stale snapshot pulls less and the combination stays convex.
    """
    if rule not in MIXING_RULES:
        raise ConfigError(f"mixing rule must be one of {list(MIXING_RULES)}, got {rule!r}")
    if staleness_exponent < 0:
        raise ConfigError(f"staleness_exponent must be >= 0, got {staleness_exponent}")
    if self_samples < 1 or any(n < 1 or s < 0 for n, s in neighbours):
        raise ConfigError("sample counts must be positive and staleness non-negative")
    m = len(neighbours)
    if rule == "uniform":
        base = [1.0 / (m + 1)] * m
    else:
        total = float(self_samples + sum(n for n, _ in neighbours))
        base = [n / total for n, _ in neighbours]
    weights = [
        b * (1.0 + s) ** -staleness_exponent for b, (_, s) in zip(base, neighbours, strict=True)
    ]
    return 1.0 - sum(weights), weights


# --- a peer --------------------------------------------------------------------------------------
class GossipAveragingPeer:
    """One peer of asynchronous gossip averaging: its model, its version, its local data.

    Not thread-safe: one thread steps a peer. :meth:`snapshot` may be read from other threads
    between steps (the weights dict is replaced, never mutated, by a step). Peers stepping on
    threads of one process train one at a time (a process-wide lock; fetching and mixing overlap).

    Parameters
    ----------
    peer_id:
        This peer's id (an address on the network); candidates are ordered by id before sampling.
    model_spec, dataset, train_config:
        What to train and how; the shuffling seed of each step is derived from ``seed``, the id
        and the version, so a step is reproducible.
    initial_weights:
        The model at version 0 (the task's initial model, or a per-peer one).
    k:
        Neighbours mixed per step at most (``None`` = every candidate, ``0`` = no mixing).
    mixing:
        ``"uniform"`` (default) or ``"samples"``: see :func:`mixing_weights`.
    staleness_exponent:
        Discount exponent of stale snapshots (0 = no discount).
    max_staleness:
        Snapshots staler than this are not candidates (``None`` = no bound).
    seed:
        Base of the derived seeds (training shuffles, neighbour sampling).
    """

    def __init__(
        self,
        *,
        peer_id: str,
        model_spec: ModelSpec,
        dataset: Dataset,
        initial_weights: Mapping[str, torch.Tensor],
        train_config: TrainConfig | None = None,
        k: int | None = 2,
        mixing: MixingRule = "uniform",
        staleness_exponent: float = 0.0,
        max_staleness: int | None = None,
        seed: int = 0,
    ) -> None:
        if k is not None and k < 0:
            raise ConfigError(f"k (neighbours per mix) must be >= 0 or None for all, got {k}")
        if max_staleness is not None and max_staleness < 0:
            raise ConfigError(f"max_staleness must be >= 0 or None, got {max_staleness}")
        if len(dataset) == 0:
            raise ConfigError(f"peer {peer_id!r} has no training rows")
        mixing_weights(1, [], rule=mixing, staleness_exponent=staleness_exponent)  # validates
        check_finite(initial_weights, what="initial weights")
        self.peer_id = peer_id
        self.model_spec = model_spec
        self.dataset = dataset
        self.train_config = train_config or TrainConfig()
        self.k = k
        self.mixing: MixingRule = mixing
        self.staleness_exponent = float(staleness_exponent)
        self.max_staleness = max_staleness
        self.seed = seed
        self.version = 0
        self.weights: Weights = {
            name: initial_weights[name].detach().float().clone() for name in sorted(initial_weights)
        }
        self._held: dict[str, Snapshot] = {}  # latest fetched snapshot per neighbour
        self._refused: dict[str, int] = {}  # neighbour -> highest version refused

    @property
    def num_samples(self) -> int:
        """Rows this peer trains on."""
        return len(self.dataset)

    def held_models(self) -> list[Weights]:
        """This peer's model and the latest snapshot it holds of each neighbour: the models a
        node can measure its *local* consensus distance on (it never sees all of them)."""
        return [self.weights, *(snap.weights for snap in self._held.values())]

    def snapshot(self) -> Snapshot:
        """This peer's current model as a snapshot (shares the tensors, which are never mutated)."""
        return Snapshot(
            SnapshotInfo(self.peer_id, self.version, self.num_samples), dict(self.weights)
        )

    def eligible(self, candidates: Mapping[str, SnapshotInfo]) -> list[SnapshotInfo]:
        """The candidates a mix may sample from now, sorted by peer id: not this peer, not
        refused at that version, not staler than ``max_staleness``."""
        out = []
        for peer in sorted(candidates):
            info = candidates[peer]
            if peer == self.peer_id or info.peer != peer:
                continue
            if self._refused.get(peer, -1) >= info.version:
                continue
            if self.max_staleness is not None and self.version - info.version > self.max_staleness:
                continue
            out.append(info)
        return out

    def step(self, candidates: Mapping[str, SnapshotInfo], fetch: Fetch) -> StepReport:
        """Train one local round, mix with up to ``k`` sampled candidates, bump the version.

        ``candidates`` maps neighbour ids to their latest known snapshot; ``fetch`` returns a
        snapshot's weights (called only for sampled ones not already held at that version).
        """
        produced = self.version + 1
        config = self.train_config.with_seed(
            derive_seed(self.seed, "gossip-train", self.peer_id, produced)
        )
        # train_local serializes its process-wide torch settings itself (threaded simulation).
        local = train_local(self.model_spec, self.weights, self.dataset, config)

        eligible = self.eligible(candidates)
        rng = np.random.default_rng(derive_seed(self.seed, "gossip-sample", self.peer_id, produced))
        order = rng.permutation(len(eligible))
        want = len(eligible) if self.k is None else self.k
        chosen: list[Snapshot] = []
        fetched: list[str] = []
        refused: dict[str, str] = {}
        for index in order:
            if len(chosen) >= want:
                break
            info = eligible[int(index)]
            held = self._held.get(info.peer)
            if held is not None and held.info.version >= info.version:
                chosen.append(held)
                continue
            try:
                weights = fetch(info)
                check_same_layout(self.weights, weights, what=f"snapshot of {info.peer}")
                check_finite(weights, what=f"snapshot of {info.peer}")
            except InvalidUpdateError as exc:
                refused[info.peer] = f"invalid_snapshot: {exc}"
            except FedMarketError as exc:
                refused[info.peer] = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
            else:
                fetched.append(info.peer)
                snap = Snapshot(info, {k: weights[k].detach().float() for k in sorted(weights)})
                self._held[info.peer] = snap
                chosen.append(snap)
                continue
            self._refused[info.peer] = info.version
            log.info("peer %s: snapshot %s v%d refused (%s)", self.peer_id, info.peer, info.version,
                     refused[info.peer])  # fmt: skip

        stale = [max(0, self.version - s.info.version) for s in chosen]
        self_weight, weights_j = mixing_weights(
            self.num_samples,
            [(s.info.num_samples, st) for s, st in zip(chosen, stale, strict=True)],
            rule=self.mixing,
            staleness_exponent=self.staleness_exponent,
        )
        if chosen:
            new_flat = self_weight * flatten(self.weights)  # (d,) float64
            for snap, w in zip(chosen, weights_j, strict=True):
                new_flat += w * flatten(snap.weights)
            new_flat += flatten(local.delta)
            self.weights = unflatten(new_flat, self.weights)
        else:
            self.weights = apply_delta(self.weights, local.delta)
        self.version = produced
        return StepReport(
            peer=self.peer_id,
            version=produced,
            train_loss=local.loss,
            self_weight=self_weight,
            mixed=tuple(
                MixedNeighbour(s.info.peer, s.info.version, st, w)
                for s, st, w in zip(chosen, stale, weights_j, strict=True)
            ),
            fetched=tuple(fetched),
            refused=refused,
            candidates=len(eligible),
        )
