#!/usr/bin/env python
"""Benchmark of federated unlearning on digits: speed, accuracy and membership inference.

Prints ONE JSON object on stdout (logs go to stderr):

- ``speedup``: wall seconds of retraining from scratch without the withdrawn trainer / wall
  seconds of unlearning it (the chooser's method; FedEraser-style calibrated retraining here).
  Both timed in this run, alternately, best of ``--repeats``, after the data, the original
  training and the attacker's shadow model are ready (start-up is not timed);
- ``acc_gap``: |test accuracy of the unlearned model - of the retrained-from-scratch model|, in
  percentage points;
- ``mia_auc_before`` / ``mia_auc_after``: membership-inference AUC on the withdrawn trainer's
  records against held-out records of the same kind, on the original model and on the unlearned
  one (the stronger of the loss-threshold and shadow-model attacks, by distance from 0.5);
- ``detail``: the figures behind them (per-attack AUCs, accuracies, seconds, the method).

Setting: 8 trainers, 20 rounds, FedAvg, MLP 64-64-10, 5 local epochs (lr 0.1, batch 16), the
withdrawn trainer present from round 1. Seven trainers hold IID shares of the digits training
rows. The withdrawn trainer holds a small private set that the model must memorize to fit:
``CANARIES`` digits images with random labels (atypical records, like Carlini et al.'s canaries).
Ordinary digits records give a membership AUC near 0.5 even before unlearning — FedAvg over 8
trainers barely overfits them — so they could not show that unlearning removed anything. The
non-members are as many other images with random labels drawn the same way, never trained on; the
attacker's shadow model is trained on the validation rows plus its own random-label records.
``--private-set rotated`` gives the withdrawn trainer correctly labelled digits rotated by 90°
instead (a data owner whose images differ in kind, e.g. another scanner).

Usage: ``.venv/bin/python scripts/bench_unlearning.py [--rounds 20] [--interval 3]
[--calibration-epochs 2]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace

import numpy as np

from marketplace.fl import ModelSpec, TrainConfig, evaluate, get_strategy, load_dataset
from marketplace.fl.data import Dataset, split_dataset
from marketplace.fl.models import build_model
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import train_local
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights, apply_delta, get_weights
from marketplace.unlearning import FedEraserConfig, retrain, unlearn
from marketplace.unlearning.history import train_and_record
from marketplace.unlearning.mia import MiaReport, audit

log = logging.getLogger("bench_unlearning")

SEED = 0
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10, seed=SEED)
LOCAL = TrainConfig(epochs=5, lr=0.1, batch_size=16)
TRAINERS = 8
CANARIES = 60
WITHDRAWN = "t07"


def _random_labels(data: Dataset, label: str) -> Dataset:
    rng = np.random.default_rng(derive_seed(SEED, "canary-labels", label))
    return data.with_labels(rng.integers(0, data.num_classes, size=len(data)))


def _rotated(data: Dataset, label: str) -> Dataset:
    x = np.rot90(data.x.reshape(-1, 8, 8), k=1, axes=(1, 2)).reshape(-1, 64)
    return Dataset(f"{data.name}/rotated", x.copy(), data.y, data.num_classes)


def _aucs(report: MiaReport) -> dict[str, float]:
    return {"loss": round(report.loss_auc, 4), "shadow": round(report.shadow_auc, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--interval", type=int, default=3)
    ap.add_argument("--calibration-epochs", type=int, default=2)
    ap.add_argument("--magnitude", choices=("window", "round"), default="window")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each; best is kept")
    ap.add_argument("--private-set", choices=("random-labels", "rotated"), default="random-labels")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    # --- start-up (not timed): data, the original training, the attacker's shadow model --------
    splits = split_dataset(load_dataset("digits"), seed=SEED)
    train = splits.train
    perm = np.random.default_rng(SEED).permutation(len(train))
    canary_pool, rest = perm[: 4 * CANARIES], perm[4 * CANARIES :]
    make = _random_labels if args.private_set == "random-labels" else _rotated
    members = make(train.subset(canary_pool[:CANARIES]), "members")
    nonmembers = make(train.subset(canary_pool[CANARIES : 2 * CANARIES]), "held-out")
    shadow_in = make(train.subset(canary_pool[2 * CANARIES : 3 * CANARIES]), "s-in")
    shadow_out = make(train.subset(canary_pool[3 * CANARIES :]), "s-out")
    shares = np.array_split(rest, TRAINERS - 1)
    data = {f"t{i:02d}": train.subset(idx) for i, idx in enumerate(shares)}
    data[WITHDRAWN] = members
    samples = {t: len(d) for t, d in data.items()}

    def local(trainer: str, round_: int, start: Weights, epochs: int) -> ClientUpdate:
        config = replace(LOCAL, epochs=epochs, seed=derive_seed(SEED, "train", trainer, round_))
        result = train_local(SPEC, start, data[trainer], config)
        return ClientUpdate(trainer, result.delta, result.num_samples)

    strategy = get_strategy("fedavg")
    start = get_weights(build_model(SPEC))
    history, original = train_and_record(
        start=start, rounds=args.rounds, samples=samples, train=local, strategy=strategy,
        epochs=LOCAL.epochs,
    )  # fmt: skip
    shadow_rows = Dataset(
        "shadow",
        np.concatenate([splits.validation.x, shadow_in.x]),
        np.concatenate([splits.validation.y, shadow_in.y]),
        train.num_classes,
    )
    shadow_cfg = replace(LOCAL, epochs=args.rounds * LOCAL.epochs // 4, seed=SEED)
    shadow = apply_delta(start, train_local(SPEC, start, shadow_rows, shadow_cfg).delta)

    # --- timed: retraining from scratch, then unlearning, alternately, best of REPEATS ------
    config = FedEraserConfig(
        interval=args.interval, calibration_epochs=args.calibration_epochs,
        magnitude=args.magnitude,
    )  # fmt: skip
    wall: dict[str, list[float]] = {"retrain": [], "unlearn": []}
    cpu: dict[str, list[float]] = {"retrain": [], "unlearn": []}
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        retrained = retrain(
            history, withdrawn=WITHDRAWN, train=local, strategy=strategy, epochs=LOCAL.epochs,
            start_round=1,
        )  # fmt: skip
        w1, c1 = time.perf_counter(), time.process_time()
        result = unlearn(
            history, withdrawn=WITHDRAWN, train=local, strategy=strategy, epochs=LOCAL.epochs,
            config=config,
        )  # fmt: skip
        w2, c2 = time.perf_counter(), time.process_time()
        wall["retrain"].append(w1 - w0)
        wall["unlearn"].append(w2 - w1)
        cpu["retrain"].append(c1 - c0)
        cpu["unlearn"].append(c2 - c1)
    t_retrain, t_unlearn = min(wall["retrain"]), min(wall["unlearn"])

    def acc(w: Weights) -> float:
        return evaluate(SPEC, w, splits.test.x, splits.test.y).accuracy

    kw = {"shadow_weights": shadow, "shadow_in": shadow_in, "shadow_out": shadow_out}
    before = audit(SPEC, original, members, nonmembers, **kw)
    after = audit(SPEC, result.weights, members, nonmembers, **kw)
    reference = audit(SPEC, retrained, members, nonmembers, **kw)
    acc_unlearned, acc_retrained = acc(result.weights), acc(retrained)
    out = {
        "speedup": round(t_retrain / t_unlearn, 2),
        "acc_gap": round(abs(acc_unlearned - acc_retrained) * 100, 2),
        "mia_auc_before": round(before.worst, 4),
        "mia_auc_after": round(after.worst, 4),
        "detail": {
            "method": result.method,
            "interval": config.interval,
            "calibration_epochs": config.calibration_epochs,
            "local_epochs": LOCAL.epochs,
            "magnitude": config.magnitude,
            "seconds_retrain_from_scratch": round(t_retrain, 3),
            "seconds_unlearn": round(t_unlearn, 3),
            "cpu_speedup": round(min(cpu["retrain"]) / min(cpu["unlearn"]), 2),
            "private_set": args.private_set,
            "test_acc_original": round(acc(original), 4),
            "test_acc_retrained": round(acc_retrained, 4),
            "test_acc_unlearned": round(acc_unlearned, 4),
            "member_acc_original": round(
                evaluate(SPEC, original, members.x, members.y).accuracy, 4
            ),
            "mia_before": _aucs(before),
            "mia_after": _aucs(after),
            "mia_retrained": _aucs(reference),
            "digest": "0x" + result.digest.hex(),
            "trainers": TRAINERS,
            "rounds": args.rounds,
            "withdrawn_records": CANARIES,
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
