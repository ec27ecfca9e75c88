#!/usr/bin/env python
"""Benchmark of contribution valuation: exact vs Monte Carlo vs GTG-Shapley vs leave-one-out.

Prints ONE JSON object on stdout (progress goes to stderr). Setting (per trainer count n): the
digits dataset (scikit-learn), Dirichlet(0.5) label skew, an MLP 64-32-10 trained by
``marketplace.fl.simulate`` with FedAvg (2 local epochs, lr 0.1), trainer ``t00`` a free rider
(zero update) and ``t01`` a label-noise trainer (80% of its labels replaced by wrong ones).
Utility: validation accuracy of the coalition's FedAvg aggregate (``RoundUtility``).

* ``n8`` (5 rounds) and ``n16`` (2 rounds): exact Shapley as the reference (n=16: 65,536
  coalitions per round, computed once), then each estimator's Spearman correlation and max
  absolute error of the per-trainer totals (utility units), distinct coalition evaluations and
  their fraction of exact's, and seconds. Every method gets fresh utilities (no shared cache).
  ``gtg`` runs with an evaluation budget (25% of 2**n at n=8, 2% at n=16);
  ``gtg_fedml_defaults`` without one; ``monte_carlo`` gets the same budget as ``gtg``.
* ``n50`` / ``n100``: GTG (FedML defaults) seconds per round.
* ``detection_auc``: AUC of ranking the free rider and the noisy trainer below everyone else by
  their GTG totals (the minimum over the n=8 and n=16 settings).
* ``deterministic``: two fresh processes simulate, value (GTG), pay and build the payout tree;
  true when both print the same Merkle root.
* ``oracle_gas``: gas an oracle pays per task, on a fresh Anvil per size, with 8 and with 100
  trainers (newly generated accounts funded by dev key 0, all joined and committed): ``commit``
  and ``reveal`` (the most any of the 3 oracles paid), ``close_scoring`` (the ``advance`` that
  finalizes), and for comparison a trainer's ``claim`` (max and mean over all leaves) with the
  Merkle proof depth.

Usage: ``.venv/bin/python scripts/bench_valuation.py [--quick] [--oracle-gas-only]``
(``--quick`` skips n=16 exact, n=50 and n=100; ``--oracle-gas-only`` runs only ``oracle_gas``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from web3 import Web3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from marketplace import fl  # noqa: E402
from marketplace.chain.backend import connect  # noqa: E402
from marketplace.chain.clients import Marketplace, Phase, Role, TaskParams  # noqa: E402
from marketplace.chain.deploy import deploy_marketplace  # noqa: E402
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_public, start_anvil  # noqa: E402
from marketplace.valuation import (  # noqa: E402
    Estimator,
    ExactShapley,
    GTGShapley,
    LeafDomain,
    LeaveOneOut,
    MonteCarloShapley,
    PayoutTree,
    RoundGame,
    Valuation,
    compute_payouts,
    value_rounds,
)
from marketplace.valuation.merkle import SIMULATION_DOMAIN  # noqa: E402
from marketplace.valuation.round_utility import RoundUtility  # noqa: E402

SPEC = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(32,), num_classes=10, seed=0)
TRAIN = fl.TrainConfig(epochs=2, lr=0.1)
FREE_RIDER, NOISY = "t00", "t01"
SEED = 2024


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def simulate(
    n: int, rounds: int, *, min_size: int = 10
) -> tuple[fl.SimulationResult, fl.DataSplits]:
    """The benchmark's federation: Dirichlet(0.5) digits, one free rider, one noisy trainer."""
    splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
    parts = fl.partition(
        "dirichlet", splits.train.y, num_clients=n, alpha=0.5, seed=SEED, min_size=min_size
    )
    noisy_y = fl.add_label_noise(splits.train.y, parts[1], fraction=0.8, num_classes=10, seed=1)
    splits = fl.DataSplits(
        splits.train.with_labels(noisy_y), splits.validation, splits.test, splits.mean, splits.scale
    )
    sim = fl.simulate(
        model_spec=SPEC,
        splits=splits,
        partition=parts,
        rounds=rounds,
        train_config=TRAIN,
        behaviours={FREE_RIDER: "free_rider"},
        seed=SEED,
    )
    return sim, splits


