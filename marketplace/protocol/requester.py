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

from marketplace.chain.clients import Marketplace, TaskId, TaskParams
from marketplace.errors import ConfigError
from marketplace.fl.models import ModelSpec
from marketplace.fl.train import TrainConfig
from marketplace.protocol.identity import Identity
from marketplace.protocol.session import initial_model_blob, seal_validation_set
from marketplace.protocol.taskdoc import TaskDocument, ValidationRef, ValuationConfig
from marketplace.storage.base import ContentStore


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
    # ValuationConfig is a frozen dataclass of scalars, so one shared default instance is safe.
    valuation: ValuationConfig = ValuationConfig()  # noqa: RUF009 (frozen, immutable)
    dataset: dict[str, Any] = field(default_factory=dict)
    public_model: bool = False
    trainer_bond: int = 0
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


def create_task(
    market: Marketplace,
    store: ContentStore,
    requester: Identity,
    plan: TaskPlan,
    x_val: np.ndarray,
    y_val: np.ndarray,
) -> tuple[TaskId, TaskDocument]:
    """Publish the task's artifacts and create it on-chain; returns its id and document."""
    if len(y_val) == 0:
        raise ConfigError("the validation set is empty: oracles need data to score on")
    if x_val.shape[1:] != (plan.model.input_dim,):
        raise ConfigError(
            f"validation rows have shape {x_val.shape[1:]}, "
            f"the model expects ({plan.model.input_dim},)"
        )
    oracle_keys = {o: market.participant(o).encryption_key for o in plan.oracles}
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
    )  # fmt: skip
    doc.strategy()  # refuse an unknown aggregator before spending gas
    config_cid = store.put(doc.to_json())
    spec_cid = store.put(plan.model.to_json().encode())
    init_blob, init_digest = initial_model_blob(doc)
    init_cid = store.put(init_blob)
    now = int(market.w3.eth.get_block("latest")["timestamp"])
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
        accept_duration=plan.accept_window, join_gate=plan.join_gate,
        requester_deposit=plan.requester_deposit,
        sealed_validation_digest=hashlib.sha256(blob).digest(),
    )  # fmt: skip
    task_id = market.create_task(requester.eth, params)
    return task_id, doc
