#!/usr/bin/env python
"""Benchmark of sourcing before training: OT valuation, noisy-offer detection, selection, mechanism.

Prints ONE JSON object on stdout (progress on stderr). Data: scikit-learn's digits, split 70/15/15
(the requester holds the 15% validation set); the task basis is the validation set's discriminant
directions (9 of 64 features), 16 quantiles per direction.

* ``spearman_vs_shapley`` (goal >= 0.85): 8 candidates carved from the training rows (three clean
  of different sizes, two label-skewed to 4 classes, one with 30% and one with 50% flipped labels,
  one small). Each candidate's predicted value before training (its Shapley value in the predicted
  accuracy game, FedAvg training) against its exact Shapley value after training the full
  federation with FedAvg (MLP 64-32-10, 5 rounds, 2 local epochs; per-round exact Shapley of the
  validation accuracy, summed: ``marketplace.valuation`` on ``marketplace.fl.simulate``). Median
  Spearman over seeds 0..4.
* ``noisy_recall`` (goal >= 0.9): 8 candidates with IID labels and equal sizes, two with >= 30%
  flipped labels (30% and 50%); the fraction of noisy candidates ranked in the bottom quarter
  (2 of 8) by predicted value, over seeds 0..4. ``noisy_recall_quantity_skew_5`` is the same with
  unequal sizes (Dirichlet(5) quantity skew), where a large 30%-noisy candidate can outrank small
  clean ones; ``noisy_recall_dirichlet_1`` with Dirichlet(1.0) label skew, where strongly skewed
  clean candidates compete for the bottom quarter (and FedAvg's Shapley values agree that they
  are worth less than a 30%-noisy balanced one).
* ``selection_ratio`` (goal >= 0.95): 12 candidates (clean, skewed, noisy, shifted, of various
  sizes), asks proportional to size with noise, budget 40% of the asks. The model is a ridge
  classifier trained on the pooled rows of a set (its sufficient statistics add across owners, so
  all 4,096 subsets can be trained); the ratio is the test accuracy of the mechanism's selection
  over the best subset whose asks fit the budget (exhaustive search), median over seeds 0..4;
  ``random_selection_ratio`` is the same for random selection (random order, add while the asks
  fit; mean of 20 draws per seed).
* ``profitable_misreports`` (goal 0) and ``over_budget`` (goal 0): 1,000 random instances (2 to 12
  bidders, random values, costs and budget); each bidder tries every ask on a grid (0, its cost
  times 0.1 .. 3, its threshold and threshold + 1, the budget); a misreport is profitable when its
  utility (payment minus true cost if it wins) exceeds the truthful one.
* ``seconds_per_candidate`` (goal <= 2): the committee's work per offer (parse and check the
  sketch, profile it against the validation sketch, the Shapley value in the predicted game, the
  mechanism) in the 8-candidate setting, median over seeds; ``startup_seconds`` (calibration of
  the scaling law and the validation sketch, once per task) is timed apart. The owner's own
  sketching time is reported as ``sketch_seconds_per_candidate``.

* ``--scaling`` (alone, seconds): ``selection_seconds`` of the committee's whole
  :func:`~marketplace.sourcing.run_sourcing` (parse, calibrate, value by Monte Carlo Shapley, the
  mechanism with its threshold payments) at 50, 100 and 200 offers of 30..200 training rows (every
  fifth with 40% flipped labels), asks 1..49 tokens, budget 150 tokens; with each size's
  selection digest, so a speed-up that changed a selection would show.

Usage: ``.venv/bin/python scripts/bench_sourcing.py [--quick | --scaling]`` (--quick: 2 seeds,
100 instances).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from marketplace import fl  # noqa: E402
from marketplace.sourcing import (  # noqa: E402
    Offer,
    Predictor,
    SketchSpec,
    allocate,
    build_sketch,
    calibrate,
    discriminant_basis,
    parse_sketch,
    run_sourcing,
    select,
    threshold,
)
from marketplace.sourcing.ot_value import RidgeStats  # noqa: E402
from marketplace.valuation import ExactShapley, RoundGame, value_rounds  # noqa: E402
from marketplace.valuation.round_utility import RoundUtility  # noqa: E402

MODEL = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(32,), num_classes=10, seed=0)
TRAIN = fl.TrainConfig(epochs=2, lr=0.1)
ROUNDS = 5
K = 10
SHAPLEY_KINDS = ("clean", "clean", "clean", "skew", "skew", "noise30", "noise50", "small")
SELECTION_KINDS = (
    "clean",
    "clean",
    "clean",
    "clean",
    "small",
    "small",
    "skew",
    "skew",
    "noise30",
    "noise50",
    "shift",
    "shift",
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def task_spec(splits: fl.DataSplits, seed: int) -> SketchSpec:
    v = splits.validation
    basis = discriminant_basis(v.x, v.y, num_classes=K, num_directions=9, seed=seed)
    return SketchSpec(task_seed=seed, input_dim=64, num_classes=K, num_directions=9, basis=basis)


def carve(
    splits: fl.DataSplits, kinds: tuple[str, ...], seed: int
) -> tuple[fl.DataSplits, list[np.ndarray]]:
    """Candidates' rows (disjoint) and the training set after their corruptions."""
    rng = np.random.default_rng(seed)
    n = len(splits.train)
    weights = np.array([0.3 if k == "small" else rng.uniform(0.6, 1.4) for k in kinds])
    cuts = (np.cumsum(weights / weights.sum())[:-1] * n).astype(int)
    parts = np.split(rng.permutation(n), cuts)
    x, y = splits.train.x.copy(), splits.train.y.copy()
    out = []
    for i, (kind, idx) in enumerate(zip(kinds, parts, strict=True)):
        if kind == "skew":
            idx = idx[np.isin(y[idx], rng.choice(K, 4, replace=False))]
        elif kind.startswith("noise"):
            y = fl.add_label_noise(y, idx, fraction=int(kind[5:]) / 100, num_classes=K, seed=i)
        elif kind == "shift":
            d = rng.standard_normal(64)
            x[idx] += 3.0 * d / np.linalg.norm(d)
        out.append(np.sort(idx))
    train = fl.Dataset(splits.train.name, x, y, K)
    return fl.DataSplits(train, splits.validation, splits.test, splits.mean, splits.scale), out


