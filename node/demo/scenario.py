"""``fedmarket demo``: the whole marketplace on one machine, end to end.

A requester, 8 trainers on a Dirichlet non-IID split of scikit-learn's digits (one free rider, one
poisoner, one with noisy labels) and a committee of 3 oracles run one task through every phase:
deploy, register and stake, create (escrow), join, train and commit each round with encrypted
updates, aggregate on every peer, score by Shapley values with commit-reveal, finalize, claim, and
slash. With no options everything is in-process (py-evm and the embedded content store); with
``--chain-rpc``/``--ipfs-api`` (or ``--devnet``) the same run uses real Anvil and Kubo.

The peers share one process here only to need no setup: each is a separate :class:`TrainerNode`
or :class:`OracleNode` with its own identity, journal and session, talking only through the chain
and the content store, exactly as the multi-process nodes do.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from web3 import Web3
from web3.types import TxReceipt

from marketplace.chain.backend import IN_PROCESS, connect, fund_accounts
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.devnet import advance_chain_time
from marketplace.fl import (
    ModelSpec,
    TrainConfig,
    add_label_noise,
    evaluate,
    get_behaviour,
    label_skew,
    load_dataset,
    partition,
    split_dataset,
    train_centralized,
)
from marketplace.protocol.identity import Identity
from marketplace.protocol.published_report import final_report
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.storage.base import ContentStore
from marketplace.valuation.config import ValuationConfig
from node.peers.base import Peer
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.trainer import TrainerNode

log = logging.getLogger(__name__)

TOKEN = 10**18
BEHAVIOURS = ("honest",) * 5 + ("free_rider", "poisoner", "noisy")


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs (the defaults take about 20 s on 2 cores, in-process)."""

    trainers: int = 8
    oracles: int = 3
    rounds: int = 8
    alpha: float = 1.0  # Dirichlet label skew (smaller: more skewed)
    noise_fraction: float = 0.9  # share of the noisy trainer's labels that are wrong
    budget: int = 1000 * TOKEN
    stake: int = 100 * TOKEN
    seed: int = 0
    hidden: tuple[int, ...] = (32,)
    epochs: int = 2
    lr: float = 0.1
    # Multi-Krum (f=1) keeps the poisoner's update out of the model; Shapley values still see it.
    aggregator: str = "multikrum"
    aggregator_params: tuple[tuple[str, Any], ...] = (("f", 1),)


@dataclass
class DemoResult:
    accuracy: float
    centralized_accuracy: float
    rounds: list[dict[str, Any]]
    trainers: list[dict[str, Any]]
    oracles: list[dict[str, Any]]
    gas: dict[str, int]
    chain: str
    storage: str
    seconds: float
    task_id: int
    report_root: str
    plots: dict[str, str] = field(default_factory=dict)
    # The live chain client and store, for `demo --dashboard` (not part of the JSON result).
    market: Any = field(default=None, repr=False, compare=False)
    store: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "centralized_accuracy": self.centralized_accuracy,
            "rounds": self.rounds,
            "trainers": self.trainers,
            "oracles": self.oracles,
            "gas": self.gas,
            "chain": self.chain,
            "storage": self.storage,
            "seconds": round(self.seconds, 2),
            "task_id": self.task_id,
            "report_root": self.report_root,
            "plots": self.plots,
        }


class GasMeter:
    """Sums gas per contract function over the demo (a receipt hook of the market)."""

    def __init__(self, market: Marketplace):
        self.totals: dict[str, int] = {}
        market.receipt_hooks.append(self.record)

    def record(self, function: str, receipt: TxReceipt) -> None:
        self.totals[function] = self.totals.get(function, 0) + int(receipt["gasUsed"])


def run_demo(
    *,
    config: DemoConfig = DemoConfig(),
    chain_rpc: str = IN_PROCESS,
    store: ContentStore | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> DemoResult:
    """Run the demo; returns everything the table, plots and ``--json`` show."""
    started = time.monotonic()
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="fedmarket-demo-"))
            )
        if store is None:
            from marketplace.storage.embedded import EmbeddedStore

            store = EmbeddedStore(workdir / "store")
        return _run(config, chain_rpc, store, workdir, progress, started)


