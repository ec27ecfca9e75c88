"""Value offers before training: class-conditional optimal transport to the validation sketch,
and a scaling law that predicts the accuracy of any combination of offers without training it.

**Distance.** Between an offer's sketch and the validation sketch, the ground cost of moving class
``c`` of the offer onto class ``c'`` of the validation set is the sliced squared 2-Wasserstein
distance of their class-conditional distributions: the mean over the task's projection directions
of the 1-D ``W2**2`` between their quantile functions (POT's ``wasserstein_1d``). The distance of
the offer is the optimal transport (POT's exact ``emd2``) of its class masses onto the validation
class masses under that ``K x K`` cost, so a label-skewed offer pays to move mass across classes,
a mislabelled one has class-conditionals far from the validation ones, and a shifted one is far
everywhere (label-aware OT as in LAVA / OTDD, on sketches instead of rows).

**Combinations.** Under FedAvg (the default) each member trains on its own distribution and the
updates are averaged by sample count, so a coalition's distance is the sample-weighted mean of its
members' distances. For pooled training, a coalition's class masses are the count-weighted mix of
its members'; its cost to validation class ``c'`` is the count-weighted mean of its members' costs
(an upper bound of the mix's ``W2**2``, by convexity). No coalition is ever re-sketched.

**Accuracy.** ``acc(S) = a - b * N_S**(-alpha) - c * D(S)``: a power law in the coalition's rows
``N_S`` penalised by its distance ``D(S)``, fitted by :func:`calibrate` on the committee's own
validation set (deterministic: fixed splits, closed-form ridge models, a grid over ``alpha``).
An offer's **predicted value** is its exact Shapley value in the game ``acc(S)`` (integer ppm of
accuracy points), computed with :class:`marketplace.valuation.ExactShapley`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import ot

from marketplace.errors import ConfigError, SourcingError
from marketplace.fl.seeding import derive_seed
from marketplace.sourcing.sketch import Sketch, SketchSpec, build_sketch
from marketplace.valuation import ExactShapley, FunctionUtility, MonteCarloShapley

ALPHA_GRID = tuple(round(0.05 * i, 2) for i in range(6, 21))  # 0.30 .. 1.00
"""Exponents tried by :func:`calibrate`."""
GAMMA_GRID = (1.0, 1.5, 2.0, 3.0)
"""Powers of the distance tried by :func:`calibrate`."""
CALIBRATION_DRAWS = 2
CALIBRATION_FRACTIONS = (0.6, 0.7, 0.8, 0.9, 1.0)
"""Sizes of the calibration sets, as fractions of half the validation set."""
"""Random draws of each calibration set (size, corruption)."""
CALIBRATION_KINDS = ("clean", "noise30", "noise60", "skew")
"""Calibration sets: clean, 30% or 60% wrong labels, half the classes removed."""


def class_costs(
    offer: Sketch, reference: Sketch, *, reference_costs: np.ndarray | None = None
) -> np.ndarray:
    """``(K, K)`` ground costs: sliced ``W2**2`` from offer class ``c`` to reference class ``c'``.

    An offer class without published quantiles (too few rows) is assumed to look like the
    reference's class plus the offer's typical deviation: its row is ``reference_costs[c]`` (the
    reference's own class-to-class costs, :func:`reference_costs`) plus the mean of the offer's
    published diagonal costs. A reference class without quantiles is never a destination.
    """
    k = len(offer.counts)
    offer_q = [offer.quantile_values(c) for c in range(k)]
    ref_q = [reference.quantile_values(c) for c in range(k)]
    published = {c: q for c, q in enumerate(offer_q) if q is not None}
    targets = {c: q for c, q in enumerate(ref_q) if q is not None}
    src, dst = list(published), list(targets)
    costs = np.zeros((k, k))
    if src and dst:
        u = np.stack(list(published.values()))  # (ks, m, Q)
        v = np.stack(list(targets.values()))  # (kd, m, Q)
        # Batch every (source, destination, direction) pair: POT takes (atoms, batch) arrays.
        batch = (len(src), len(dst), u.shape[1])
        uu = np.broadcast_to(u[:, None], (*batch, u.shape[2])).reshape(-1, u.shape[2]).T
        vv = np.broadcast_to(v[None, :], (*batch, v.shape[2])).reshape(-1, v.shape[2]).T
        w = np.asarray(ot.wasserstein_1d(uu, vv, p=2, require_sort=False)).reshape(batch)
        costs[np.ix_(src, dst)] = w.mean(axis=-1)
    unpublished = [c for c in range(k) if offer_q[c] is None]
    if unpublished:
        if reference_costs is None:
            raise SourcingError("an offer class is unpublished: pass the reference's own costs")
        diag = [costs[c, c] for c in src if c in dst]
        deviation = float(np.mean(diag)) if diag else float(reference_costs.max())
        costs[unpublished] = reference_costs[unpublished] + deviation
    return costs


def reference_costs(reference: Sketch) -> np.ndarray:
    """The reference's own class-to-class costs (zero diagonal)."""
    return class_costs(reference, reference)


@dataclass(frozen=True, eq=False)
class OfferProfile:
    """What the predictor keeps of one offer: class counts and costs to the validation classes."""

    counts: np.ndarray  # (K,) float64
    costs: np.ndarray  # (K, K)

    @classmethod
    def of(
        cls, offer: Sketch, reference: Sketch, *, own_costs: np.ndarray | None = None
    ) -> OfferProfile:
        """Profile ``offer`` against the validation ``reference`` (``own_costs``: its
        :func:`reference_costs`, computed once per task)."""
        own = reference_costs(reference) if own_costs is None else own_costs
        return cls(
            np.asarray(offer.counts, dtype=np.float64),
            class_costs(offer, reference, reference_costs=own),
        )


def coalition_distance(profiles: Sequence[OfferProfile], reference: Sketch) -> float:
    """Class-conditional OT distance of the union of ``profiles`` to the validation sketch."""
    if not profiles:
        raise SourcingError("the empty coalition has no distance")
    counts = np.sum([p.counts for p in profiles], axis=0)
    total = counts.sum()
    if total <= 0:
        raise SourcingError("a coalition with no rows has no distance")
    weighted = np.sum([p.counts[:, None] * p.costs for p in profiles], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = np.where(counts[:, None] > 0, weighted / counts[:, None], 0.0)
    q = np.asarray(reference.counts, dtype=np.float64)
    return float(ot.emd2(counts / total, q / q.sum(), cost))


@dataclass(frozen=True)
class ScalingLaw:
    """``acc(N, D) = a - b * N**(-alpha) - c * D**gamma``, clipped to ``[0, 1]``."""

    a: float
    b: float
    c: float
    alpha: float
    gamma: float = 1.0

    def predict(self, n: float, distance: float) -> float:
        """Predicted accuracy of ``n`` rows at distance ``distance`` from the validation set."""
        if n <= 0:
            return 0.0
        penalty = self.c * distance**self.gamma
        return float(min(1.0, max(0.0, self.a - self.b * n ** (-self.alpha) - penalty)))


def ridge_accuracy(
    x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, num_classes: int
) -> float:
    """Accuracy on ``(x_eval, y_eval)`` of a closed-form ridge classifier fitted on ``(x, y)``.

    One-hot least squares with an intercept and ``lambda = 1``: deterministic, no iterations, and
    the same model whether the rows are pooled or their sufficient statistics summed.
    """
    stats = RidgeStats.of(x, y, num_classes)
    return stats.accuracy(x_eval, y_eval)


@dataclass(frozen=True, eq=False)
class RidgeStats:
    """Sufficient statistics ``(X'X, X'Y)`` of a ridge classifier; they add across data owners."""

    xtx: np.ndarray
    xty: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, num_classes: int) -> RidgeStats:
        """Statistics of rows ``x`` with labels ``y``."""
        xb = np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])
        onehot = np.eye(num_classes)[np.asarray(y, dtype=np.int64)]
        return cls(xb.T @ xb, xb.T @ onehot)

    def __add__(self, other: RidgeStats) -> RidgeStats:
        return RidgeStats(self.xtx + other.xtx, self.xty + other.xty)

    def accuracy(self, x_eval: np.ndarray, y_eval: np.ndarray, lam: float = 1.0) -> float:
        """Accuracy of the fitted classifier on ``(x_eval, y_eval)``."""
        w = np.linalg.solve(self.xtx + lam * np.eye(self.xtx.shape[0]), self.xty)
        xb = np.hstack([np.asarray(x_eval, dtype=np.float64), np.ones((len(x_eval), 1))])
        return float(np.mean(np.argmax(xb @ w, axis=1) == y_eval))