def committee_values(
    splits: fl.DataSplits, parts: list[np.ndarray], seed: int, training: str
) -> tuple[list[int], dict[str, float]]:
    """Predicted values (ppm) and timings: owners sketch, the committee checks and values."""
    spec = task_spec(splits, seed)
    t0 = time.perf_counter()
    law = calibrate(splits.validation.x, splits.validation.y, spec)
    reference = build_sketch(splits.validation.x, splits.validation.y, spec, min_class_count=1)
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    blobs = [build_sketch(splits.train.x[p], splits.train.y[p], spec).to_json() for p in parts]
    sketching = time.perf_counter() - t1
    t2 = time.perf_counter()
    sketches = [
        parse_sketch(b, spec, declared_samples=len(p)) for b, p in zip(blobs, parts, strict=True)
    ]
    values = Predictor(sketches, reference, law, training=training).values(seed=seed)  # type: ignore[arg-type]
    ppm = [v.value_ppm for v in values]
    select([max(0, v) for v in ppm], [10**18] * len(ppm), 4 * 10**18)
    steady = time.perf_counter() - t2
    return ppm, {
        "startup": startup,
        "per_candidate": steady / len(parts),
        "sketch_per_candidate": sketching / len(parts),
    }


def true_shapley(splits: fl.DataSplits, parts: list[np.ndarray], seed: int) -> list[int]:
    """Exact per-round Shapley of FedAvg's validation accuracy, summed over rounds (ppm)."""
    sim = fl.simulate(
        model_spec=MODEL,
        splits=splits,
        partition=parts,
        rounds=ROUNDS,
        train_config=TRAIN,
        seed=seed,
    )
    games = []
    for record in sim.rounds:
        u = RoundUtility(
            model_spec=MODEL,
            global_weights=record.global_weights,
            updates=record.updates,
            strategy=sim.strategy(),
            x_val=splits.validation.x,
            y_val=splits.validation.y,
        )
        games.append(RoundGame(record.server_round, u.players, u))
    totals = value_rounds(games, ExactShapley(), seed=seed).totals_ppm()
    return [totals[t] for t in sim.trainer_ids]