def games(sim: fl.SimulationResult, splits: fl.DataSplits) -> list[RoundGame]:
    """Fresh utilities (empty caches) for every round."""
    out = []
    for record in sim.rounds:
        utility = RoundUtility(
            model_spec=SPEC,
            global_weights=record.global_weights,
            updates=record.updates,
            strategy=sim.strategy(),
            x_val=splits.validation.x,
            y_val=splits.validation.y,
        )
        out.append(RoundGame(record.server_round, utility.players, utility))
    return out


def totals(v: Valuation, players: list[str]) -> np.ndarray:
    t = v.totals_ppm()
    return np.array([t[p] / 1e6 for p in players])


def detection_auc(scores: np.ndarray, players: list[str]) -> float:
    """P(a bad trainer scores below a good one), ties counting half (Mann-Whitney AUC)."""
    bad = [scores[i] for i, p in enumerate(players) if p in (FREE_RIDER, NOISY)]
    good = [scores[i] for i, p in enumerate(players) if p not in (FREE_RIDER, NOISY)]
    wins = sum(1.0 if b < g else 0.5 if b == g else 0.0 for b in bad for g in good)
    return wins / (len(bad) * len(good))


def compare(n: int, rounds: int, budget_fraction: float) -> dict[str, object]:
    """Exact reference and every estimator on the same federation."""
    log(f"n={n}: simulating {rounds} rounds")
    sim, splits = simulate(n, rounds)
    players = list(sim.trainer_ids)
    budget = int(budget_fraction * 2**n)
    estimators: dict[str, Estimator] = {
        "exact": ExactShapley(max_players=n),
        "gtg": GTGShapley(max_evaluations=budget),
        "gtg_fedml_defaults": GTGShapley(),
        "monte_carlo": MonteCarloShapley(permutations=10_000, max_evaluations=budget),
        "leave_one_out": LeaveOneOut(),
    }
    out: dict[str, object] = {
        "rounds": rounds,
        "val_accuracy": [round(a, 4) for a in sim.accuracy_curve("val")],
        "budget_fraction": budget_fraction,
    }
    reference: np.ndarray | None = None
    exact_evals = rounds * 2**n
    for name, est in estimators.items():
        g = games(sim, splits)
        start = time.perf_counter()
        valuation = value_rounds(g, est, seed=SEED)
        seconds = time.perf_counter() - start
        scores = totals(valuation, players)
        if reference is None:
            reference = scores
        entry = {
            "spearman": round(float(spearmanr(reference, scores)[0]), 4),
            "max_abs_error": round(float(np.max(np.abs(scores - reference))), 6),
            "evaluations": valuation.evaluations,
            "eval_fraction": round(valuation.evaluations / exact_evals, 5),
            "seconds": round(seconds, 3),
            "permutations": [rv.result.permutations for rv in valuation.rounds],
            "detection_auc": round(detection_auc(scores, players), 4),
        }
        log(f"  {name}: {entry}")
        out[name] = entry
    return out


def gtg_time(n: int) -> dict[str, object]:
    """GTG (FedML defaults) on one round of n trainers."""
    log(f"n={n}: simulating 2 rounds")
    sim, splits = simulate(n, 2, min_size=3)
    g = games(sim, splits)[-1:]  # round 2: a trained model, the harder case for truncation
    start = time.perf_counter()
    valuation = value_rounds(g, GTGShapley(), seed=SEED)
    seconds = time.perf_counter() - start
    result = valuation.rounds[0].result
    entry = {
        "seconds_per_round": round(seconds, 2),
        "evaluations": result.evaluations,
        "permutations": result.permutations,
    }
    log(f"  gtg: {entry}")
    return entry


