#!/usr/bin/env python
"""Trigger reverse-engineering (Neural Cleanse) as a pixel-backdoor detector, over many seeds.

Prints ONE JSON object on stdout (logs on stderr). The runs are the attack table's FedAvg runs of
``bench_privacy.py`` (digits, 10 trainers, 20 rounds, 2 local epochs, backdoor at 0%, 20% and 30%
of the trainers, IID and Dirichlet(0.5)) with the partition, the initial model and the training
all seeded by ``seed``; each run is scored by :class:`marketplace.valuation.trigger_flags.
TriggerDetector` alone (rounds 4, 8, ..., 20). The threshold is chosen on ``--tune`` seeds as the
smallest that flags no honest trainer there, then applied to the ``--held-out`` seeds.

Keys: ``threshold``; ``tuning`` and ``held_out``, each with ``recall_min``, ``recall_mean``,
``false_flag_max``, ``false_flag_mean`` over runs; ``by_partition`` (attackers' and honest
trainers' scores); ``runs`` (every trainer's score, per run); ``seconds``.

Usage: ``.venv/bin/python scripts/bench_trigger_flags.py [--tune 0,1,2] [--held-out 3,4,5]
[--jobs 2]`` (36 runs: ~20 s of simulation and ~60 s of reverse-engineering each, on one core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from bench_privacy import ATTACK_LOCAL, ATTACK_TRAINERS, SPEC, splits

from marketplace.fl import partition, simulate
from marketplace.valuation.flags import FlagConfig
from marketplace.valuation.trigger_flags import TriggerDetector

log = logging.getLogger("bench_trigger_flags")
FRACTIONS = (0.0, 0.2, 0.3)


def _run(job: tuple[str, float, int]) -> dict[str, Any]:
    """One FedAvg run with ``frac`` backdoor attackers, scored by the trigger rule."""
    pname, frac, seed = job
    torch.set_num_threads(1)
    data = splits()
    ids = [f"t{i:02d}" for i in range(ATTACK_TRAINERS)]
    f = round(frac * ATTACK_TRAINERS)
    attackers = (
        [ids[i] for i in np.linspace(0, ATTACK_TRAINERS - 1, f).round().astype(int)] if f else []
    )
    extra = {"alpha": 0.5} if pname == "dirichlet" else {}
    parts = partition(pname, data.train.y, num_clients=ATTACK_TRAINERS, seed=seed, **extra)
    t = time.perf_counter()
    res = simulate(
        model_spec=dataclasses.replace(SPEC, seed=seed), splits=data, partition=parts, rounds=20,
        train_config=ATTACK_LOCAL, behaviours={a: "backdoor" for a in attackers}, seed=seed,
    )  # fmt: skip
    detector = TriggerDetector(
        res.model_spec, data.validation.x, config=FlagConfig(trigger_threshold=0.0)
    )
    for rec in res.rounds:
        detector.observe(
            rec.server_round, rec.global_weights, {u.sender: u.delta for u in rec.updates}
        )
    scores = detector.scores()
    log.warning("%s %.0f%% seed %d: %.0f s", pname, 100 * frac, seed, time.perf_counter() - t)
    return {
        "partition": pname, "fraction": frac, "seed": seed, "attackers": attackers,
        "scores": {a: scores[a] for a in sorted(scores)},
    }  # fmt: skip


def _figures(runs: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    recalls, false_flags = [], []
    for r in runs:
        flagged = {a for a, s in r["scores"].items() if s <= -threshold}
        honest = [a for a in r["scores"] if a not in r["attackers"]]
        if r["attackers"]:
            recalls.append(len(flagged & set(r["attackers"])) / len(r["attackers"]))
        false_flags.append(len(flagged & set(honest)) / len(honest))
    return {
        "recall_min": min(recalls),
        "recall_mean": float(np.mean(recalls)),
        "false_flag_max": max(false_flags),
        "false_flag_mean": float(np.mean(false_flags)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", default="0,1,2", help="seeds the threshold is chosen on")
    parser.add_argument("--held-out", default="3,4,5", help="seeds it is measured on")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    started = time.perf_counter()
    tune = [int(s) for s in args.tune.split(",")]
    held = [int(s) for s in args.held_out.split(",")]
    plan = [(p, f, s) for s in tune + held for p in ("iid", "dirichlet") for f in FRACTIONS]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(_run, plan))
    else:
        runs = [_run(job) for job in plan]
    honest_tune = [
        s for r in runs if r["seed"] in tune
        for a, s in r["scores"].items() if a not in r["attackers"]
    ]  # fmt: skip
    threshold = round(-min(honest_tune) + 0.005, 2)  # just past every honest tuning score
    by_partition = {}
    for pname in ("iid", "dirichlet"):
        own = [r for r in runs if r["partition"] == pname]
        by_partition[pname] = {
            "attacker_scores": sorted(s for r in own for a, s in r["scores"].items()
                                      if a in r["attackers"]),
            "honest_scores_lowest": sorted(s for r in own for a, s in r["scores"].items()
                                           if a not in r["attackers"])[:10],
        }  # fmt: skip
    report = {
        "threshold": threshold,
        "tuning": {"seeds": tune, **_figures([r for r in runs if r["seed"] in tune], threshold)},
        "held_out": {"seeds": held, **_figures([r for r in runs if r["seed"] in held], threshold)},
        "by_partition": by_partition,
        "runs": runs,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