def calibrate(x_val: np.ndarray, y_val: np.ndarray, spec: SketchSpec) -> ScalingLaw:
    """Fit the scaling law on the committee's validation set alone (deterministic).

    The validation rows are split in half by the task seed; calibration sets are drawn from the
    first half at five sizes (60% to 100% of it, :data:`CALIBRATION_DRAWS` draws each), each
    clean, with 30% or 60% wrong labels, with half the classes
    removed, and with features shifted; each trains a ridge classifier that is scored on the
    second half, and the law is fitted to (rows, OT distance, accuracy) by least squares with
    ``b, c >= 0``: the size term on the clean sets (best ``alpha`` on :data:`ALPHA_GRID`), then
    the distance term on all of them.
    """
    x_val = np.asarray(x_val, dtype=np.float64)
    y_val = np.asarray(y_val, dtype=np.int64)
    k = spec.num_classes
    rng = np.random.Generator(np.random.PCG64(derive_seed(spec.task_seed, "sourcing", "calib")))
    perm = rng.permutation(len(y_val))
    half = len(perm) // 2
    pool, held = perm[:half], perm[half:]
    if int(CALIBRATION_FRACTIONS[0] * half) < spec.min_class_count * k:
        raise ConfigError(
            f"the validation set ({len(y_val)} rows) is too small to calibrate the scaling law: "
            f"give at least {5 * spec.min_class_count * k} rows"
        )
    reference = build_sketch(x_val[held], y_val[held], spec, min_class_count=1)
    own = reference_costs(reference)
    shift = spec.directions[0] * 1.5
    rows: list[tuple[float, float, float]] = []
    clean: list[bool] = []
    for _draw, frac in itertools.product(range(CALIBRATION_DRAWS), CALIBRATION_FRACTIONS):
        idx = rng.permutation(pool)[: int(frac * half)]
        for kind in CALIBRATION_KINDS:
            x, y = x_val[idx], y_val[idx].copy()
            if kind.startswith("noise"):
                flip = rng.random(len(y)) < int(kind[5:]) / 100
                y[flip] = (y[flip] + rng.integers(1, k, size=int(flip.sum()))) % k
            elif kind == "skew":
                keep = y < (k + 1) // 2
                x, y = x[keep], y[keep]
            elif kind == "shift":
                x = x + shift
            sketch = build_sketch(x, y, spec)
            d = coalition_distance([OfferProfile.of(sketch, reference, own_costs=own)], reference)
            acc = ridge_accuracy(x, y, x_val[held], y_val[held], k)
            rows.append((float(len(y)), d, acc))
            clean.append(kind == "clean")
    return _fit_law(np.array(rows), np.array(clean))