def payout_root() -> str:
    """The determinism child: simulate, value with GTG, pay, build the tree; print the root."""
    sim, splits = simulate(8, 3)
    valuation = value_rounds(games(sim, splits), GTGShapley(), seed=SEED)
    accounts = {p: f"0x{i + 1:040x}" for i, p in enumerate(sim.trainer_ids)}
    table = compute_payouts(10**18, {accounts[p]: v for p, v in valuation.totals_ppm().items()})
    return PayoutTree.build(table.entries, SIMULATION_DOMAIN).root


def deterministic() -> tuple[bool, list[str]]:
    roots = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, __file__, "--payout-root"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        roots.append(done.stdout.strip())
    return roots[0] == roots[1], roots


E18 = 10**18
GAS_SIZES = (8, 100)


def _fire(w3: Any, txs: list[tuple[Any, Any]]) -> list[Any]:
    """Sign and send ``(contract function or tx dict, account)`` pairs without waiting between
    them (nonces counted locally, fixed gas limit), then wait for every receipt and check it."""
    nonces: dict[str, int] = {}
    hashes = []
    chain_id = w3.eth.chain_id
    for fn, account in txs:
        addr = account.address
        if addr not in nonces:
            nonces[addr] = w3.eth.get_transaction_count(addr, "pending")
        params = {
            "from": addr, "nonce": nonces[addr], "gas": 1_000_000, "chainId": chain_id,
            "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
        }  # fmt: skip
        tx = {**fn, **params} if isinstance(fn, dict) else fn.build_transaction(params)
        nonces[addr] += 1
        hashes.append(w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))
    receipts = [
        w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.01) for h in hashes
    ]
    failed = [i for i, r in enumerate(receipts) if r["status"] != 1]
    if failed:
        raise RuntimeError(f"{len(failed)} bench transactions failed (first: #{failed[0]})")
    return receipts


def oracle_gas_at(n: int) -> dict[str, object]:
    """One task with ``n`` trainers on a fresh Anvil; the oracles' gas for commit and reveal."""
    from eth_account import Account

    accounts = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    deployer, requester, oracles = accounts[0], accounts[1], accounts[2:5]
    trainers = [Account.from_key(Web3.keccak(text=f"bench trainer {i}")) for i in range(n)]
    stake, budget = 100 * E18, 1000 * E18
    with start_anvil() as node:
        w3 = connect(node.rpc_url)
        m = Marketplace(w3, deploy_marketplace(w3, deployer))
        reg, market, token = m.registry.functions, m.market.functions, m.token.functions
        m.mint(deployer, requester.address, budget)
        m.register(requester, Role.REQUESTER, dev_x25519_public(1))
        for i, o in enumerate(oracles, start=2):
            m.mint(deployer, o.address, stake)
            m.register(o, Role.ORACLE, dev_x25519_public(i), stake)
        # Fund and register the trainers (gas money and tokens from dev key 0).
        _fire(w3, [
            tx for t in trainers for tx in (
                ({"to": t.address, "value": E18}, deployer),
                (token.mint(t.address, stake), deployer),
            )
        ])  # fmt: skip
        _fire(w3, [
            tx for t in trainers for tx in (
                (token.approve(m.registry.address, stake), t),
                (reg.register(int(Role.TRAINER), Web3.keccak(text=t.address), stake), t),
            )
        ])  # fmt: skip
        now = int(w3.eth.get_block("latest")["timestamp"])
        task_id = m.create_task(
            requester,
            TaskParams(
                budget=budget, model_spec_cid="bafy-spec", initial_model_cid="bafy-init",
                initial_model_digest=Web3.keccak(text="init"), config_cid="bafy-config",
                validation_commitment=Web3.keccak(text="validation"), rounds=1, min_trainers=n,
                max_trainers=n, min_stake=stake // 2, join_deadline=now + 3600,
                oracles=tuple(o.address for o in oracles), quorum_bps=6600, oracle_slash=stake // 4,
            ),
        )  # fmt: skip
        for o in oracles:  # consent: the committee takes its seats
            m.accept_seat(o, task_id)
        _fire(w3, [(market.join(task_id), t) for t in trainers])
        m.advance(deployer, task_id)
        _fire(w3, [
            (market.commitUpdate(task_id, 1, f"bafy-update-{i}", Web3.keccak(text=str(i)), 10), t)
            for i, t in enumerate(trainers)
        ])  # fmt: skip
        m.advance(deployer, task_id)
        assert m.task(task_id).phase_enum == Phase.COMMITTING
        # A payout table over every trainer, as score_task would build it.
        table = compute_payouts(budget, {t.address: 1 + i for i, t in enumerate(trainers)})
        tree = PayoutTree.build(
            table.entries, LeafDomain(m.deployment.chain_id, m.market.address, task_id)
        )
        root = bytes.fromhex(tree.root[2:])
        salts = [bytes([i + 1]) * 32 for i in range(len(oracles))]
        commits = [
            m.commit_score(
                o, task_id, m.score_commitment(task_id, o.address, root, "bafy-report", s)
            )
            for o, s in zip(oracles, salts, strict=True)
        ]
        m.advance(deployer, task_id)
        reveals = [
            m.reveal_score(o, task_id, root, "bafy-report", s)
            for o, s in zip(oracles, salts, strict=True)
        ]
        close = m.advance(deployer, task_id)
        assert m.task(task_id).phase_enum == Phase.FINALIZED
        m.increase_time(3601)  # past the dispute window
        claims = _fire(w3, [
            (market.claim(
                task_id, e.index, e.account, e.amount, e.score_ppm, e.flags,
                [bytes.fromhex(p[2:]) for p in tree.proof(e.index)],
            ), deployer)
            for e in table.entries
        ])  # fmt: skip
        assert m.task(task_id).paid == budget
        claim_gas = [int(r["gasUsed"]) for r in claims]
        return {
            "commit": max(int(r["gasUsed"]) for r in commits),
            "reveal": max(int(r["gasUsed"]) for r in reveals),
            "commit_each": [int(r["gasUsed"]) for r in commits],
            "reveal_each": [int(r["gasUsed"]) for r in reveals],
            "close_scoring": int(close["gasUsed"]),
            "claim_max": max(claim_gas),
            "claim_mean": round(sum(claim_gas) / len(claim_gas)),
            "proof_depth_max": max(len(tree.proof(e.index)) for e in table.entries),
        }


