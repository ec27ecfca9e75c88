"""Poisoner flags read from the updates themselves, accumulated over a task's rounds.

The valuation's POISONER rule sees only value (a clearly negative Shapley total). Attacks built to
stay inside the honest spread (ALIE, min-max, min-sum) have totals near zero, and a backdoor that
leaves clean accuracy alone has a positive one. The committee sees every plaintext update, so
tests on the updates catch them (twins and input subspace on by default, input concentration off):

* **Twin updates** (colluders). Per round, each update's distance to its nearest other update is
  divided by the median distance between two updates of the round. Honest trainers train on
  different data and land about the typical distance apart (ratio 0.4-1 measured on digits, IID
  and Dirichlet(0.5)); colluders who publish one crafted vector with a small jitter are a small
  fraction of it apart (0.04-0.06). A trainer whose ratio is under ``twin_ratio`` in at least
  ``twin_share`` of its rounds is flagged, with the trainers it twinned with.
* **Input concentration** (pixel-pattern backdoor). The first layer's weight change is a sum of
  (back-propagated signal) x (input row) products, so its per-input-feature energy shows which
  input features the trainer's data excited. A trigger stamped on a few features makes those
  features' share of the energy far larger than in other trainers' updates. Per round, each
  feature's share is compared with the round's median share for that feature; the excess is
  averaged over the trainer's rounds and the ``concentration_k`` largest averages are summed. A sum
  of at least ``concentration_threshold``, over at least ``concentration_min_rounds`` rounds, is
  flagged. Only models whose first layer is dense on the raw input (``logreg``, ``mlp``) have it.
  This rule is weak: its threshold (0.19) separates attackers from honest trainers on the
  benchmark's seed, but on other seeds non-IID honest trainers reach it and some backdoor
  attackers do not (docs/benchmarks.md, "Attacks and defenses"); ``None`` disables it.

* **Input subspace** (pixel-pattern backdoor, on by default). The same first-layer change has
  its rows in the span of the inputs the trainer trained on, weighted by the signal they carried.
  The requester's validation inputs say which directions of the input space its population varies
  in: the least-varying ones, together at most ``subspace_share`` (2%) of the validation variance,
  are where an honest trainer's data, from the same population, puts little energy, whatever
  classes it holds. A trigger stamped on inputs (a bright patch where digits are dark) moves them
  off that manifold, and the attacker's change carries energy there. Per round, each trainer's
  share of its change's energy in those directions is compared, as a log, with the round's median
  over trainers (its excess); a trainer whose excess is at least ``subspace_threshold`` in each of
  ``subspace_window`` consecutive observed rounds is flagged (a single round's spike, which an
  honest trainer's few unusual rows can cause, is not enough; a trigger is in every round's data).
  Measured on digits (docs/benchmarks.md): honest scores up to 0.61, attackers' from 0.81.
  Limits: directions with no validation variance at all are left out (a pixel constant in the
  validation sample may vary in an honest trainer's rows), so a trigger on such pixels is not
  seen; a trigger made of in-manifold features (a natural-looking stroke) is not either; the
  median needs a majority of honest trainers in each round; a model without a dense first layer
  on the raw input (``cnn``, ``custom``) is not checked.

Updates already flagged as free riders or copiers in a round are left out of that round's tests (a
copy is the copier rule's business; the original must not be called a twin). A round needs at least
:data:`MIN_UPDATES` updates for a median to mean anything.

Determinism: sums are ``math.fsum`` (exactly rounded), medians are exact order statistics, rounds
and accounts are visited in sorted order, and nothing is random; every oracle derives the same
flags and the same evidence from the same updates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from marketplace.errors import ValuationError
from marketplace.fl.models import ModelSpec
from marketplace.valuation.flags import Finding, Flag, FlagConfig, UpdateView, _num

MIN_UPDATES = 3
"""A round with fewer checked updates than this is skipped (no meaningful median)."""

INPUT_LAYERS = {"logreg": "linear.weight", "mlp": "net.0.weight"}
"""Architecture -> its first layer's weight, ``(outputs, input_dim)``, dense on the input."""


def input_layer(spec: ModelSpec) -> str | None:
    """The weight name the input-concentration test reads for ``spec`` (None: not applicable)."""
    return INPUT_LAYERS.get(spec.arch)


def _sq_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b  # element-wise, exactly rounded
    return math.fsum((d * d).tolist())


