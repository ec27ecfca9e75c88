#!/usr/bin/env python
"""The input-subspace rule as a pixel-backdoor detector, over many seeds.

Prints ONE JSON object on stdout (logs on stderr). The runs are the attack table's FedAvg runs of
``bench_privacy.py`` (digits, 10 trainers, 20 rounds, 2 local epochs, backdoor at 0%, 20% and 30%
of the trainers, IID and Dirichlet(0.5)) with the partition, the initial model and the training
all seeded by ``seed``; each run is scored by :class:`marketplace.valuation.update_flags.
UpdateDetector` with the requester's validation inputs (the input-subspace rule's scores, see its
module docstring). Two readings:

- ``shipped``: the figures at the shipped threshold (``FlagConfig().subspace_threshold``) on every
  run;
- ``tuning`` / ``held_out``: a threshold chosen on the ``--tune`` seeds alone (just past every
  honest score there), then applied to the ``--held-out`` seeds: how well a threshold chosen on
  some seeds carries to others.

Keys: ``shipped_threshold``, ``shipped`` (``recall_min``, ``recall_mean``, ``false_flag_max``,
``false_flag_mean`` over runs), ``tuned_threshold``, ``tuning``, ``held_out``, ``margin``
(``attacker_min``, ``honest_max`` over all runs), ``by_partition``, ``runs`` (every trainer's
score, per run), ``seconds``.

Usage: ``.venv/bin/python scripts/bench_subspace_flags.py [--tune 0,1,2,3,4,5]
[--held-out 6,7,8,9,10,11] [--jobs 2]`` (72 runs, ~3 s each on one core).
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
from marketplace.valuation.flags import FlagConfig, UpdateView
from marketplace.valuation.update_flags import UpdateDetector, input_layer

log = logging.getLogger("bench_subspace_flags")
FRACTIONS = (0.0, 0.2, 0.3)


def _run(job: tuple[str, float, int]) -> dict[str, Any]:
    """One FedAvg run with ``frac`` backdoor attackers, scored by the input-subspace rule."""
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
    layer = input_layer(res.model_spec)
    assert layer is not None
    detector = UpdateDetector(x_val=data.validation.x)
    for rec in res.rounds:
        views = [
            UpdateView(u.sender, np.concatenate([v.numpy().ravel() for v in u.delta.values()]), i)
            for i, u in enumerate(rec.updates)
        ]
        weights = {u.sender: u.delta[layer].double().numpy() for u in rec.updates}
        detector.observe(rec.server_round, views, weights)
    scores = {a: s for a, (s, _) in detector.subspace_scores().items()}
    log.warning("%s %.0f%% seed %d: %.1f s", pname, 100 * frac, seed, time.perf_counter() - t)
    return {
        "partition": pname, "fraction": frac, "seed": seed, "attackers": attackers,
        "scores": {a: scores[a] for a in sorted(scores)},
    }  # fmt: skip


def _figures(runs: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    recalls, false_flags = [], []
    for r in runs:
        flagged = {a for a, s in r["scores"].items() if s >= threshold}
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


def _scores(runs: list[dict[str, Any]], *, attackers: bool) -> list[float]:
    return sorted(
        s for r in runs for a, s in r["scores"].items() if (a in r["attackers"]) == attackers
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", default="0,1,2,3,4,5", help="seeds a threshold is chosen on")
    parser.add_argument("--held-out", default="6,7,8,9,10,11", help="seeds it is measured on")
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
    shipped = FlagConfig().subspace_threshold
    assert shipped is not None
    tuning = [r for r in runs if r["seed"] in tune]
    tuned = max(_scores(tuning, attackers=False)) + 1e-6  # just past every honest tuning score
    report = {
        "shipped_threshold": shipped,
        "shipped": _figures(runs, shipped),
        "tuned_threshold": tuned,
        "tuning": {"seeds": tune, **_figures(tuning, tuned)},
        "held_out": {"seeds": held, **_figures([r for r in runs if r["seed"] in held], tuned)},
        "margin": {
            "attacker_min": _scores(runs, attackers=True)[0],
            "honest_max": _scores(runs, attackers=False)[-1],
        },
        "by_partition": {
            pname: {
                "attacker_lowest": _scores(own, attackers=True)[:5],
                "honest_highest": _scores(own, attackers=False)[-5:],
            }
            for pname in ("iid", "dirichlet")
            for own in [[r for r in runs if r["partition"] == pname]]
        },
        "runs": runs,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
