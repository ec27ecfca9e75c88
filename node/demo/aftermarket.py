"""The demo's last acts, after claims: the model is audited, listed and sold with royalties to
its trainers; then one data owner withdraws consent and the network unlearns its data.

* **Sale** (:func:`run_sale_act`): the trained model is recorded as version 1 and attested by the
  committee; the library's product procedure runs (committee score, two auditors attest, listing,
  two buyers pay, the key holder delivers, each buyer downloads and checks the digest, every
  trainer's royalties are claimed with its payout leaf).
* **Withdrawal** (:func:`run_withdrawal_act`): an honest data owner withdraws consent on-chain; a
  remaining trainer derives the model without its data from the stored rounds (FedEraser-style
  calibrated retraining, one calibration round per stored round, or retraining from the last
  checkpoint before its first round when that is cheaper), publishes and records it as version
  2; two oracles re-validate it. After the withdrawal's deadline only version 2 is sellable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from marketplace.chain.clients import Marketplace
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.model_market_client import ModelMarketClient
from marketplace.chain.versions_client import Reason, RetentionTerms, VersionsClient
from marketplace.fl import Dataset, ModelSpec, TrainConfig, evaluate
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import train_local
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.protocol.identity import Identity
from marketplace.protocol.product_flow import Party, run_product_phase
from marketplace.protocol.published_report import entries_of
from marketplace.protocol.session import TaskSession
from marketplace.protocol.withdrawal import record_unlearned, revalidate
from marketplace.unlearning import FedEraserConfig
from marketplace.unlearning.history import LocalTrainer
from marketplace.valuation.merkle import PayoutTree

TOKEN = 10**18
REQUESTER_BPS, AUDITOR_BPS = 1000, 500  # the listing's shares (run_product_phase fixes them)
UNLEARN_WINDOW = 600  # seconds from a withdrawal to its deadline
CALIBRATION = FedEraserConfig(interval=1, calibration_epochs=2)


def party(identity: Identity) -> Party:
    """A node identity as the product procedure's party."""
    return Party(eth=identity.eth, x25519_private=identity.x25519_private)


def final_model_post(market: Marketplace, task_id: int, rounds: int) -> tuple[str, bytes]:
    """(CID, plaintext digest) of the final model as posted on-chain (round ``rounds + 1``)."""
    for e in market.events(market.market, "ModelPosted", filters={"taskId": task_id}):
        if int(e["args"]["round"]) == rounds + 1:
            return str(e["args"]["cid"]), bytes(e["args"]["digest"])
    raise RuntimeError(f"task {task_id}: no final model posted")


def record_trained_version(
    market: Marketplace, versions: VersionsClient, *, task_id: int, rounds: int,
    requester: Identity, oracles: Sequence[Identity],
) -> int:  # fmt: skip
    """Register the task's retention terms and record the trained model as version 1, attested
    by a quorum of 2 oracles."""
    versions.register_task(requester.eth, task_id, RetentionTerms(
        retention_expiry=market.now() + 365 * 86400, quorum=2, unlearn_window=UNLEARN_WINDOW,
        deposit=10 * TOKEN, miss_penalty=5 * TOKEN,
    ))  # fmt: skip
    cid, digest = final_model_post(market, task_id, rounds)
    number = versions.record_version(requester.eth, task_id, parent=0, reason=Reason.TRAINED,
                                     excludes=0, digest=digest, cid=cid)  # fmt: skip
    for o in oracles[:2]:
        versions.attest_version(o.eth, task_id, number)
    return number