def _run(
    cfg: DemoConfig,
    chain_rpc: str,
    store: ContentStore,
    workdir: Path,
    progress: Callable[[str], None],
    started: float,
) -> DemoResult:
    # --- identities and chain ------------------------------------------------------------
    deployer, requester = Identity.dev(0), Identity.dev(1)
    trainers = [Identity.dev(2 + i) for i in range(cfg.trainers)]
    oracles = [Identity.dev(2 + cfg.trainers + i) for i in range(cfg.oracles)]
    w3 = connect(chain_rpc)
    if chain_rpc == IN_PROCESS:
        everyone = (deployer, requester, *trainers, *oracles)
        fund_accounts(w3, tuple(p.address for p in everyone), amount_wei=100 * 10**18)
    progress("deploying the contracts")
    deployment = deploy_marketplace(w3, deployer.eth, unbonding_delay=3600)
    write_deployment(deployment, workdir / "deployments")
    market = Marketplace(w3, deployment)
    gas = GasMeter(market)

    progress(
        f"funding and registering 1 requester, {len(trainers)} trainers, {len(oracles)} oracles"
    )
    market.mint(deployer.eth, requester.address, cfg.budget)
    market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
    for p, role in [*((t, Role.TRAINER) for t in trainers), *((o, Role.ORACLE) for o in oracles)]:
        market.mint(deployer.eth, p.address, 2 * cfg.stake)
        market.register(p.eth, role, p.x25519_public, cfg.stake)
    stake_before = {p.address: market.participant(p.address).stake for p in (*trainers, *oracles)}
    reputation_before = {t.address: market.participant(t.address).reputation_ppm for t in trainers}

    # --- data ----------------------------------------------------------------------------
    splits = split_dataset(load_dataset("digits"), seed=cfg.seed)
    parts = partition(
        "dirichlet", splits.train.y, num_clients=cfg.trainers, seed=cfg.seed, alpha=cfg.alpha
    )
    skew = label_skew(parts, splits.train.y)
    behaviours = {t.address: BEHAVIOURS[i % len(BEHAVIOURS)] for i, t in enumerate(trainers)}
    local = {}
    for t, idx in zip(trainers, parts, strict=True):
        data = splits.train.subset(idx, name=f"digits/{t.address[:8]}")
        if behaviours[t.address] == "noisy":
            noisy = add_label_noise(
                splits.train.y,
                idx,
                fraction=cfg.noise_fraction,
                num_classes=splits.train.num_classes,
                seed=cfg.seed,
            )
            data = splits.train.with_labels(noisy).subset(idx, name=data.name)
        local[t.address] = data
    spec = ModelSpec(arch="mlp", input_dim=64, hidden=cfg.hidden, num_classes=10, seed=cfg.seed)
    train = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=16)
    central_weights, _ = train_centralized(
        spec, splits.train, TrainConfig(epochs=cfg.epochs * cfg.rounds, lr=cfg.lr, batch_size=16)
    )
    centralized = evaluate(spec, central_weights, splits.test.x, splits.test.y).accuracy

    # --- the task ------------------------------------------------------------------------
    progress("creating the task: budget escrowed, validation set encrypted for the oracles")
    plan = TaskPlan(
        model=spec, train=train, budget=cfg.budget, rounds=cfg.rounds, aggregator=cfg.aggregator,
        aggregator_params=dict(cfg.aggregator_params),
        oracles=tuple(o.address for o in oracles), min_trainers=cfg.trainers,
        max_trainers=cfg.trainers, min_stake=cfg.stake // 2, trainer_bond=cfg.stake // 10,
        oracle_slash=cfg.stake // 2, valuation=ValuationConfig(method="auto", seed=cfg.seed),
        dataset={"name": "digits", "features": 64, "classes": 10,
                 "partition": f"dirichlet(alpha={cfg.alpha})"},
        join_window=600, round_duration=600, commit_duration=600, reveal_duration=600,
        dispute_duration=600, claim_duration=3600,
    )  # fmt: skip
    task_id, _ = create_task(
        market, store, requester, plan, splits.validation.x, splits.validation.y
    )

    def session(identity: Identity) -> TaskSession:
        return TaskSession.open(market, store, task_id, identity)

    journals = workdir / "journals"
    trainer_nodes = [
        TrainerNode(
            session(t),
            local[t.address],
            Journal(journals / f"{t.address}.sqlite"),
            behaviour=_behaviour(behaviours[t.address]),
            seed=cfg.seed,
        )
        for t in trainers
    ]
    oracle_nodes = [
        OracleNode(session(o), Journal(journals / f"{o.address}.sqlite")) for o in oracles
    ]

    # --- run every peer until the task is settled ------------------------------------------
    _drive(market, task_id, trainer_nodes, oracle_nodes, progress)

    # --- results -------------------------------------------------------------------------
    observer = trainer_nodes[0].session
    report = final_report(observer)
    info = market.task(task_id)
    curve = []
    for r in range(1, cfg.rounds + 2):
        acc = evaluate(spec, observer.global_weights(r), splits.test.x, splits.test.y).accuracy
        curve.append({"round": r - 1, "test_accuracy": acc})
    loo = _leave_one_out(observer, spec, splits.test.x, splits.test.y, cfg.rounds)
    payouts: dict[str, Any] = {
        str(Web3.to_checksum_address(p["account"])): p for p in report["payouts"]
    }
    rows = []
    for i, t in enumerate(trainers):
        after = market.participant(t.address)
        entry = payouts.get(t.address, {})
        rows.append({
            "address": t.address,
            "samples": len(local[t.address]),
            "label_skew": round(float(skew.per_client[i]), 3),
            "behaviour": behaviours[t.address],
            "score_ppm": int(report["totals_ppm"].get(t.address, 0)),
            "payout": int(entry.get("amount", 0)),
            "flags": int(entry.get("flags", 0)),
            "slashed": int(stake_before[t.address] - after.stake),
            "reputation_ppm": after.reputation_ppm,
            "reputation_before_ppm": int(reputation_before[t.address]),
            "budget": int(cfg.budget),
            "flag_names": _flag_names(int(entry.get("flags", 0))),
            "loo_utility": loo.get(t.address, 0.0),
            "stake_before": int(stake_before[t.address]),
            "stake_after": after.stake,
        })  # fmt: skip
    oracle_rows = [
        {
            "address": o.address,
            "slashed": int(stake_before[o.address] - market.participant(o.address).stake),
        }
        for o in oracles
    ]
    return DemoResult(
        accuracy=curve[-1]["test_accuracy"],
        centralized_accuracy=centralized,
        rounds=curve,
        trainers=rows,
        oracles=oracle_rows,
        gas=dict(sorted(gas.totals.items())),
        chain="in-process EVM (py-evm)" if chain_rpc == IN_PROCESS else chain_rpc,
        storage=store.name,
        seconds=time.monotonic() - started,
        task_id=task_id,
        report_root="0x" + bytes(info.payout_root).hex(),
        market=market,
        store=store,
    )


