"""``fedmarket demo``: the whole marketplace on one machine, end to end, in four acts.

1. **Sourcing** (:mod:`node.demo.sourcing_act`): the requester publishes a data request; ten data
   owners holding Dirichlet non-IID shares of scikit-learn's digits (different sizes, prices and
   label skews; one with 30% wrong labels, one with shifted features, one overpriced) answer with
   sealed offers; the committee of 3 oracles values them against the validation set and the
   truthful budget-feasible mechanism picks the winners, who alone may join the task.
2. **Training**: the winners (one of them a free rider, one a poisoner) train with encrypted
   updates, every peer aggregates, the oracles score by Shapley values with commit-reveal,
   finalize; trainers claim, cheaters are slashed; winners claim their threshold data payments
   with their rows of the final payout table, and the contract refuses the two flagged ones.
3. **Sale** (:mod:`node.demo.aftermarket`): two auditors attest the model, it is listed, two
   buyers buy and download it (digest checked), royalties flow to the trainers by score.
4. **Withdrawal**: one data owner withdraws consent; the network unlearns its data, re-validates
   and records the new model version.

With no options everything is in-process (py-evm and the embedded content store); with
``--chain-rpc``/``--ipfs-api`` (or ``--devnet``) the same run uses real Anvil and Kubo.

The peers share one process here only to need no setup: each is a separate :class:`TrainerNode`
or :class:`OracleNode` with its own identity, journal and session, talking only through the chain
and the content store, exactly as the multi-process nodes do.
"""

from __future__ import annotations

import logging
import resource
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
from marketplace.chain.build import contract_artifacts
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import (
    Deployment,
    deploy_marketplace,
    deploy_model_versions,
    deploy_product,
    write_deployment,
)
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.sourcing_client import DataSourcingClient
from marketplace.chain.versions_client import VersionsClient
from marketplace.errors import TransactionRevertedError
from marketplace.fl import (
    ModelSpec,
    TrainConfig,
    evaluate,
    get_behaviour,
    load_dataset,
    split_dataset,
    train_centralized,
)
from marketplace.fl.serialization import dump_weights
from marketplace.protocol.identity import Identity
from marketplace.protocol.published_report import final_report, sourcing_claim_args
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.storage.base import ContentStore
from marketplace.valuation.config import ValuationConfig
from node.demo.aftermarket import (
    record_trained_version,
    run_sale_act,
    run_withdrawal_act,
)
from node.demo.sourcing_act import make_candidates, run_sourcing_act, sketch_spec
from node.peers.base import Peer
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.trainer import TrainerNode
from node.peers.unlearner import UnlearningNode

log = logging.getLogger(__name__)

TOKEN = 10**18
CENTRAL_EPOCHS = 4  # epochs of the centralized reference (the accuracy plot's dashed line)


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs (the defaults: see docs/benchmarks.md, "demo")."""

    candidates: int = 10  # data owners answering the request (kinds: node.demo.sourcing_act.KINDS)
    oracles: int = 3
    rounds: int = 4
    alpha: float = 3.0  # Dirichlet label skew (smaller: more skewed)
    budget: int = 1000 * TOKEN  # the task's contribution pool
    sourcing_budget: int = 270 * TOKEN  # the data request's procurement budget
    price: int = 50 * TOKEN  # the model's listing price
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
    sourcing: dict[str, Any] = field(default_factory=dict)
    sale: dict[str, Any] = field(default_factory=dict)
    withdrawal: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
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
            "sourcing": self.sourcing,
            "sale": self.sale,
            "withdrawal": self.withdrawal,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "plots": self.plots,
        }


class GasMeter:
    """Sums gas per contract function over the demo (a receipt hook of the market)."""

    def __init__(self, market: Marketplace):
        self.totals: dict[str, int] = {}
        market.receipt_hooks.append(self.record)

    def record(self, function: str, receipt: TxReceipt) -> None:
        self.totals[function] = self.totals.get(function, 0) + int(receipt["gasUsed"])


class Clock:
    """Wall seconds per act of the demo, and the process's CPU seconds (user + system) since the
    clock started: the figure a loaded machine does not inflate."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()
        self._cpu = _cpu_seconds()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = now - self._last
        self._last = now

    def cpu(self) -> float:
        return _cpu_seconds() - self._cpu


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def _deploy(w3: Web3, deployer: Identity) -> Deployment:
    """TaskMarket (with its registry, token and the DataSourcing gate), ModelMarket and
    ModelVersions, from artifacts loaded once."""
    artifacts = contract_artifacts()
    deployment = deploy_marketplace(w3, deployer.eth, unbonding_delay=3600, artifacts=artifacts)
    deployment = deploy_product(w3, deployer.eth, deployment, artifacts=artifacts)
    return deploy_model_versions(w3, deployer.eth, deployment, artifacts=artifacts)


