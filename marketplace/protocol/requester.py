"""The requester's side: publish a task's artifacts and escrow its budget.

Order matters: the validation set is encrypted for the committee and stored first, so the task
document can name its CID and commitment; the document, the model spec and the initial weights
are stored next; only then is the task created on-chain, pointing at all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from eth_utils.address import is_address

from marketplace.chain.clients import BPS, QUORUM_MIN_BPS, Marketplace, Role, TaskId, TaskParams
from marketplace.chain.model_market_client import (
    MAX_AUDITORS,
    MAX_SUBMISSIONS,
    ModelMarketClient,
    ProductParams,
)
from marketplace.crypto.secagg import SecAggTerms, check_task_terms
from marketplace.errors import ConfigError
from marketplace.fl.models import ModelSpec
from marketplace.fl.privacy import DPTerms
from marketplace.fl.strategy import get_strategy
from marketplace.fl.train import TrainConfig
from marketplace.protocol.identity import Identity
from marketplace.protocol.round_batch import BatchTerms
from marketplace.protocol.session import initial_model_blob, seal_validation_set
from marketplace.protocol.taskdoc import TaskDocument, ValidationRef
from marketplace.storage.base import ContentStore
from marketplace.valuation.config import ValuationConfig
from marketplace.valuation.quantize import PPM

ZERO_ADDRESS = "0x" + "00" * 20  # no join gate: open joining
PRODUCT_CONTRACT = "ModelMarket"


@dataclass(frozen=True)
class TaskPlan:
    """Everything a requester decides about a task (money in token base units, times in s)."""

    model: ModelSpec
    train: TrainConfig
    budget: int
    rounds: int
    oracles: tuple[str, ...]
    min_trainers: int
    max_trainers: int
    min_stake: int = 10**18  # at least the protocol minimum (TaskMarket.MIN_STAKE)
    aggregator: str = "fedavg"
    aggregator_params: dict[str, Any] = field(default_factory=dict)
    max_update_bytes: int = 64 * 1024 * 1024
    max_update_norm: float | None = None
    valuation: ValuationConfig = ValuationConfig()
    dataset: dict[str, Any] = field(default_factory=dict)
    public_model: bool = False
    trainer_bond: int = 10**18  # at least the protocol minimum (TaskMarket.MIN_TRAINER_BOND)
    dispute_bond: int = 0
    min_reputation_ppm: int = 0
    join_window: int = 3600
    round_duration: int = 3600
    commit_duration: int = 3600
    reveal_duration: int = 3600
    dispute_duration: int = 3600
    claim_duration: int = 7 * 24 * 3600
    quorum_bps: int = 6600  # 2 of 3 equal-stake oracles reach quorum
    oracle_slash: int = 10**18  # each seat's reserved stake: its vote weight and what it risks
    token: str | None = None
    accept_window: int = 3600  # seconds the proposed committee has to accept its seats
    requester_deposit: int = 0  # paid to the committee if the validation set is found mismatched
    join_gate: str | None = None  # an IJoinGate contract (None: open joining)
    # After training (ModelMarket): K validation submissions, the final aggregate included
    # (None: the task has no product phase), and M auditor attestations required for approval.
    validation_submissions: int | None = None
    auditors: int = 0
    pass_threshold_ppm: int = 500_000  # validation accuracy a submission must reach
    bounty: int = 0  # paid to the first passing submission's developer (escrowed)
    auditor_fee: int = 0  # paid per required attestation (escrowed)
    privacy: DPTerms | None = None  # the task's DP mode, (ε, δ, clip) per trainer (None: no DP)
    secagg: SecAggTerms | None = None  # secure aggregation among peers (None: off)
    batches: BatchTerms | None = None  # batched round commitments (None: off)

    def __post_init__(self) -> None:
        """Refuse a plan the contract or the oracles would refuse, before any transaction."""
        _check_plan(self)
        _check_product(self)

    def product_params(self) -> ProductParams | None:
        """What ``ModelMarket.configure`` fixes for this task (``None``: no product phase); the
        evaluation's commit and reveal windows are the scoring's."""
        if self.validation_submissions is None:
            return None
        return ProductParams(
            max_submissions=self.validation_submissions, threshold_ppm=self.pass_threshold_ppm,
            bounty=self.bounty, required_attestations=self.auditors,
            auditor_fee=self.auditor_fee, eval_commit_duration=self.commit_duration,
            eval_reveal_duration=self.reveal_duration,
        )  # fmt: skip


_POSITIVE = ("budget", "rounds", "min_trainers", "max_update_bytes", "join_window",
             "round_duration", "commit_duration", "reveal_duration", "dispute_duration",
             "claim_duration")  # fmt: skip
_NON_NEGATIVE = ("min_stake", "trainer_bond", "dispute_bond", "oracle_slash")


def _check_plan(plan: TaskPlan) -> None:
    for name in (*_POSITIVE, *_NON_NEGATIVE, "max_trainers", "min_reputation_ppm", "quorum_bps"):
        value = getattr(plan, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"task {name} must be an integer, got {value!r}")
    for name in _POSITIVE:
        if getattr(plan, name) <= 0:
            raise ConfigError(f"task {name} must be positive, got {getattr(plan, name)}")
    for name in _NON_NEGATIVE:
        if getattr(plan, name) < 0:
            raise ConfigError(f"task {name} must not be negative, got {getattr(plan, name)}")
    if plan.max_trainers < plan.min_trainers:
        raise ConfigError(
            f"max_trainers ({plan.max_trainers}) is below min_trainers ({plan.min_trainers}): "
            "raise --max-trainers or lower --min-trainers"
        )
    if not 0 <= plan.min_reputation_ppm <= PPM:
        raise ConfigError(f"min_reputation_ppm must be within 0..{PPM}")
    if not QUORUM_MIN_BPS < plan.quorum_bps <= BPS:
        raise ConfigError(
            f"quorum_bps must be above {QUORUM_MIN_BPS} (a majority) and at most {BPS}, "
            f"got {plan.quorum_bps}"
        )
    if plan.max_update_norm is not None and not plan.max_update_norm > 0:
        raise ConfigError(f"max_update_norm must be positive, got {plan.max_update_norm}")
    if not plan.oracles:
        raise ConfigError("a task needs an oracle committee: name at least one --oracle")
    bad = [o for o in plan.oracles if not is_address(o)]
    if bad:
        raise ConfigError(f"oracle {bad[0]!r} is not an Ethereum address")
    if len({o.lower() for o in plan.oracles}) != len(plan.oracles):
        raise ConfigError("an oracle is named twice: give each committee member once")
    if plan.token is not None and not is_address(plan.token):
        raise ConfigError(f"token {plan.token!r} is not an Ethereum address")
    if not isinstance(plan.valuation, ValuationConfig):
        raise ConfigError("valuation must be a ValuationConfig")
    get_strategy(plan.aggregator, **plan.aggregator_params)  # an unknown aggregator: ConfigError
    if plan.secagg is not None:
        check_task_terms(
            plan.secagg, aggregator=plan.aggregator, min_trainers=plan.min_trainers,
            max_trainers=plan.max_trainers,
        )  # fmt: skip
    if plan.batches is not None and plan.secagg is not None:
        raise ConfigError(
            "batched round commitments and secure aggregation do not combine yet (a secure "
            "round commits masked inputs directly): drop --batch-commits or "
            "--secure-aggregation"
        )
    dpsgd = plan.privacy is not None and plan.privacy.mode == "dpsgd"
    if dpsgd and (plan.train.optimizer != "sgd" or plan.train.fedprox_mu):
        raise ConfigError(
            "DP-SGD trains with plain SGD (per-sample gradients): use optimizer 'sgd' and "
            "fedprox_mu 0, or the trainer-level DP mode 'update'"
        )


def _check_product(plan: TaskPlan) -> None:
    k, m = plan.validation_submissions, plan.auditors
    for name, value in (("validation_submissions", k), ("auditors", m), ("bounty", plan.bounty),
                        ("auditor_fee", plan.auditor_fee),
                        ("pass_threshold_ppm", plan.pass_threshold_ppm)):  # fmt: skip
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"task {name} must be an integer, got {value!r}")
    if k is None:
        if m or plan.bounty or plan.auditor_fee:
            raise ConfigError(
                "auditors, a bounty or auditor fees need validation submissions: "
                "give --validation-submissions K"
            )
        return
    if not 1 <= k <= MAX_SUBMISSIONS:
        raise ConfigError(
            f"--validation-submissions must be within 1..{MAX_SUBMISSIONS} (the final aggregate "
            f"is submission 1), got {k}"
        )
    if not 0 <= m <= MAX_AUDITORS:
        raise ConfigError(f"--auditors must be within 0..{MAX_AUDITORS}, got {m}")
    if not 0 <= plan.pass_threshold_ppm <= PPM:
        raise ConfigError(f"pass_threshold_ppm must be within 0..{PPM}")
    if plan.bounty < 0 or plan.auditor_fee < 0:
        raise ConfigError("bounty and auditor_fee must not be negative")


def create_task(
    market: Marketplace,
    store: ContentStore,
    requester: Identity,
    plan: TaskPlan,
    x_val: np.ndarray,
    y_val: np.ndarray,
) -> tuple[TaskId, TaskDocument]:
    """Publish the task's artifacts and create it on-chain; returns its id and document.

    Everything is checked before the first transaction (the plan when it is built; here the
    validation set, the committee's registration and keys, the chain's limits and the budget),
    so a refused task costs nothing.
    """
    if len(y_val) == 0:
        raise ConfigError("the validation set is empty: oracles need data to score on")
    if x_val.shape[1:] != (plan.model.input_dim,):
        raise ConfigError(
            f"validation rows have shape {x_val.shape[1:]}, "
            f"the model expects ({plan.model.input_dim},)"
        )
    limits = market.limits()
    if plan.rounds > limits.max_rounds:
        raise ConfigError(f"{plan.rounds} rounds: the market allows at most {limits.max_rounds}")
    if len(plan.oracles) > limits.max_committee:
        raise ConfigError(
            f"{len(plan.oracles)} oracles: the market seats at most {limits.max_committee}"
        )
    oracle_keys = {}
    for o in plan.oracles:
        p = market.participant(o)
        if p.role != Role.ORACLE or p.encryption_key == bytes(32):
            raise ConfigError(
                f"{o} is not a registered oracle with an encryption key: committee members "
                "run `fedmarket register oracle --stake N` first"
            )
        oracle_keys[p.address] = p.encryption_key
    product = plan.product_params()
    if product is not None and PRODUCT_CONTRACT not in market.deployment.contracts:
        raise ConfigError(
            "--validation-submissions needs ModelMarket on this chain: "
            "run `fedmarket model deploy` first"
        )
    escrow = 0 if product is None else product.escrow
    market.require_balance(requester.eth, plan.budget + escrow, "the task budget (and bounty/fees)")
    blob, ref = seal_validation_set(
        x_val, y_val, oracles=oracle_keys, chain_id=market.deployment.chain_id,
        requester=requester.address,
    )  # fmt: skip
    ref = replace(ref, cid=store.put(blob))
    doc = TaskDocument(
        model=plan.model, train=plan.train,
        validation=ValidationRef(ref.cid, ref.sha256, ref.samples),
        aggregator=plan.aggregator, aggregator_params=plan.aggregator_params,
        max_update_bytes=plan.max_update_bytes, max_update_norm=plan.max_update_norm,
        valuation=plan.valuation, dataset=plan.dataset, public_model=plan.public_model,
        privacy=plan.privacy,
        secagg=plan.secagg,
        batches=plan.batches,
    )  # fmt: skip
    config_cid = store.put(doc.to_json())
    spec_cid = store.put(plan.model.to_json().encode())
    init_blob, init_digest = initial_model_blob(doc)
    init_cid = store.put(init_blob)
    now = market.now()
    params = TaskParams(
        budget=plan.budget, model_spec_cid=spec_cid, initial_model_cid=init_cid,
        initial_model_digest=init_digest, config_cid=config_cid,
        validation_commitment=bytes.fromhex(ref.sha256), rounds=plan.rounds,
        min_trainers=plan.min_trainers, max_trainers=plan.max_trainers, min_stake=plan.min_stake,
        join_deadline=now + plan.join_window, oracles=tuple(plan.oracles), token=plan.token,
        min_reputation_ppm=plan.min_reputation_ppm, trainer_bond=plan.trainer_bond,
        dispute_bond=plan.dispute_bond, round_duration=plan.round_duration,
        commit_duration=plan.commit_duration, reveal_duration=plan.reveal_duration,
        dispute_duration=plan.dispute_duration, claim_duration=plan.claim_duration,
        quorum_bps=plan.quorum_bps, oracle_slash=plan.oracle_slash,
        accept_duration=plan.accept_window, join_gate=plan.join_gate or ZERO_ADDRESS,
        requester_deposit=plan.requester_deposit,
        sealed_validation_digest=hashlib.sha256(blob).digest(),
    )  # fmt: skip
    task_id = market.create_task(requester.eth, params)
    if product is not None:  # K and M are fixed with the task, before anyone joins
        ModelMarketClient(market.w3, market.deployment).configure(requester.eth, task_id, product)
    return task_id, doc
