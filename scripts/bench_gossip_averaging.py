#!/usr/bin/env python
"""Benchmark of asynchronous gossip averaging against synchronous FedAvg, in one process.

Prints ONE JSON object on stdout (logs go to stderr):

- ``setting``: data, model, peers, partition, speeds, local training, rounds;
- ``runs``: for k in {0 (no mixing), 1, 2, all}, per round (version) ``r``: the consensus
  distance of the peers' version-``r`` models (``mean_sq`` and ``relative`` = rms / ||average||),
  their test accuracy (mean and min over peers), the snapshot transfers and bytes of the steps
  that produced version ``r``; plus the run's seconds (after an unreported warm-up run).
  Deterministic schedule (peers at unequal speeds, no barrier), shared initial model (as a
  task's);
- ``threaded_k2``: the same k = 2 run with one thread per peer (OS-scheduled interleaving,
  slow peers sleeping longer between steps): final figures and seconds;
- ``fedavg``: synchronous FedAvg (``marketplace.fl.simulate``) on the same partition, model and
  local training: test accuracy of the global model per round (its consensus distance is 0);
- ``wall_seconds``: the whole benchmark.

Usage: ``.venv/bin/python scripts/bench_gossip_averaging.py [--rounds 20] [--peers 8]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import torch

from marketplace.fl import (
    ModelSpec,
    TrainConfig,
    load_dataset,
    partition,
    simulate,
    split_dataset,
)
from marketplace.fl.gossip_simulate import GossipSimulationResult, simulate_gossip_averaging

log = logging.getLogger("bench_gossip_averaging")

SEED = 0
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10, seed=SEED)
LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)  # one local epoch per round
DIRICHLET_ALPHA = 0.5
SPEEDS_8 = (1.0, 1.0, 1.0, 1.0, 0.8, 0.8, 0.6, 0.5)  # two peers at 60 % and 50 % speed


def _round_rows(result: GossipSimulationResult) -> list[dict[str, Any]]:
    return [
        {
            "round": r.round,
            "consensus_mean_sq": round(r.consensus.mean_sq, 4),
            "consensus_relative": round(r.consensus.relative, 4),
            "mean_acc": round(r.mean_accuracy, 4),
            "min_acc": round(r.min_accuracy, 4),
            "snapshots": r.snapshots_fetched,
            "bytes": r.bytes,
        }
        for r in result.records
    ]


def _summary(result: GossipSimulationResult) -> dict[str, Any]:
    last = result.records[-1]
    return {
        "final_consensus_relative": round(last.consensus.relative, 4),
        "final_mean_acc": round(last.mean_accuracy, 4),
        "final_min_acc": round(last.min_accuracy, 4),
        "snapshots_total": sum(r.snapshots_fetched for r in result.records),
        "bytes_total": sum(r.bytes for r in result.records),
        "mean_staleness": round(
            sum(m.staleness for s in result.steps for m in s.mixed)
            / max(1, sum(len(s.mixed) for s in result.steps)),
            3,
        ),
        "seconds": round(result.seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--peers", type=int, default=8, choices=range(2, 9))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()

    splits = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=SEED)
    parts = partition(
        "dirichlet", splits.train.y, num_clients=args.peers, alpha=DIRICHLET_ALPHA, seed=SEED
    )
    speeds = list(SPEEDS_8[: args.peers])
    common = dict(
        model_spec=SPEC, splits=splits, partition=parts, rounds=args.rounds, train_config=LOCAL,
        seed=SEED, speeds=speeds,
    )  # fmt: skip

    simulate_gossip_averaging(**{**common, "rounds": 1, "k": 0})  # type: ignore[arg-type]  # warm-up
    runs: dict[str, Any] = {}
    for label, k in (("k0", 0), ("k1", 1), ("k2", 2), ("k_all", None)):
        result = simulate_gossip_averaging(k=k, **common)  # type: ignore[arg-type]
        runs[label] = {"k": k, **_summary(result), "rounds": _round_rows(result)}
        log.info("%s: %s", label, {k: v for k, v in runs[label].items() if k != "rounds"})

    threaded = simulate_gossip_averaging(k=2, threaded=True, step_delay=0.01, **common)  # type: ignore[arg-type]
    threaded_summary = {"k": 2, "step_delay": 0.01, **_summary(threaded)}
    log.info("threaded k2: %s", threaded_summary)

    t0 = time.perf_counter()
    fedavg = simulate(
        model_spec=SPEC, splits=splits, partition=parts, rounds=args.rounds, strategy="fedavg",
        train_config=LOCAL, seed=SEED, keep_history=False,
    )  # fmt: skip
    fedavg_seconds = time.perf_counter() - t0
    curve = fedavg.accuracy_curve("test")
    log.info("fedavg: final acc %.4f", curve[-1])

    print(
        json.dumps(
            {
                "setting": {
                    "dataset": "digits (1257 train / 270 val / 270 test, seed 0)",
                    "model": SPEC.to_json(),
                    "peers": args.peers,
                    "partition": f"dirichlet alpha={DIRICHLET_ALPHA}",
                    "rows_per_peer": [len(p) for p in parts],
                    "speeds": speeds,
                    "local": {"epochs": LOCAL.epochs, "lr": LOCAL.lr, "batch": LOCAL.batch_size},
                    "rounds": args.rounds,
                    "mixing": "uniform, no staleness discount",
                    "init": "shared",
                },
                "runs": runs,
                "threaded_k2": threaded_summary,
                "fedavg": {
                    "final_acc": round(curve[-1], 4),
                    "seconds": round(fedavg_seconds, 2),
                    "rounds": [{"round": r, "acc": round(a, 4)} for r, a in enumerate(curve)],
                },
                "wall_seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