def twin_ratios(updates: Sequence[UpdateView]) -> dict[str, tuple[float, str]]:
    """Per account: nearest-update distance over the round's median pairwise distance, and the
    nearest account. Empty if fewer than :data:`MIN_UPDATES` updates or the median is 0."""
    ordered = sorted(updates, key=lambda u: u.account.lower())
    n = len(ordered)
    if n < MIN_UPDATES:
        return {}
    dist = [[0.0] * n for _ in range(n)]
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            d = math.sqrt(_sq_distance(ordered[i].delta, ordered[j].delta))
            dist[i][j] = dist[j][i] = d
            pairs.append(d)
    scale = median(pairs)
    if scale == 0.0:
        return {}
    out = {}
    for i, u in enumerate(ordered):
        j = min((k for k in range(n) if k != i), key=lambda k: (dist[i][k], k))
        out[u.account] = (dist[i][j] / scale, ordered[j].account)
    return out


def input_shares(weight: np.ndarray) -> list[float] | None:
    """Each input feature's share of a first-layer weight change's energy (columns of an
    ``(outputs, inputs)`` matrix); None if the change is zero."""
    w = np.asarray(weight, dtype=np.float64)
    energy = [math.fsum((w[:, j] * w[:, j]).tolist()) for j in range(w.shape[1])]
    total = math.fsum(energy)
    if total == 0.0:
        return None
    return [e / total for e in energy]


NULL_VARIANCE = 1e-6
"""A validation direction whose variance is below this fraction of the largest carries none."""

RATIO_FLOOR = 1e-12
"""Energy shares are floored here before the log (a change with none there is not -inf)."""