def run_sale_act(
    market: Marketplace, session: TaskSession, *, report: Mapping[str, Any],
    final_model: bytes, spec: ModelSpec, validation: Dataset, requester: Identity,
    oracles: Sequence[Identity], auditors: Sequence[Identity], buyers: Sequence[Identity],
    price: int,
) -> dict[str, Any]:  # fmt: skip
    """Score, audit, list, sell twice, deliver, download (digest checked), pay royalties."""
    client = ModelMarketClient(market.w3, market.deployment)
    tree = PayoutTree.build(entries_of(report), session.leaf_domain)
    outcome = run_product_phase(
        client, session.store, task_id=session.task_id, tree=tree, final_model=final_model,
        model_spec=spec, x_val=validation.x, y_val=validation.y, requester=party(requester),
        oracles=[party(o) for o in oracles], auditors=[party(a) for a in auditors],
        buyers=[party(b) for b in buyers], price=price,
    )  # fmt: skip
    trainer_share = outcome.gross * (10_000 - REQUESTER_BPS - AUDITOR_BPS) // 10_000
    return {
        "listing_id": outcome.listing_id, "score_ppm": outcome.score_ppm,
        "price": price, "sales": outcome.sales, "gross": outcome.gross,
        "auditors": [a.address for a in auditors], "buyers": [b.address for b in buyers],
        "downloads_verified": outcome.downloads_verified,
        "model_digest": "0x" + hashlib.sha256(final_model).hexdigest(),
        "requester_share": outcome.gross * REQUESTER_BPS // 10_000,
        "auditor_share": outcome.gross * AUDITOR_BPS // 10_000,
        "trainer_share": trainer_share,
        "royalties": {a: int(v) for a, v in outcome.royalties.items()},
    }  # fmt: skip


def local_trainer(spec: ModelSpec, train: TrainConfig, data: Mapping[str, Dataset],
                  seed: int) -> LocalTrainer:  # fmt: skip
    """Remaining trainers' calibration training, each on its own data (in-process: a closure)."""

    def run(trainer: str, round: int, start: Weights, epochs: int) -> ClientUpdate:
        config = replace(train, epochs=epochs, seed=derive_seed(seed, "unlearn", trainer, round))
        result = train_local(spec, start, data[trainer], config)
        return ClientUpdate(trainer, result.delta, result.num_samples)

    return run


def run_withdrawal_act(
    market: Marketplace, versions: VersionsClient, *, task_id: int, trained_version: int,
    leaver: Identity, proposer: TaskSession, checkers: Sequence[tuple[TaskSession, Identity]],
    train: LocalTrainer, validation: Dataset, test: Dataset, spec: ModelSpec,
) -> dict[str, Any]:  # fmt: skip
    """Withdraw ``leaver``'s consent, unlearn, record and re-validate the new version."""
    withdrawal = versions.request_withdrawal(leaver.eth, task_id)
    recorded = record_unlearned(proposer, versions, proposer.identity.eth, train=train,
                                config=CALIBRATION)  # fmt: skip
    accuracies = [revalidate(s, versions, o.eth, recorded.number, validation.x, validation.y)
                  for s, o in checkers]  # fmt: skip
    before = versions.version(task_id, trained_version)
    after = versions.version(task_id, recorded.number)
    rounds = int(proposer.info().rounds)
    old_accuracy = evaluate(spec, proposer.global_weights(rounds + 1), test.x, test.y).accuracy
    new_accuracy = evaluate(spec, recorded.result.weights, test.x, test.y).accuracy
    advance_chain_time(market.w3, max(1, withdrawal.deadline - market.now() + 1))
    return {
        "trainer": leaver.address, "withdrawal": withdrawal.number,
        "deadline": withdrawal.deadline, "method": recorded.result.method,
        "first_round": recorded.result.first_round,
        "versions": [
            {"number": before.number, "reason": "trained", "parent": before.parent,
             "digest": "0x" + before.digest.hex(), "validated": before.validated,
             "test_accuracy": round(old_accuracy, 4),
             "sellable_after_deadline": versions.is_sellable(task_id, before.number)},
            {"number": after.number, "reason": "unlearned", "parent": after.parent,
             "digest": "0x" + after.digest.hex(), "validated": after.validated,
             "test_accuracy": round(new_accuracy, 4),
             "validation_accuracy": [round(a, 4) for a in accuracies],
             "excludes": recorded.excludes, "cid": recorded.cid,
             "sellable_after_deadline": versions.is_sellable(task_id, after.number)},
        ],
        "honoured": versions.is_honoured(task_id, withdrawal.number),
    }  # fmt: skip