def _run(
    cfg: DemoConfig,
    chain_rpc: str,
    store: ContentStore,
    workdir: Path,
    progress: Callable[[str], None],
    started: float,
) -> DemoResult:
    clock = Clock()
    # --- identities and chain ------------------------------------------------------------
    deployer, requester = Identity.dev(0), Identity.dev(1)
    owners = [Identity.dev(2 + i) for i in range(cfg.candidates)]
    n = 2 + cfg.candidates
    oracles = [Identity.dev(n + i) for i in range(cfg.oracles)]
    auditors = [Identity.dev(n + cfg.oracles + i) for i in range(2)]
    buyers = [Identity.dev(n + cfg.oracles + 2 + i) for i in range(2)]
    w3 = connect(chain_rpc)
    if chain_rpc == IN_PROCESS:
        everyone = (deployer, requester, *owners, *oracles, *auditors, *buyers)
        fund_accounts(w3, tuple(p.address for p in everyone), amount_wei=100 * 10**18)
    progress("deploying the contracts")
    deployment = _deploy(w3, deployer)
    write_deployment(deployment, workdir / "deployments")
    market = Marketplace(w3, deployment)
    gas = GasMeter(market)
    clock.lap("deploy")

    progress(
        f"funding and registering 1 requester, {len(owners)} data owners, {len(oracles)} oracles"
    )
    market.mint(deployer.eth, requester.address, cfg.budget + cfg.sourcing_budget + 100 * TOKEN)
    market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
    for p, role in [*((t, Role.TRAINER) for t in owners), *((o, Role.ORACLE) for o in oracles)]:
        market.mint(deployer.eth, p.address, 2 * cfg.stake)
        market.register(p.eth, role, p.x25519_public, cfg.stake)
    for b in buyers:
        market.mint(deployer.eth, b.address, 2 * cfg.price)
    stake_before = {p.address: market.participant(p.address).stake for p in (*owners, *oracles)}
    reputation_before = {t.address: market.participant(t.address).reputation_ppm for t in owners}

    # --- data ----------------------------------------------------------------------------
    splits = split_dataset(load_dataset("digits"), seed=cfg.seed)
    candidates = make_candidates(splits, owners, seed=cfg.seed, alpha=cfg.alpha)
    spec = ModelSpec(arch="mlp", input_dim=64, hidden=cfg.hidden, num_classes=10, seed=cfg.seed)
    train = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=16)
    # The reference line of the accuracy plot: the same model trained on all the rows at once.
    central_weights, _ = train_centralized(
        spec, splits.train, TrainConfig(epochs=CENTRAL_EPOCHS, lr=cfg.lr, batch_size=16)
    )
    centralized = evaluate(spec, central_weights, splits.test.x, splits.test.y).accuracy
    clock.lap("setup")

    # --- the task, gated by the data request -----------------------------------------------
    progress("creating the task: budget escrowed, validation set encrypted for the oracles")
    sourcing_client = DataSourcingClient(w3, deployment)
    plan = TaskPlan(
        model=spec, train=train, budget=cfg.budget, rounds=cfg.rounds, aggregator=cfg.aggregator,
        aggregator_params=dict(cfg.aggregator_params),
        oracles=tuple(o.address for o in oracles), min_trainers=2,
        max_trainers=cfg.candidates, min_stake=cfg.stake // 2, trainer_bond=cfg.stake // 10,
        oracle_slash=cfg.stake // 2, valuation=ValuationConfig(method="auto", seed=cfg.seed),
        dataset={"name": "digits", "features": 64, "classes": 10,
                 "partition": f"dirichlet(alpha={cfg.alpha})"},
        join_window=3 * 3600, round_duration=600, commit_duration=600, reveal_duration=600,
        dispute_duration=600, claim_duration=3600, join_gate=sourcing_client.address,
    )  # fmt: skip
    task_id, _ = create_task(
        market, store, requester, plan, splits.validation.x, splits.validation.y
    )
    for o in oracles:  # consent first: sourcing runs inside the task's join window
        market.accept_seat(o.eth, task_id)

    # --- act 1: sourcing -------------------------------------------------------------------
    sourced = run_sourcing_act(
        market, sourcing_client, store, task_id=task_id, requester=requester, oracles=oracles,
        candidates=candidates, validation=splits.validation,
        spec=sketch_spec(splits.validation, cfg.seed), budget=cfg.sourcing_budget, window=600,
        progress=progress,
    )  # fmt: skip
    clock.lap("sourcing")
    winners = [c for c in candidates if c.identity.address in set(sourced.winners)]
    local = {c.identity.address: c.data for c in winners}

    def session(identity: Identity) -> TaskSession:
        return TaskSession.open(market, store, task_id, identity)

    journals = workdir / "journals"
    trainer_nodes = [
        TrainerNode(
            session(c.identity),
            c.data,
            Journal(journals / f"{c.identity.address}.sqlite"),
            behaviour=_behaviour(c.kind),
            seed=cfg.seed,
        )
        for c in winners
    ]
    oracle_nodes = [
        OracleNode(session(o), Journal(journals / f"{o.address}.sqlite")) for o in oracles
    ]

    # --- act 2: training, scoring, claims ---------------------------------------------------
    _drive(market, task_id, trainer_nodes, oracle_nodes, progress)
    progress("winners claim their threshold data payments: flagged winners are refused")
    data_paid, data_withheld = {}, {}
    for c in winners:
        address = c.identity.address
        leaf, proof = sourcing_claim_args(session(c.identity))
        before = market.balance_of(address)
        try:
            sourcing_client.claim_payment(c.identity.eth, sourced.request_id, leaf, proof)
        except TransactionRevertedError as exc:
            if exc.error_name != "DataSourcingWinnerFlagged":
                raise
            # Withheld: it returns to the requester with `refund` after the claim deadline.
            data_withheld[address] = sourcing_client.winner(sourced.request_id, address)[0]
        data_paid[address] = market.balance_of(address) - before
    clock.lap("training")

    observer = trainer_nodes[0].session
    report = final_report(observer)
    info = market.task(task_id)

    # --- act 3: audit, listing, sales, royalties -------------------------------------------
    progress("the model is recorded as version 1, audited by 2 auditors, listed and sold to 2 "
             "buyers")  # fmt: skip
    versions = VersionsClient(market)
    trained_version = record_trained_version(market, versions, task_id=task_id,
                                             rounds=cfg.rounds, requester=requester,
                                             oracles=oracles)  # fmt: skip
    final_model = dump_weights(observer.global_weights(cfg.rounds + 1))
    sale = run_sale_act(
        market, observer, report=report, final_model=final_model, spec=spec,
        validation=splits.validation, requester=requester, oracles=oracles, auditors=auditors,
        buyers=buyers, price=cfg.price,
    )  # fmt: skip
    clock.lap("sale")

    # --- act 4: a data owner withdraws consent -----------------------------------------------
    # The honest owner whose data the model owes least leaves (its score, the committee's).
    honest = [c for c in winners if c.kind == "honest"]
    leaver = min(
        honest, key=lambda c: int(report["totals_ppm"].get(c.identity.address, 0))
    ).identity
    progress(f"data owner {leaver.address[:10]}… withdraws consent: the network unlearns its data")
    unlearners = [  # each remaining trainer's `fedmarket data unlearn`, on its own data
        UnlearningNode(session(c.identity), c.data,
                       Journal(journals / f"unlearn-{c.identity.address}.sqlite"), seed=cfg.seed)
        for c in winners if c.identity.address != leaver.address
    ]  # fmt: skip
    withdrawal = run_withdrawal_act(
        market, versions, task_id=task_id, trained_version=trained_version, leaver=leaver,
        unlearners=unlearners, oracles=oracle_nodes, test=splits.test, spec=spec,
    )  # fmt: skip
    clock.lap("withdrawal")

    # --- results -------------------------------------------------------------------------
    curve = []
    for r in range(1, cfg.rounds + 2):
        acc = evaluate(spec, observer.global_weights(r), splits.test.x, splits.test.y).accuracy
        curve.append({"round": r - 1, "test_accuracy": acc})
    loo = _leave_one_out(observer, spec, splits.test.x, splits.test.y, cfg.rounds)
    payouts: dict[str, Any] = {
        str(Web3.to_checksum_address(p["account"])): p for p in report["payouts"]
    }
    offers = {row["address"]: row for row in sourced.candidates}
    rows = []
    for c in winners:
        t = c.identity
        after = market.participant(t.address)
        entry = payouts.get(t.address, {})
        rows.append({
            "address": t.address,
            "samples": len(local[t.address]),
            "label_skew": c.label_skew,
            "behaviour": c.kind,
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
            "ask": int(offers[t.address]["ask"]),
            "data_payment": int(data_paid[t.address]),
            "data_payment_withheld": int(data_withheld.get(t.address, 0)),
            "royalty": int(sale["royalties"].get(t.address, 0)),
            "withdrew": t.address == leaver.address,
        })  # fmt: skip
    oracle_rows = [
        {
            "address": o.address,
            "slashed": int(stake_before[o.address] - market.participant(o.address).stake),
        }
        for o in oracles
    ]
    clock.lap("results")
    clock.laps["cpu"] = clock.cpu()
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
        sourcing=sourced.to_json(),
        sale=sale,
        withdrawal=withdrawal,
        timings=clock.laps,
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