def _fit_law(rows: np.ndarray, clean: np.ndarray) -> ScalingLaw:
    """Two stages: the size law ``a0 - b * N**(-alpha)`` on the clean sets alone (so the distance,
    which also shrinks with N, cannot absorb the size effect), then ``a`` and ``c`` on every set
    with ``b`` and ``alpha`` held (``acc - size law = a - a0 - c * D``)."""
    n, d, acc = rows[:, 0], rows[:, 1], rows[:, 2]
    best: tuple[float, float, float] | None = None  # (sse, b, alpha)
    for alpha in ALPHA_GRID:
        design = np.column_stack([np.ones(int(clean.sum())), -(n[clean] ** (-alpha))])
        coef = _nonneg_tail_lstsq(design, acc[clean])
        sse = float(np.sum((design @ coef - acc[clean]) ** 2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, float(coef[1]), alpha)
    assert best is not None
    _, b, alpha = best
    residual = acc + b * n ** (-alpha)
    fits = []
    for gamma in GAMMA_GRID:
        design = np.column_stack([np.ones_like(d), -(d**gamma)])
        coef = _nonneg_tail_lstsq(design, residual)
        fits.append((float(np.sum((design @ coef - residual) ** 2)), gamma, coef))
    _, gamma, coef = min(fits, key=lambda f: (f[0], f[1]))
    return ScalingLaw(round(float(coef[0]), 9), round(b, 9), round(float(coef[1]), 9), alpha, gamma)


def _nonneg_tail_lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with the intercept free and the other coefficients clamped at >= 0."""
    active = list(range(design.shape[1]))
    while True:
        coef = np.zeros(design.shape[1])
        sol, *_ = np.linalg.lstsq(design[:, active], target, rcond=None)
        coef[active] = sol
        negative = [j for j in active[1:] if coef[j] < 0]
        if not negative:
            return coef
        active.remove(negative[0])


@dataclass(frozen=True)
class OfferValue:
    """The committee's pre-training valuation of one offer."""

    index: int
    distance_ppm: int  # OT distance to the validation sketch alone, in 1e-6 units
    standalone_ppm: int  # predicted accuracy of the offer alone, ppm
    value_ppm: int  # Shapley value in the predicted-accuracy game, ppm of accuracy points


class Predictor:
    """Predicts the accuracy of any combination of offers from their sketches.

    Parameters
    ----------
    offers : sequence of Sketch
        The valid offers' sketches, in the canonical order (index ``i`` = player ``i``).
    reference : Sketch
        The committee's sketch of its validation set (``min_class_count=1``).
    law : ScalingLaw
        From :func:`calibrate`.
    training : {"fedavg", "pooled"}
        How the task trains. ``"fedavg"``: each member trains on its own distribution and the
        updates are averaged by sample count, so a coalition's distance is the sample-weighted
        mean of its members' distances (a label-skewed member drifts the average even when the
        union is balanced). ``"pooled"``: one model on the union, whose distance is
        :func:`coalition_distance` of the union.
    """

    def __init__(
        self,
        offers: Sequence[Sketch],
        reference: Sketch,
        law: ScalingLaw,
        *,
        training: Literal["fedavg", "pooled"] = "fedavg",
    ) -> None:
        if training not in ("fedavg", "pooled"):
            raise ConfigError(f"training must be 'fedavg' or 'pooled', got {training!r}")
        self.reference = reference
        self.law = law
        self.training = training
        own = reference_costs(reference)
        self.profiles = [OfferProfile.of(s, reference, own_costs=own) for s in offers]
        self._cache: dict[frozenset[int], float] = {}
        self._single = [coalition_distance([p], reference) for p in self.profiles]

    @property
    def n(self) -> int:
        """Number of offers."""
        return len(self.profiles)

    def distance(self, coalition: frozenset[int]) -> float:
        """OT distance of the coalition to the validation set (see ``training``)."""
        members = sorted(coalition)
        if self.training == "pooled" or len(members) == 1:
            if len(members) == 1:
                return self._single[members[0]]
            return coalition_distance([self.profiles[i] for i in members], self.reference)
        rows = [float(self.profiles[i].counts.sum()) for i in members]
        return sum(r * self._single[i] for r, i in zip(rows, members, strict=True)) / sum(rows)

    def accuracy(self, coalition: frozenset[int]) -> float:
        """Predicted accuracy of a model trained on the coalition (0 for the empty coalition)."""
        if not coalition:
            return 0.0
        cached = self._cache.get(coalition)
        if cached is None:
            rows = float(sum(self.profiles[i].counts.sum() for i in coalition))
            cached = self.law.predict(rows, self.distance(coalition))
            self._cache[coalition] = cached
        return cached

    def values(self, *, seed: int = 0, max_exact: int = 12) -> list[OfferValue]:
        """Each offer's distance, standalone accuracy and Shapley value in the predicted game.

        Exact Shapley up to ``max_exact`` offers; beyond, Monte Carlo seeded by ``seed``.
        """
        if self.n == 0:
            return []
        game = FunctionUtility(self.n, self.accuracy)
        estimator = (
            ExactShapley(max_players=max_exact)
            if self.n <= max_exact
            else MonteCarloShapley(permutations=200)
        )
        shapley = estimator.estimate(game, seed=seed).values_ppm
        out = []
        for i in range(self.n):
            single = frozenset({i})
            out.append(
                OfferValue(
                    index=i,
                    distance_ppm=round(self.distance(single) * 1e6),
                    standalone_ppm=round(self.accuracy(single) * 1e6),
                    value_ppm=int(shapley[i]),
                )
            )
        return out