def shapley_setting(seeds: list[int]) -> dict[str, object]:
    rhos, per_candidate, startup, sketching = [], [], [], []
    for seed in seeds:
        splits, parts = carve(
            fl.split_dataset(fl.load_dataset("digits"), seed=seed), SHAPLEY_KINDS, seed
        )
        predicted, times = committee_values(splits, parts, seed, "fedavg")
        truth = true_shapley(splits, parts, seed)
        rho = float(spearmanr(predicted, truth)[0])
        log(f"seed {seed}: spearman {rho:.3f} predicted {predicted} truth {truth}")
        rhos.append(rho)
        per_candidate.append(times["per_candidate"])
        startup.append(times["startup"])
        sketching.append(times["sketch_per_candidate"])
    return {
        "spearman_vs_shapley": round(float(np.median(rhos)), 4),
        "spearman_per_seed": [round(r, 4) for r in rhos],
        "seconds_per_candidate": round(float(np.median(per_candidate)), 4),
        "startup_seconds": round(float(np.median(startup)), 3),
        "sketch_seconds_per_candidate": round(float(np.median(sketching)), 4),
    }


def noisy_recall(seeds: list[int], partitioner: str, alpha: float) -> float:
    """Fraction of the noisy candidates (30% and 50% flipped labels) in the bottom quarter."""
    hits = total = 0
    for seed in seeds:
        splits = fl.split_dataset(fl.load_dataset("digits"), seed=seed)
        parts = fl.partition(partitioner, splits.train.y, num_clients=8, alpha=alpha, seed=seed)
        y = splits.train.y
        noisy = {2: 0.3, 5: 0.5}
        for i, frac in noisy.items():
            y = fl.add_label_noise(y, parts[i], fraction=frac, num_classes=K, seed=seed + i)
        splits = fl.DataSplits(
            splits.train.with_labels(y), splits.validation, splits.test, splits.mean, splits.scale
        )
        predicted, _ = committee_values(splits, parts, seed, "fedavg")
        bottom = set(np.argsort(predicted, kind="stable")[: len(parts) // 4].tolist())
        hits += len(bottom & set(noisy))
        total += len(noisy)
        log(f"seed {seed} {partitioner}: noisy {sorted(noisy)} bottom quarter {sorted(bottom)}")
    return round(hits / total, 4)


def noisy_setting(seeds: list[int]) -> dict[str, object]:
    return {
        "noisy_recall": noisy_recall(seeds, "iid", 1.0),
        "noisy_recall_quantity_skew_5": noisy_recall(seeds, "quantity_skew", 5.0),
        "noisy_recall_dirichlet_1": noisy_recall(seeds, "dirichlet", 1.0),
    }


def selection_setting(seeds: list[int]) -> dict[str, object]:
    ratios, random_ratios, sizes = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        splits, parts = carve(
            fl.split_dataset(fl.load_dataset("digits"), seed=seed), SELECTION_KINDS, seed
        )
        predicted, _ = committee_values(splits, parts, seed, "pooled")
        asks = [int(len(p) * rng.uniform(0.5, 1.5) * 10**15) for p in parts]
        budget = int(0.4 * sum(asks))
        stats = [RidgeStats.of(splits.train.x[p], splits.train.y[p], K) for p in parts]

        def accuracy(
            members: tuple[int, ...],
            stats: list[RidgeStats] = stats,
            test: fl.Dataset = splits.test,
        ) -> float:
            if not members:
                return 0.0
            total = stats[members[0]]
            for m in members[1:]:
                total = total + stats[m]
            return total.accuracy(test.x, test.y)

        best = 0.0
        for r in range(1, len(parts) + 1):
            for subset in combinations(range(len(parts)), r):
                if sum(asks[i] for i in subset) <= budget:
                    best = max(best, accuracy(subset))
        chosen = select([max(0, v) for v in predicted], asks, budget)
        assert chosen.total_paid <= budget
        mech = accuracy(chosen.winners)
        rand = []
        for _ in range(20):
            picked: list[int] = []
            spent = 0
            for i in rng.permutation(len(parts)).tolist():
                if spent + asks[i] <= budget:
                    picked.append(i)
                    spent += asks[i]
            rand.append(accuracy(tuple(sorted(picked))))
        ratios.append(mech / best)
        random_ratios.append(float(np.mean(rand)) / best)
        sizes.append(len(chosen.winners))
        log(
            f"seed {seed}: mechanism {mech:.4f} ({chosen.branch}, winners {chosen.winners}) "
            f"best {best:.4f} random {np.mean(rand):.4f}"
        )
    return {
        "selection_ratio": round(float(np.median(ratios)), 4),
        "random_selection_ratio": round(float(np.median(random_ratios)), 4),
        "selection_ratio_per_seed": [round(r, 4) for r in ratios],
        "winners_per_seed": sizes,
    }


def mechanism_setting(instances: int) -> dict[str, object]:
    """Random instances; every bidder tries every ask of its grid.

    ``select`` pays a winner ``threshold(values, asks, budget, i)``, which overwrites ``asks[i]``
    and so does not depend on the bidder's own ask: under a deviation its payment is the same
    threshold, and only whether it wins (``allocate``) changes. The truthful outcome is a full
    ``select`` (payments of every winner, checked against the budget).
    """
    rng = np.random.default_rng(7)
    profitable = over = deviations = 0
    for _ in range(instances):
        n = int(rng.integers(2, 13))
        values = rng.integers(0, 10**6, n).tolist()
        costs = rng.integers(1, 10**6, n).tolist()
        budget = int(rng.integers(10**5, 4 * 10**6))
        truthful = select(values, costs, budget)
        if truthful.total_paid > budget:
            over += 1
        found = False
        for i in range(n):
            u_true = truthful.payment_of(i) - costs[i] if i in truthful.winners else 0
            t = threshold(values, costs, budget, i)
            assert i not in truthful.winners or t == truthful.payment_of(i)
            grid = {0, budget, t, t + 1, *(int(costs[i] * f) for f in np.arange(0.1, 3.01, 0.1))}
            for ask in sorted(a for a in grid if a >= 0):
                asks = list(costs)
                asks[i] = ask
                deviations += 1
                u = t - costs[i] if i in allocate(values, asks, budget)[0] else 0
                if u > u_true:
                    found = True
        profitable += int(found)
    return {
        "profitable_misreports": profitable,
        "over_budget": over,
        "mechanism_instances": instances,
        "deviations_tried": deviations,
    }


def scaling_setting(sizes: tuple[int, ...] = (50, 100, 200)) -> dict[str, object]:
    """Seconds of one committee selection (:func:`run_sourcing`) by number of offers."""
    splits = fl.split_dataset(fl.load_dataset("digits"), val_fraction=0.15, test_fraction=0.15)
    val, train = splits.validation, splits.train
    basis = discriminant_basis(val.x, val.y, num_classes=K, num_directions=9, seed=3)
    spec = SketchSpec(task_seed=3, input_dim=64, num_classes=K, num_directions=9, basis=basis)
    rng = np.random.default_rng(0)
    seconds, digests = {}, {}
    for n in sizes:
        offers = []
        for i in range(n):
            rows = rng.choice(len(train.x), size=int(rng.integers(30, 200)), replace=False)
            y = train.y[rows].copy()
            if i % 5 == 0:
                flip = rng.random(len(y)) < 0.4
                y[flip] = rng.integers(0, K, int(flip.sum()))
            sketch = build_sketch(train.x[rows], y, spec)
            ask = int(rng.integers(1, 50)) * 10**18
            offers.append(Offer(f"0x{i:040x}", ask, sketch.num_samples, sketch.to_json()))
        t0 = time.perf_counter()
        result = run_sourcing(spec=spec, x_val=val.x, y_val=val.y, budget=150 * 10**18,
                              offers=offers)  # fmt: skip
        seconds[str(n)] = round(time.perf_counter() - t0, 2)
        digests[str(n)] = result.digest()
        log(f"{n} offers: {seconds[str(n)]} s, {len(result.winners)} winners")
    return {"selection_seconds": seconds, "selection_digests": digests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 100 instances")
    parser.add_argument("--scaling", action="store_true", help="selection time by offer count")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.scaling:
        print(json.dumps(scaling_setting()))
        return
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    out.update(shapley_setting(seeds))
    out.update(noisy_setting(seeds))
    out.update(selection_setting(seeds))
    out.update(mechanism_setting(100 if args.quick else 1000))
    out["goals"] = {
        "spearman_vs_shapley": out["spearman_vs_shapley"] >= 0.85,  # type: ignore[operator]
        "noisy_recall": out["noisy_recall"] >= 0.9,  # type: ignore[operator]
        "selection_ratio": out["selection_ratio"] >= 0.95,  # type: ignore[operator]
        "profitable_misreports": out["profitable_misreports"] == 0,
        "over_budget": out["over_budget"] == 0,
        "seconds_per_candidate": out["seconds_per_candidate"] <= 2,  # type: ignore[operator]
    }
    out["seeds"] = seeds
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