def _behaviour(name: str) -> Any:
    if name == "poisoner":
        return get_behaviour("sign_flip")
    if name == "free_rider":
        return get_behaviour("free_rider")
    return get_behaviour("honest")  # "noisy" trains honestly on its noisy labels


def _drive(
    market: Marketplace,
    task_id: int,
    trainers: list[TrainerNode],
    oracles: list[OracleNode],
    progress: Callable[[str], None],
    max_iterations: int = 500,
) -> None:
    """Step every peer round-robin; when all of them only wait, move the chain clock to the
    current phase's deadline (the devnet's stand-in for waiting)."""
    done: set[int] = set()
    last_phase = None
    for _ in range(max_iterations):
        info = market.task(task_id)
        phase_label = (info.phase_enum, info.current_round)
        if phase_label != last_phase:
            name = info.phase_enum.name.lower()
            progress(
                f"round {phase_label[1]}/{info.rounds}: training"
                if info.phase_enum == Phase.TRAINING
                else name
            )
            last_phase = phase_label
        acted = False
        peers: list[Peer] = [*trainers, *oracles]
        for i, node in enumerate(peers):
            if i in done:
                continue
            step = node.step()
            log.info("%s %s: %s", node.role, node.me, step.action)
            if step.is_done:
                done.add(i)
            if not step.is_waiting:
                acted = True
        if len(done) == len(trainers) + len(oracles):
            return
        if not acted:
            info = market.task(task_id)
            target = (
                info.claims_open_at if info.phase_enum == Phase.FINALIZED else info.phase_deadline
            )
            advance_chain_time(market.w3, max(1, target - market.now() + 1))
    raise RuntimeError("the demo did not settle: a peer is stuck (run with -v to see its steps)")


def _flag_names(flags: int) -> list[str]:
    from marketplace.valuation.flags import Flag

    return [str(f.name).lower() for f in Flag if f and flags & f]


def _leave_one_out(
    session: TaskSession, spec: ModelSpec, x: np.ndarray, y: np.ndarray, rounds: int
) -> dict[str, float]:
    """Each trainer's leave-one-out utility on held-out test data, summed over rounds: the
    test accuracy of the round's aggregate minus that of the aggregate without it."""
    from marketplace.valuation.round_utility import RoundUtility

    totals: dict[str, float] = {}
    for r in range(1, rounds + 1):
        updates = session.round_updates(r).valid
        if not updates:
            continue
        utility = RoundUtility(
            model_spec=spec, global_weights=session.global_weights(r), updates=updates,
            strategy=session.doc.strategy(), x_val=x, y_val=y,
        )  # fmt: skip
        everyone = frozenset(range(len(utility.players)))
        full = utility(everyone)
        for i, player in enumerate(utility.players):
            totals[player] = totals.get(player, 0.0) + full - utility(everyone - {i})
    return {k: round(v, 6) for k, v in totals.items()}
