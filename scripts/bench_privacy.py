#!/usr/bin/env python
"""Benchmark of privacy and robustness on digits: DP-SGD, secure aggregation, adaptive attacks.

Prints ONE JSON object on stdout (logs go to stderr). Headline keys:

- ``nonprivate_acc``: FedAvg, 8 trainers IID, 20 rounds, no DP;
- ``dpsgd_eps8_acc`` and ``dpsgd_acc_by_epsilon`` (ε ∈ {1, 2, 4, 8}, δ = 1e-5, per-sample clip 1,
  Poisson sampling, the library's ``DPSGD_RECIPE`` and DP-SGD model options (``dpsgd_model``:
  tanh units, inputs clamped to ±2), each trainer's accountant calibrated for the 20 rounds);
  ``nonprivate_dp_model_acc``: that model without DP; ``dpsgd_eps8_gap`` is taken to the better
  of the two non-private figures; ``trainer_dp_eps8_acc``: the older trainer-level mode (whole
  update noised) at ε = 8.
  These are test-split means over ``--seeds`` (default 0,1,2,3; each seed fixes the partition, the
  initial weights and every derived seed), with ``*_by_seed`` and the validation means beside;
- ``secagg_bytes_ratio``: a trainer's secure-aggregation bytes (sealed share bundles, masked input
  with its digests, unmasking message) over its plaintext update (float32), 10 trainers, the
  benchmark's model; ``secagg_total_bytes_ratio`` adds the plaintext sealed to the committee;
- ``secagg_extra_cpu_s``: the most CPU one trainer spends on it in a round (its own steps plus
  computing the unmasked sum), 10 trainers;
- ``secagg_exact_with_3_of_10_dropped``: the unmasked sum equals, bit for bit, the sum of the
  survivors' encoded inputs after 2 trainers vanish before masking and 1 before unmasking;
- ``attack_worst_gap_20pct``: max over attacks and partitions of clean accuracy minus the best
  defense's, 20% attackers (FedAvg, the undefended baseline, is not a defense);
- ``flag_recall_min`` / ``false_flag_max``: the oracle's flags (its scoring on the FedAvg run of
  each attack: the value rules and the update rules of ``marketplace.valuation.update_flags``,
  the input-subspace rule among them) over every attack, fraction and partition, with the shipped
  flag rules;
  ``flag_recall_min_backdoor_rule`` / ``false_flag_max_backdoor_rule``: the same with the
  experimental pixel-backdoor rule (``BACKDOOR_RULE``) on;
- ``attack_table``: accuracy per partition, fraction, attack and strategy, with the backdoor's
  success rate and the detector's figures.

Usage: ``.venv/bin/python scripts/bench_privacy.py [--quick] [--parts dp,secagg,attacks]``
(``--quick``: 1 round, IID and 20% only, one ε, two attacks — for the smoke test; the figures
mean nothing then). ``--parts`` runs a subset (one JSON object with that subset's keys);
``--merge a.json b.json`` prints the union of such partial objects, so the parts can run in
separate processes.
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
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.crypto.secagg import SecAggContext, SecAggParams, default_threshold, encode_fixed
from marketplace.crypto.secagg_round import public_key, run_round
from marketplace.fl import (
    DataSplits,
    ModelSpec,
    PrivacyConfig,
    TrainConfig,
    get_strategy,
    load_dataset,
    noise_multiplier_for_epsilon,
    partition,
    simulate,
    split_dataset,
)
from marketplace.fl.attacks import backdoor_success_rate
from marketplace.fl.dpsgd import DPSGD_RECIPE, dpsgd_model
from marketplace.fl.privacy import DPTerms
from marketplace.fl.serialization import dump_weights
from marketplace.fl.train import predict_logits
from marketplace.fl.weights import flatten
from marketplace.oracle.detection import evaluate_flags
from marketplace.valuation.config import ValuationConfig
from marketplace.valuation.flags import BACKDOOR_RULE

log = logging.getLogger("bench_privacy")

SEED = 0
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10, seed=SEED)
LOCAL = TrainConfig(epochs=5, lr=0.1, batch_size=16)  # bench_fl's recipe
DPSGD_LOCAL = DPSGD_RECIPE  # the library's DP-SGD recipe: q = 16/157 ~ 0.1, 50 steps a round
DELTA, DP_CLIP = 1e-5, 1.0
EPSILONS = (1.0, 2.0, 4.0, 8.0)
DP_SEEDS = (0, 1, 2, 3)  # the DP figures are means over these (one seed swings ~2-3 points)
# The attack table's 144 runs train 2 local epochs (not 5) to fit the shared 2-core machine.
ATTACK_LOCAL = TrainConfig(epochs=2, lr=0.1, batch_size=16)
ATTACKS = ("alie", "ipm", "min_max", "min_sum", "label_flip", "backdoor")
ATTACK_TRAINERS = 10
SECAGG_CLIP = 4.0  # above every round-1 update norm here (max ~2.5): clipping is a no-op


def splits() -> DataSplits:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=SEED)


def defenses(f: int) -> dict[str, Any]:
    """Name -> strategy, for ``f`` attackers among ``ATTACK_TRAINERS``."""
    beta = min(0.4, (f + 0.5) / ATTACK_TRAINERS)  # trim at least the attackers' share
    return {
        "fedavg": get_strategy("fedavg"),
        "median": get_strategy("median"),
        "trimmed_mean": get_strategy("trimmed_mean", beta=beta),
        "multikrum": get_strategy("multikrum", f=f),
        "centered_clipping": get_strategy("centered_clipping"),
        "bucketing": get_strategy("bucketing", s=2, inner="centered_clipping"),
    }


# --- DP ---------------------------------------------------------------------------------------
def _dp_run(job: tuple[str, float, int, int]) -> dict[str, float]:
    """One FedAvg run, 8 trainers IID: ``kind`` is ``nonprivate``, ``nonprivate_dp_model`` (the
    DP-SGD model trained without DP), ``dpsgd`` (record-level, the library's recipe and model) or
    ``trainer`` (trainer-level, the whole update noised) at ``eps``; ``seed``
    fixes the partition, the initial weights and every derived seed (the split stays SEED's).
    Top-level so that ``--jobs`` can run it in worker processes."""
    kind, eps, seed, rounds = job
    torch.set_num_threads(1)
    data = splits()
    spec = dataclasses.replace(SPEC, seed=seed)
    if kind in ("dpsgd", "nonprivate_dp_model"):
        spec = dpsgd_model(spec)  # the DP-SGD task's default model: tanh, inputs clamped
    iid = partition("iid", data.train.y, num_clients=8, seed=seed)
    t = time.perf_counter()
    if kind == "dpsgd":
        res = simulate(
            model_spec=spec, splits=data, partition=iid, rounds=rounds, train_config=DPSGD_LOCAL,
            dpsgd=DPTerms(epsilon=eps, delta=DELTA, clip_norm=DP_CLIP), seed=seed,
            keep_history=False,
        )  # fmt: skip
    elif kind == "trainer":
        sigma = noise_multiplier_for_epsilon(eps, delta=DELTA, rounds=rounds)
        res = simulate(
            model_spec=spec, splits=data, partition=iid, rounds=rounds, train_config=LOCAL,
            privacy=PrivacyConfig(clip_norm=DP_CLIP, noise_multiplier=sigma, delta=DELTA),
            seed=seed, keep_history=False,
        )  # fmt: skip
    else:
        res = simulate(
            model_spec=spec, splits=data, partition=iid, rounds=rounds, train_config=LOCAL,
            seed=seed, keep_history=False,
        )  # fmt: skip
    m = res.final_metrics
    out = {"test": m.test_accuracy, "val": m.val_accuracy, "seconds": time.perf_counter() - t}
    if kind == "dpsgd":
        out["epsilon_spent_max"] = max(res.epsilons.values())
    log.warning("%s ε=%g seed %d: val %.4f test %.4f (%.0f s)", kind, eps, seed, out["val"],
                out["test"], out["seconds"])  # fmt: skip
    return out


def bench_dp(
    rounds: int, epsilons: tuple[float, ...], seeds: tuple[int, ...], jobs: int = 1
) -> dict[str, Any]:
    """Non-private, DP-SGD at each ε and trainer-level DP at ε = 8, each over ``seeds``: the
    headline figures are the means over the seeds (test split), beside each seed's and the
    validation accuracy the recipe was chosen on."""
    plan = [("nonprivate", 0.0, s, rounds) for s in seeds]
    plan += [("nonprivate_dp_model", 0.0, s, rounds) for s in seeds]
    plan += [("dpsgd", eps, s, rounds) for eps in epsilons for s in seeds]
    plan += [("trainer", 8.0, s, rounds) for s in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_dp_run, plan))
    else:
        results = [_dp_run(job) for job in plan]
    runs: dict[tuple[str, float], dict[int, dict[str, float]]] = {}
    for (kind, eps, seed, _), res in zip(plan, results, strict=True):
        runs.setdefault((kind, eps), {})[seed] = res

    def mean(kind: str, eps: float, key: str = "test") -> float:
        return float(np.mean([r[key] for r in runs[(kind, eps)].values()]))

    def by_seed(kind: str, eps: float, key: str = "test") -> dict[str, float]:
        return {str(s): r[key] for s, r in sorted(runs[(kind, eps)].items())}

    out: dict[str, Any] = {
        "nonprivate_acc": mean("nonprivate", 0.0),
        "nonprivate_acc_by_seed": by_seed("nonprivate", 0.0),
        "nonprivate_val_acc": mean("nonprivate", 0.0, "val"),
        "nonprivate_seconds": mean("nonprivate", 0.0, "seconds"),
        # The DP-SGD model without DP: the gap is taken to the better of the two baselines.
        "nonprivate_dp_model_acc": mean("nonprivate_dp_model", 0.0),
        "nonprivate_dp_model_acc_by_seed": by_seed("nonprivate_dp_model", 0.0),
    }
    keys = [(f"{eps:g}", eps) for eps in epsilons]
    out["dpsgd_acc_by_epsilon"] = {k: mean("dpsgd", e) for k, e in keys}
    out["dpsgd_acc_by_epsilon_by_seed"] = {k: by_seed("dpsgd", e) for k, e in keys}
    out["dpsgd_val_acc_by_epsilon"] = {k: mean("dpsgd", e, "val") for k, e in keys}
    out["dpsgd_epsilon_spent_max"] = {
        k: max(by_seed("dpsgd", e, "epsilon_spent_max").values()) for k, e in keys
    }
    out["dpsgd_seconds"] = {k: mean("dpsgd", e, "seconds") for k, e in keys}
    out["dpsgd_eps8_acc"] = out["dpsgd_acc_by_epsilon"].get("8", float("nan"))
    best_nonprivate = max(out["nonprivate_acc"], out["nonprivate_dp_model_acc"])
    out["dpsgd_eps8_gap"] = best_nonprivate - out["dpsgd_eps8_acc"]
    out["trainer_dp_eps8_acc"] = mean("trainer", 8.0)
    out["trainer_dp_eps8_acc_by_seed"] = by_seed("trainer", 8.0)
    out["dpsgd_setup"] = {
        "trainers": 8,
        "partition": "iid",
        "seeds": list(seeds),
        "delta": DELTA,
        "per_sample_clip": DP_CLIP,
        "local": {
            "epochs": DPSGD_LOCAL.epochs,
            "lr": DPSGD_LOCAL.lr,
            "batch_size": DPSGD_LOCAL.batch_size,
            "momentum": DPSGD_LOCAL.momentum,
        },
        "accountant": "rdp",
        "model": dpsgd_model(SPEC).to_dict(),
    }
    return out


# --- secure aggregation -----------------------------------------------------------------------
def bench_secagg(data: DataSplits) -> dict[str, Any]:
    """One round of 10 trainers on real round-1 deltas of the benchmark model."""
    n = 10
    parts = partition("iid", data.train.y, num_clients=n, seed=SEED)
    first = simulate(
        model_spec=SPEC, splits=data, partition=parts, rounds=1, train_config=LOCAL, seed=SEED
    ).rounds[0]
    addresses = [f"0x{i + 1:040x}" for i in range(n)]
    deltas = {a: flatten(u.delta) for a, u in zip(addresses, first.updates, strict=True)}
    keys = {a: X25519PrivateKey.generate() for a in addresses}
    committee = {f"0x{0xC0 + i:040x}": X25519PrivateKey.generate() for i in range(3)}
    ctx = SecAggContext(chain_id=31337, task_id=1, round=1)
    params = SecAggParams(clip_norm=SECAGG_CLIP, threshold=default_threshold(n))
    plaintext_bytes = len(dump_weights(first.updates[0].delta))  # what a trainer uploads today

    full = run_round(deltas, keys, ctx=ctx, params=params, committee=committee)
    early, late = set(addresses[1:3]), {addresses[7]}
    dropped = run_round(
        deltas,
        keys,
        ctx=ctx,
        params=params,
        committee=committee,
        drop_before_masking=early,
        drop_before_unmasking=late,
    )
    survivors = [a for a in addresses if a not in early]
    enc_sum = np.sum([encode_fixed(deltas[a], params).astype(np.int64) for a in survivors], axis=0)
    exact = bool(np.array_equal(dropped.total, enc_sum / 2.0**params.frac_bits))
    float_err = float(
        np.abs(dropped.total - np.sum([deltas[a] for a in survivors], axis=0)).max()
    )  # clipping is a no-op when every norm is under the clip

    # Today's upload for comparison: the plaintext sealed once, to every peer and oracle.
    roster = {
        **{a: public_key(k) for a, k in keys.items()},
        **{a: public_key(k) for a, k in committee.items()},
    }
    env = EnvelopeContext(ctx.chain_id, ctx.task_id, ctx.round, addresses[0])
    t = time.process_time()
    today = len(seal(dump_weights(first.updates[0].delta), recipients=roster, context=env))
    today_cpu = time.process_time() - t
    per_trainer = max(full.bytes_sent.values())
    cpu = max(full.cpu_seconds.values()) + full.unmask_cpu_seconds
    cpu_drop = max(dropped.cpu_seconds.values()) + dropped.unmask_cpu_seconds
    return {
        "secagg_bytes_ratio": per_trainer / plaintext_bytes,
        "secagg_total_bytes_ratio": (per_trainer + max(full.committee_bytes.values()))
        / plaintext_bytes,
        "secagg_extra_cpu_s": max(cpu, cpu_drop),
        "secagg_exact_with_3_of_10_dropped": exact,
        "secagg": {
            "trainers": n,
            "threshold": params.threshold,
            "clip_norm": params.clip_norm,
            "frac_bits": params.frac_bits,
            "parameters": int(next(iter(deltas.values())).shape[0]),
            "plaintext_bytes": plaintext_bytes,
            "bytes_sent_max": per_trainer,
            "committee_envelope_bytes": max(full.committee_bytes.values()),
            "today_upload_bytes": today,
            "cpu_s_no_dropout": cpu,
            "cpu_s_with_dropouts": cpu_drop,
            "unmask_cpu_s": max(full.unmask_cpu_seconds, dropped.unmask_cpu_seconds),
            "today_seal_cpu_s": today_cpu,
            "max_abs_error_vs_float_sum": float_err,
            "committee_ok": all(full.committee_ok.values()) and all(dropped.committee_ok.values()),
            "max_update_norm": max(float(np.linalg.norm(v)) for v in deltas.values()),
        },
    }


# --- attacks ----------------------------------------------------------------------------------
def bench_attacks(
    data: DataSplits,
    rounds: int,
    partitions: tuple[str, ...],
    fractions: tuple[float, ...],
    scoring: ValuationConfig,
    attacks: tuple[str, ...] = ATTACKS,
) -> dict[str, Any]:
    ids = [f"t{i:02d}" for i in range(ATTACK_TRAINERS)]
    table: dict[str, Any] = {}
    gaps_20: list[float] = []
    recalls: list[float] = []
    false_flags: list[float] = []
    recalls_rule: list[float] = []
    false_flags_rule: list[float] = []
    for pname in partitions:
        parts = (
            partition("iid", data.train.y, num_clients=ATTACK_TRAINERS, seed=SEED)
            if pname == "iid"
            else partition(
                "dirichlet", data.train.y, num_clients=ATTACK_TRAINERS, alpha=0.5, seed=SEED
            )
        )
        clean = simulate(
            model_spec=SPEC,
            splits=data,
            partition=parts,
            rounds=rounds,
            train_config=ATTACK_LOCAL,
            seed=SEED,
            keep_history=False,
        ).final_metrics.test_accuracy
        table[pname] = {"clean": clean}
        for frac in fractions:
            f = round(frac * ATTACK_TRAINERS)
            # Attackers spread over the id order (not the first f: Dirichlet parts differ).
            attackers = [ids[i] for i in np.linspace(0, ATTACK_TRAINERS - 1, f).round().astype(int)]
            rows: dict[str, Any] = {}
            for attack in attacks:
                row: dict[str, Any] = {"acc": {}}
                for dname, strategy in defenses(f).items():
                    t = time.perf_counter()
                    res = simulate(
                        model_spec=SPEC,
                        splits=data,
                        partition=parts,
                        rounds=rounds,
                        strategy=strategy,
                        train_config=ATTACK_LOCAL,
                        behaviours={a: attack for a in attackers},
                        seed=SEED,
                        keep_history=dname == "fedavg",
                    )
                    row["acc"][dname] = res.final_metrics.test_accuracy
                    if attack == "backdoor":
                        row.setdefault("backdoor_success", {})[dname] = backdoor_success_rate(
                            lambda x, w=res.final_weights: (
                                predict_logits(SPEC, w, x).argmax(1).numpy()
                            ),
                            data.test.x,
                            data.test.y,
                        )
                    if dname == "fedavg":
                        found = evaluate_flags(
                            res, data.validation.x, data.validation.y, config=scoring
                        )
                        row["flag_recall"] = found.recall
                        row["false_flag_rate"] = found.false_flag_rate
                        row["flagged"] = dict(found.flagged)
                        recalls.append(found.recall)
                        false_flags.append(found.false_flag_rate)
                        # The experimental pixel-backdoor rule, off in the shipped defaults.
                        trial = evaluate_flags(
                            res, data.validation.x, data.validation.y, config=scoring,
                            flag_config=BACKDOOR_RULE,
                        )  # fmt: skip
                        row["backdoor_rule"] = {
                            "flag_recall": trial.recall,
                            "false_flag_rate": trial.false_flag_rate,
                        }
                        recalls_rule.append(trial.recall)
                        false_flags_rule.append(trial.false_flag_rate)
                    log.warning(
                        "%s %.0f%% %s %s: %.4f (%.1f s)",
                        pname, 100 * frac, attack, dname, row["acc"][dname],
                        time.perf_counter() - t,
                    )  # fmt: skip
                best = max((v, k) for k, v in row["acc"].items() if k != "fedavg")
                row["best_defense"] = best[1]
                row["gap"] = clean - best[0]
                if abs(frac - 0.2) < 1e-9:
                    gaps_20.append(row["gap"])
                rows[attack] = row
            table[pname][f"{round(100 * frac)}pct"] = {"attackers": attackers, "attacks": rows}
    return {
        "attack_worst_gap_20pct": max(gaps_20) if gaps_20 else float("nan"),
        "flag_recall_min": min(recalls) if recalls else float("nan"),
        "false_flag_max": max(false_flags) if false_flags else float("nan"),
        "flag_recall_min_backdoor_rule": min(recalls_rule) if recalls_rule else float("nan"),
        "false_flag_max_backdoor_rule": max(false_flags_rule) if false_flags_rule else float("nan"),
        "attack_table": table,
        "attack_setup": {
            "trainers": ATTACK_TRAINERS,
            "local": {"epochs": ATTACK_LOCAL.epochs, "lr": ATTACK_LOCAL.lr, "batch_size": 16},
            "attacks": list(attacks),
            "dirichlet_alpha": 0.5,
            "defense_params": "trimmed_mean beta=(f+0.5)/n, multikrum f=attackers, "
            "centered_clipping tau=median distance iters=3, bucketing s=2 over centered clipping",
            "adaptive_attacks": "colluding, omniscient (see the round's honest deltas), "
            "jitter 0.05 std; alie z from n and f; ipm epsilon 0.5; min-max/min-sum -std",
            "backdoor": "50% extra triggered rows labelled 0, 2x2 corner trigger, no boost",
            "detector": {
                "method": scoring.method,
                "budget": scoring.gtg_budget_fraction,
                "update_rules": "twin updates (nearest/median distance < 0.25 in >= half the "
                "rounds) and input subspace (first-layer energy share in the validation's "
                "least-varying directions, 2% of its variance, log excess over the round's "
                "median >= 0.7 in 3 consecutive rounds), marketplace/valuation/update_flags.py; "
                "*_backdoor_rule adds the experimental first-layer input concentration (top-4 "
                "mean excess share >= 0.19 over >= 5 rounds), off by default",
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (figures invalid)")
    parser.add_argument("--parts", default="dp,secagg,attacks", help="comma-separated subset")
    parser.add_argument("--partitions", default="iid,dirichlet", help="attack table partitions")
    parser.add_argument("--fractions", default="0.2,0.3", help="attacker shares in the table")
    parser.add_argument("--seeds", default=",".join(map(str, DP_SEEDS)), help="DP part's seeds")
    parser.add_argument("--jobs", type=int, default=1, help="DP part: worker processes")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="union of partial outputs")
    args = parser.parse_args()
    if args.merge:
        merged: dict[str, Any] = {}
        for path in args.merge:
            with open(path) as fh:
                part = json.load(fh)
            merged["seconds"] = merged.get("seconds", 0.0) + part.pop("seconds", 0.0)
            for key, worst in (
                ("attack_worst_gap_20pct", max),
                ("flag_recall_min", min),
                ("false_flag_max", max),
                ("flag_recall_min_backdoor_rule", min),
                ("false_flag_max_backdoor_rule", max),
            ):
                values = [v[key] for v in (part, merged) if key in v and v[key] == v[key]]
                if values:  # NaN (v != v) means "no such rows in that part"
                    part[key] = worst(values)
            if "attack_table" in part and "attack_table" in merged:
                table = merged["attack_table"]
                for pname, pt in part["attack_table"].items():
                    table[pname] = {**table.get(pname, {}), **pt}
                part["attack_table"] = table
            merged.update(part)
        print(json.dumps(merged, sort_keys=True))
        return
    parts = set(args.parts.split(","))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = splits()
    rounds = 1 if args.quick else args.rounds
    report: dict[str, Any] = {
        "dataset": "digits",
        "model": SPEC.to_dict(),
        "rounds": rounds,
        "quick": args.quick,
    }
    if "dp" in parts:
        seeds = (0,) if args.quick else tuple(int(x) for x in args.seeds.split(","))
        report.update(bench_dp(rounds, (8.0,) if args.quick else EPSILONS, seeds, args.jobs))
    if "secagg" in parts:
        report.update(bench_secagg(data))
    if "attacks" in parts:
        report.update(
            bench_attacks(
                data,
                rounds,
                ("iid",) if args.quick else tuple(args.partitions.split(",")),
                (0.2,) if args.quick else tuple(float(f) for f in args.fractions.split(",")),
                ValuationConfig(method="leave_one_out")
                if args.quick
                else ValuationConfig(method="gtg", gtg_budget_fraction=0.1),
                ("ipm", "backdoor") if args.quick else ATTACKS,
            )
        )
    report["seconds"] = time.perf_counter() - started
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
