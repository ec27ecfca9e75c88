#!/usr/bin/env python
"""Benchmark of the FL core on digits, with Flower's simulation engine side by side.

Prints ONE JSON object on stdout (logs go to stderr):

- ``centralized_acc``: one model trained on all training rows (the ceiling);
- ``fedavg_iid_acc``: FedAvg, 8 trainers, IID;
- ``fedprox_dirichlet_acc``: FedProx, 8 trainers, Dirichlet(0.3) label skew;
- ``attack``: 10 trainers, 3 of them sign-flipping; ``clean`` is FedAvg without attackers;
- ``dp_eps8_acc``: FedAvg IID with per-update clipping + Gaussian noise at ε = 8, δ = 1e-5;
- ``flower``: Flower's FedAvg (``flwr`` simulation) on the same partitions, model, seeds and local
  training code; ``time_ratio`` = our seconds per round / Flower's.

Accuracies are on the held-out test split (270 rows), the same for every run. Every run uses the
same model spec (MLP 64-64-10, seed 0) and 20 rounds. Rounds are timed from one central
evaluation to the next; start-up is reported apart: ``startup_sec`` is the time from the engine's
call to its round-0 evaluation (Ray starts its actors there and inside round 1), ``first_round_sec``
round 1 alone, and ``steady_sec_per_round`` the median of rounds 2+, on which ``time_ratio`` is
computed (``scripts/round_timing.py``).

Usage: ``.venv/bin/python scripts/bench_fl.py [--rounds 20] [--no-flower]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from typing import Any

import torch
from flower_env import run_under_flower_python
from round_timing import summarize_rounds

from marketplace.fl import (
    DataSplits,
    ModelSpec,
    PrivacyConfig,
    TrainConfig,
    evaluate,
    get_strategy,
    load_dataset,
    noise_multiplier_for_epsilon,
    partition,
    simulate,
    split_dataset,
    train_centralized,
)
from marketplace.fl.attacks import SignFlip
from marketplace.fl.seeding import derive_seed

log = logging.getLogger("bench_fl")

SEED = 0
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10, seed=SEED)
# Local training used by every federated run (tuned on the validation split, see docs).
LOCAL = TrainConfig(epochs=5, lr=0.1, batch_size=16)
CENTRAL = TrainConfig(epochs=40, lr=0.1, batch_size=16)
FEDPROX_MU = 0.01
DIRICHLET_ALPHA = 0.3
DP_EPSILON, DP_DELTA, DP_CLIP = 8.0, 1e-5, 1.0


def splits() -> DataSplits:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=SEED)


def test_acc(data: DataSplits, weights: dict[str, torch.Tensor]) -> float:
    return evaluate(SPEC, weights, data.test.x, data.test.y).accuracy


def run_ours(data: DataSplits, rounds: int, **kwargs: Any) -> tuple[float, list[float]]:
    """Final test accuracy and per-round wall times of one simulation."""
    stamps = [time.perf_counter()]
    result = simulate(
        model_spec=SPEC,
        splits=data,
        rounds=rounds,
        seed=SEED,
        on_round=lambda _r: stamps.append(time.perf_counter()),
        **kwargs,
    )
    durations = [b - a for a, b in itertools.pairwise(stamps)]
    return result.final_metrics.test_accuracy, durations


# --- Flower --------------------------------------------------------------------------------
def run_flower(rounds: int, num_clients: int) -> tuple[float, list[float], float, str]:
    """FedAvg in Flower's simulation engine; the ClientApp trains with our ``train_local`` on the
    same partition and seed as ours, so only the orchestration differs."""
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from marketplace.fl import build_model, get_weights, train_local
    from marketplace.fl.weights import apply_delta

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        data = splits()  # deterministic: every worker rebuilds the same split and partition
        part = partition("iid", data.train.y, num_clients=num_clients, seed=SEED)[pid]
        global_w = msg.content["arrays"].to_torch_state_dict()
        global_w = {k: global_w[k].float() for k in sorted(global_w)}
        rnd = int(msg.content["config"]["server-round"])
        tid = f"t{pid:02d}"
        local = train_local(
            SPEC,
            global_w,
            data.train.subset(part),
            LOCAL.with_seed(derive_seed(SEED, "train", tid, rnd)),
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord(apply_delta(global_w, local.delta)),
                "metrics": MetricRecord({"num-examples": local.num_samples, "loss": local.loss}),
            }
        )
        return Message(content=content, reply_to=msg)

    server_app = ServerApp()
    out: dict[str, Any] = {}

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        data = splits()
        stamps: list[float] = []
        accs: list[float] = []

        def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            w = arrays.to_torch_state_dict()
            accs.append(test_acc(data, {k: w[k].float() for k in sorted(w)}))
            stamps.append(time.perf_counter())
            return MetricRecord({"accuracy": accs[-1]})

        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=num_clients,
            min_available_nodes=num_clients,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(get_weights(build_model(SPEC))),
            num_rounds=rounds,
            evaluate_fn=central_eval,
        )
        out["acc"] = accs[-1]
        out["durations"] = [b - a for a, b in itertools.pairwise(stamps)]
        out["first_eval"] = stamps[0]

    backend = os.environ.get("BENCH_FLOWER_BACKEND", "ray")
    started = time.perf_counter()
    # One CPU per ClientApp: on this 2-core machine Ray runs two clients at a time.
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=num_clients,
        backend_name=backend,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    startup = float(out["first_eval"]) - started
    return float(out["acc"]), list(out["durations"]), startup, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower comparison")
    args = parser.parse_args()
    if not args.no_flower:
        run_under_flower_python()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(1)
    rounds, n = args.rounds, args.clients
    data = splits()
    report: dict[str, Any] = {
        "dataset": data.train.card().name.split("/")[0],
        "model": SPEC.to_dict(),
        "rounds": rounds,
        "clients": n,
        "local": {"epochs": LOCAL.epochs, "lr": LOCAL.lr, "batch_size": LOCAL.batch_size},
        "test_rows": len(data.test),
    }

    central_w, _ = train_centralized(SPEC, data.train, CENTRAL)
    report["centralized_acc"] = test_acc(data, central_w)
    report["centralized_epochs"] = CENTRAL.epochs

    iid = partition("iid", data.train.y, num_clients=n, seed=SEED)
    report["fedavg_iid_acc"], ours_durations = run_ours(
        data, rounds, partition=iid, strategy="fedavg", train_config=LOCAL
    )

    skewed = partition("dirichlet", data.train.y, num_clients=n, alpha=DIRICHLET_ALPHA, seed=SEED)
    report["fedprox_dirichlet_acc"], _ = run_ours(
        data,
        rounds,
        partition=skewed,
        strategy=get_strategy("fedprox", mu=FEDPROX_MU),
        train_config=LOCAL,
    )
    report["fedavg_dirichlet_acc"], _ = run_ours(
        data, rounds, partition=skewed, strategy="fedavg", train_config=LOCAL
    )
    report["fedprox"] = {"mu": FEDPROX_MU, "alpha": DIRICHLET_ALPHA}

    ten = partition("iid", data.train.y, num_clients=10, seed=SEED)
    attackers = {t: SignFlip() for t in ("t01", "t04", "t07")}
    attack: dict[str, Any] = {}
    attack["clean"], _ = run_ours(
        data, rounds, partition=ten, strategy="fedavg", train_config=LOCAL
    )
    for name, params in [
        ("fedavg", {}),
        ("median", {}),
        ("trimmed_mean", {"beta": 0.3}),
        ("multikrum", {"f": 3}),
    ]:
        attack[name], _ = run_ours(
            data,
            rounds,
            partition=ten,
            strategy=get_strategy(name, **params),
            train_config=LOCAL,
            behaviours=attackers,
        )
    attack["setup"] = "10 trainers IID, t01/t04/t07 sign-flip; trimmed_mean beta=0.3, multikrum f=3"
    report["attack"] = attack

    sigma = noise_multiplier_for_epsilon(DP_EPSILON, delta=DP_DELTA, rounds=rounds)
    report["dp_eps8_acc"], _ = run_ours(
        data,
        rounds,
        partition=iid,
        strategy="fedavg",
        train_config=LOCAL,
        privacy=PrivacyConfig(clip_norm=DP_CLIP, noise_multiplier=sigma, delta=DP_DELTA),
    )
    # How the cost falls as the budget grows (same clip norm; sigma from the accountant).
    dp_curve = {}
    for eps in (32.0, 128.0, 512.0):
        sig = noise_multiplier_for_epsilon(eps, delta=DP_DELTA, rounds=rounds)
        dp_curve[str(int(eps))], _ = run_ours(
            data,
            rounds,
            partition=iid,
            strategy="fedavg",
            train_config=LOCAL,
            privacy=PrivacyConfig(clip_norm=DP_CLIP, noise_multiplier=sig, delta=DP_DELTA),
        )
    report["dp"] = {
        "acc_by_epsilon": dp_curve,
        "epsilon": DP_EPSILON,
        "delta": DP_DELTA,
        "noise_multiplier": sigma,
        "clip_norm": DP_CLIP,
        "accuracy_cost": report["fedavg_iid_acc"] - report["dp_eps8_acc"],
    }

    ours = summarize_rounds(ours_durations)
    report["ours_timing"] = ours
    report["ours_sec_per_round"] = ours["steady_sec_per_round"]
    if not args.no_flower:
        flower_acc, flower_durations, startup, backend = run_flower(rounds, n)
        flower = summarize_rounds(flower_durations)
        report["flower"] = {
            "acc": flower_acc,
            "acc_diff": report["fedavg_iid_acc"] - flower_acc,
            "startup_sec": startup,
            "timing": flower,
            "sec_per_round": flower["steady_sec_per_round"],
            # Steady rounds only: neither engine's start-up is in the ratio.
            "time_ratio": ours["steady_sec_per_round"] / flower["steady_sec_per_round"],
            "backend": backend,
        }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