def minor_subspace(x_val: np.ndarray, share: float) -> np.ndarray | None:
    """An orthonormal basis ``(inputs, k)`` of the directions in which the validation inputs vary
    least, together carrying at most ``share`` of their variance (directions with no variance at
    all left out); None if there is none (too few rows, or ``share`` below the smallest)."""
    x = np.asarray(x_val, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        return None
    variance, vectors = np.linalg.eigh(np.cov(x, rowvar=False))  # ascending
    if variance[-1] <= 0.0:
        return None
    varying = np.flatnonzero(variance > NULL_VARIANCE * variance[-1])
    carried = np.cumsum(variance[varying]) / math.fsum(variance[varying].tolist())
    k = int(np.searchsorted(carried, share, side="right"))
    return vectors[:, varying[:k]] if k else None


def subspace_energy(weight: np.ndarray, basis: np.ndarray) -> tuple[float, float]:
    """A first-layer change's energy in the span of ``basis``, and its total energy."""
    w = np.asarray(weight, dtype=np.float64)
    projected = w @ basis
    return math.fsum((projected * projected).ravel().tolist()), math.fsum((w * w).ravel().tolist())


@dataclass
class _Trainer:
    rounds: int = 0
    twin_rounds: list[int] = field(default_factory=list)
    twin_with: set[str] = field(default_factory=set)
    worst_ratio: float = math.inf
    share_rounds: int = 0
    excess: list[list[float]] = field(default_factory=list)  # per feature, per round


class UpdateDetector:
    """Accumulates the twin and input-concentration tests over a task's rounds.

    Call :meth:`observe` once per round, in increasing round order, with that round's checked
    updates (and their first-layer weight changes, if the model has one); then :meth:`findings`.
    ``x_val`` (the requester's validation inputs) enables the input-subspace rule.
    """

    def __init__(
        self, *, config: FlagConfig | None = None, x_val: np.ndarray | None = None
    ) -> None:
        self.config = config or FlagConfig()
        self._trainers: dict[str, _Trainer] = {}
        self._last_round: float = -math.inf
        self._basis = (
            minor_subspace(x_val, self.config.subspace_share)
            if x_val is not None and self.config.subspace_threshold is not None
            else None
        )
        self._subspace_excess: dict[int, dict[str, float]] = {}  # round -> account -> excess

    def observe(
        self,
        round: int,
        updates: Sequence[UpdateView],
        input_weights: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add one round: ``updates`` (free riders and copiers already removed) and, per account,
        its first-layer weight change ``(outputs, inputs)`` (None: skip the concentration test)."""
        if round <= self._last_round:
            raise ValuationError(
                f"round {round} observed after round {self._last_round}: observe rounds in "
                "increasing order"
            )
        self._last_round = round
        if len(updates) < MIN_UPDATES:
            return
        for u in updates:
            self._trainers.setdefault(u.account, _Trainer()).rounds += 1
        for account, (ratio, nearest) in twin_ratios(updates).items():
            t = self._trainers[account]
            t.worst_ratio = min(t.worst_ratio, ratio)
            if ratio < self.config.twin_ratio:
                t.twin_rounds.append(round)
                t.twin_with.add(nearest)
        if input_weights is not None:
            self._observe_shares(updates, input_weights)
            self._observe_subspace(round, updates, input_weights)

    def _observe_subspace(
        self, round: int, updates: Sequence[UpdateView], input_weights: Mapping[str, np.ndarray]
    ) -> None:
        basis = self._basis
        if basis is None:
            return
        logs = {}
        for u in sorted(updates, key=lambda u: u.account.lower()):
            w = input_weights[u.account]
            if w.ndim != 2 or w.shape[1] != basis.shape[0]:
                return  # not a dense layer on these inputs: the rule does not apply
            minor, total = subspace_energy(w, basis)
            if total > 0.0:
                logs[u.account] = math.log(max(minor / total, RATIO_FLOOR))
        if len(logs) >= MIN_UPDATES:
            middle = median(logs.values())
            self._subspace_excess[round] = {a: v - middle for a, v in logs.items()}

    def subspace_scores(self) -> dict[str, tuple[float, int]]:
        """Per trainer: over every window of ``subspace_window`` consecutive observed rounds it
        took part in, the smallest of its per-round excesses (log energy share minus the round's
        median over trainers); the largest such value, and its window's first round (see the
        module docstring)."""
        width = max(1, self.config.subspace_window)
        excess = self._subspace_excess
        rounds = sorted(excess)
        best: dict[str, tuple[float, int]] = {}
        for i in range(len(rounds) - width + 1):
            window = rounds[i : i + width]
            for account in excess[window[0]]:
                if all(account in excess[r] for r in window):
                    sustained = min(excess[r][account] for r in window)
                    if account not in best or sustained > best[account][0]:
                        best[account] = (sustained, window[0])
        return best

    def _observe_shares(
        self, updates: Sequence[UpdateView], input_weights: Mapping[str, np.ndarray]
    ) -> None:
        shares = {}
        for u in sorted(updates, key=lambda u: u.account.lower()):
            s = input_shares(input_weights[u.account])
            if s is not None:
                shares[u.account] = s
        if len(shares) < MIN_UPDATES:
            return
        features = len(next(iter(shares.values())))
        medians = [median(s[j] for s in shares.values()) for j in range(features)]
        for account, s in shares.items():
            t = self._trainers[account]
            if not t.excess:
                t.excess = [[] for _ in range(features)]
            t.share_rounds += 1
            for j in range(features):
                t.excess[j].append(s[j] - medians[j])

    def findings(self) -> list[Finding]:
        """POISONER findings, one per rule a trainer broke, sorted by account."""
        cfg = self.config
        out = []
        subspace = self.subspace_scores() if cfg.subspace_threshold is not None else {}
        for account in sorted(self._trainers, key=str.lower):
            t = self._trainers[account]
            if t.twin_rounds and len(t.twin_rounds) >= cfg.twin_share * t.rounds:
                out.append(
                    Finding(
                        account,
                        Flag.POISONER,
                        {
                            "flag": "poisoner",
                            "rule": "twin_updates",
                            "twin_rounds": len(t.twin_rounds),
                            "of_rounds": t.rounds,
                            "first_round": t.twin_rounds[0],
                            "min_ratio": _num(t.worst_ratio),
                            "threshold": _num(cfg.twin_ratio),
                            "twins": sorted(t.twin_with, key=str.lower),
                        },
                    )
                )
            threshold = cfg.concentration_threshold
            if threshold is not None and t.share_rounds >= max(1, cfg.concentration_min_rounds):
                means = [math.fsum(e) / t.share_rounds for e in t.excess]
                top = sorted(range(len(means)), key=lambda j: (-means[j], j))
                top = top[: cfg.concentration_k]
                score = math.fsum(means[j] for j in top)
                if score >= threshold:
                    out.append(
                        Finding(
                            account,
                            Flag.POISONER,
                            {
                                "flag": "poisoner",
                                "rule": "input_concentration",
                                "score": _num(score),
                                "threshold": _num(threshold),
                                "features": sorted(top),
                                "rounds": t.share_rounds,
                            },
                        )
                    )
            if account in subspace and cfg.subspace_threshold is not None:
                # Compared at 9 significant digits, as written: oracles whose last bits differ
                # (another BLAS) agree unless a score sits on the threshold itself.
                score, first = subspace[account]
                if float(_num(score)) >= cfg.subspace_threshold:
                    width = max(1, cfg.subspace_window)
                    out.append(
                        Finding(
                            account,
                            Flag.POISONER,
                            {
                                "flag": "poisoner",
                                "rule": "input_subspace",
                                "score": _num(score),
                                "threshold": _num(cfg.subspace_threshold),
                                "first_round": first,
                                "window": width,
                                "directions": int(self._basis.shape[1])
                                if self._basis is not None
                                else 0,
                            },
                        )
                    )
        return out