def oracle_gas() -> dict[str, object]:
    out: dict[str, object] = {}
    for n in GAS_SIZES:
        log(f"oracle gas: task with {n} trainers on a fresh Anvil")
        out[str(n)] = oracle_gas_at(n)
        log(f"  {out[str(n)]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip n=16 exact, n=50 and n=100")
    parser.add_argument("--payout-root", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--oracle-gas-only", action="store_true", help="only the oracle_gas key")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.payout_root:
        print(payout_root())
        return
    if args.oracle_gas_only:
        print(json.dumps({"oracle_gas": oracle_gas()}))
        return

    started = time.perf_counter()
    result: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "setting": {
            "dataset": "digits",
            "partition": "dirichlet(0.5)",
            "model": SPEC.to_dict(),
            "train": {"epochs": TRAIN.epochs, "lr": TRAIN.lr},
            "free_rider": FREE_RIDER,
            "label_noise": {NOISY: 0.8},
            "metric": "accuracy",
            "strategy": "fedavg",
            "updates_from": "marketplace.fl.simulate",
        },
    }
    result["n8"] = compare(8, 5, 0.25)
    aucs = [result["n8"]["gtg"]["detection_auc"]]  # type: ignore[index]
    if not args.quick:
        result["n16"] = compare(16, 2, 0.02)
        aucs.append(result["n16"]["gtg"]["detection_auc"])  # type: ignore[index]
        result["n50"] = gtg_time(50)
        result["n100"] = gtg_time(100)
        result["n100_seconds"] = result["n100"]["seconds_per_round"]  # type: ignore[index]
    result["detection_auc"] = min(aucs)
    same, roots = deterministic()
    result["deterministic"] = same
    result["payout_roots"] = roots
    result["oracle_gas"] = oracle_gas()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
