#!/usr/bin/env python
"""The input-subspace rule as a pixel-backdoor detector, over many seeds and set-ups.

Prints ONE JSON object on stdout (logs on stderr). Two sets of FedAvg runs on digits, each scored
by :class:`marketplace.valuation.update_flags.UpdateDetector` with the requester's validation
inputs (the input-subspace rule's scores, see its module docstring):

- ``table``: the attack table's runs of ``bench_privacy.py`` (10 trainers, 20 rounds, 2 local
  epochs, MLP 64 hidden units, backdoor at 0%, 20% and 30% of the trainers, IID and
  Dirichlet(0.5)), the partition, initial model and training seeded by ``seed``
  (``--tune`` and ``--held-out`` seeds);
- ``small``: small tasks like the integration tests' (4 or 6 trainers, 6 rounds, 1 or 2 local
  epochs, 16 hidden units, no attacker or one, IID and Dirichlet(0.5); ``--small-seeds``), where
  a trainer's few unusual rows weigh more.

Readings: ``shipped`` — the figures at the shipped threshold (``FlagConfig().
subspace_threshold``) on each set; ``tuning`` / ``held_out`` — a threshold chosen on the table's
``--tune`` seeds alone (just past every honest score there), applied to its ``--held-out`` seeds;
``margin`` — the lowest attacker and highest honest score per set.

Keys: ``shipped_threshold``, ``shipped`` (per set: ``recall_min``, ``recall_mean``,
``false_flag_max``, ``false_flag_mean`` over runs), ``tuned_threshold``, ``tuning``,
``held_out``, ``margin``, ``runs`` (every trainer's score, per run), ``seconds``.

Usage: ``.venv/bin/python scripts/bench_subspace_flags.py [--tune 0,1,2,3,4,5]
[--held-out 6,7,8,9,10,11] [--small-seeds 0,1,2,3] [--jobs 2]`` (72 + 64 runs, 1-3 s each on one
core).
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


@dataclasses.dataclass(frozen=True)
class Job:
    """One run: its set, partition, size, attackers, local epochs, rounds, hidden units, seed."""

    set: str
    partition: str
    trainers: int
    attackers: int
    epochs: int
    rounds: int
    hidden: int
    seed: int


def _plan(tune: list[int], held: list[int], small_seeds: list[int]) -> list[Job]:
    table = [
        Job("table", p, ATTACK_TRAINERS, round(f * ATTACK_TRAINERS), ATTACK_LOCAL.epochs, 20,
            SPEC.hidden[0], s)
        for s in tune + held for p in ("iid", "dirichlet") for f in FRACTIONS
    ]  # fmt: skip
    small = [
        Job("small", p, n, a, e, 6, 16, s)
        for s in small_seeds for p in ("iid", "dirichlet") for n in (4, 6) for e in (1, 2)
        for a in (0, 1)
    ]  # fmt: skip
    return table + small


def _run(job: Job) -> dict[str, Any]:
    """One FedAvg run with ``job.attackers`` backdoor attackers, scored by the input-subspace
    rule."""
    torch.set_num_threads(1)
    data = splits()
    n = job.trainers
    ids = [f"t{i:02d}" for i in range(n)]
    attackers = (
        [ids[i] for i in np.linspace(0, n - 1, job.attackers).round().astype(int)]
        if job.attackers > 1
        else ids[-1:] if job.attackers == 1 else []
    )  # fmt: skip
    extra: dict[str, Any] = {"alpha": 0.5} if job.partition == "dirichlet" else {}
    parts = partition(job.partition, data.train.y, num_clients=n, seed=job.seed, **extra)
    spec = dataclasses.replace(SPEC, seed=job.seed, hidden=(job.hidden,))
    t = time.perf_counter()
    res = simulate(
        model_spec=spec, splits=data, partition=parts, rounds=job.rounds,
        train_config=dataclasses.replace(ATTACK_LOCAL, epochs=job.epochs),
        behaviours={a: "backdoor" for a in attackers}, seed=job.seed,
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
    log.warning("%s: %.1f s", job, time.perf_counter() - t)
    return {**dataclasses.asdict(job), "attacker_ids": attackers,
            "scores": {a: scores[a] for a in sorted(scores)}}  # fmt: skip


def _figures(runs: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    recalls, false_flags = [], []
    for r in runs:
        flagged = {a for a, s in r["scores"].items() if s >= threshold}
        honest = [a for a in r["scores"] if a not in r["attacker_ids"]]
        if r["attacker_ids"]:
            recalls.append(len(flagged & set(r["attacker_ids"])) / len(r["attacker_ids"]))
        false_flags.append(len(flagged & set(honest)) / len(honest))
    return {
        "recall_min": min(recalls),
        "recall_mean": float(np.mean(recalls)),
        "false_flag_max": max(false_flags),
        "false_flag_mean": float(np.mean(false_flags)),
    }


def _scores(runs: list[dict[str, Any]], *, attackers: bool) -> list[float]:
    return sorted(
        s for r in runs for a, s in r["scores"].items() if (a in r["attacker_ids"]) == attackers
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", default="0,1,2,3,4,5", help="table seeds a threshold is tuned on")
    parser.add_argument("--held-out", default="6,7,8,9,10,11", help="table seeds it is tried on")
    parser.add_argument("--small-seeds", default="0,1,2,3", help="seeds of the small set")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    started = time.perf_counter()
    tune = [int(s) for s in args.tune.split(",")]
    held = [int(s) for s in args.held_out.split(",")]
    plan = _plan(tune, held, [int(s) for s in args.small_seeds.split(",")])
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(_run, plan))
    else:
        runs = [_run(job) for job in plan]
    shipped = FlagConfig().subspace_threshold
    assert shipped is not None
    sets = {name: [r for r in runs if r["set"] == name] for name in ("table", "small")}
    tuning = [r for r in sets["table"] if r["seed"] in tune]
    tuned = max(_scores(tuning, attackers=False)) + 1e-6  # just past every honest tuning score
    report = {
        "shipped_threshold": shipped,
        "shipped": {name: _figures(own, shipped) for name, own in sets.items()},
        "tuned_threshold": tuned,
        "tuning": {"seeds": tune, **_figures(tuning, tuned)},
        "held_out": {
            "seeds": held,
            **_figures([r for r in sets["table"] if r["seed"] in held], tuned),
        },
        "margin": {
            name: {
                "attacker_min": _scores(own, attackers=True)[0],
                "honest_max": _scores(own, attackers=False)[-1],
                "attacker_lowest": _scores(own, attackers=True)[:5],
                "honest_highest": _scores(own, attackers=False)[-5:],
            }
            for name, own in sets.items()
        },
        "runs": runs,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
