"""The demo's last acts, after claims: the model is audited, listed and sold with royalties to
its trainers; then one data owner withdraws consent and the network unlearns its data.

* **Sale** (:func:`run_sale_act`): the trained model is recorded as version 1 and attested by the
  committee; the library's product procedure runs (committee score, two auditors attest, listing,
  two buyers pay, the key holder delivers, each buyer downloads and checks the digest, every
  trainer's royalties are claimed with its payout leaf).
* **Withdrawal** (:func:`run_withdrawal_act`): an honest data owner withdraws consent on-chain;
  the remaining trainers' nodes run the calibration rounds together over the chain and the store
  (:mod:`marketplace.protocol.calibration`: FedEraser-style, one calibration round per stored
  round, or retraining when that is no dearer), each on its own data, and one records the result
  as version 2; the oracles derive the same digest themselves, re-validate and attest it. After
  the withdrawal's deadline only version 2 is sellable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from marketplace.chain.clients import Marketplace
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.model_market_client import ModelMarketClient
from marketplace.chain.versions_client import Reason, RetentionTerms, VersionsClient
from marketplace.fl import Dataset, ModelSpec, evaluate
from marketplace.protocol.identity import Identity
from marketplace.protocol.product_flow import Party, run_product_phase
from marketplace.protocol.published_report import entries_of
from marketplace.protocol.session import TaskSession
from marketplace.protocol.withdrawal import load_version
from marketplace.valuation.merkle import PayoutTree
from node.peers.base import Peer, Step
from node.peers.oracle import OracleNode
from node.peers.oracle_versions import VERSION_STEP
from node.peers.unlearner import UnlearningNode

log = logging.getLogger(__name__)

TOKEN = 10**18
REQUESTER_BPS, AUDITOR_BPS = 1000, 500  # the listing's shares (run_product_phase fixes them)
UNLEARN_WINDOW = 600  # seconds from a withdrawal to its deadline


def party(identity: Identity) -> Party:
    """A node identity as the product procedure's party."""
    return Party(eth=identity.eth, x25519_private=identity.x25519_private)


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
    cid, digest = market.final_model_post(task_id, rounds)
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


def run_withdrawal_act(
    market: Marketplace, versions: VersionsClient, *, task_id: int, trained_version: int,
    leaver: Identity, unlearners: Sequence[UnlearningNode], oracles: Sequence[OracleNode],
    test: Dataset, spec: ModelSpec, max_iterations: int = 200,
) -> dict[str, Any]:  # fmt: skip
    """Withdraw ``leaver``'s consent; the remaining trainers' ``unlearners`` run the calibration
    rounds over the chain and the store (as `fedmarket data unlearn` does, each on its own data)
    and record the new version; the committee's ``oracles`` derive it themselves, re-validate and
    attest it (as `oracle run` does)."""
    withdrawal = versions.request_withdrawal(leaver.eth, task_id)
    # The oracles' other duties are over (the task is finalized and settled): step only their
    # re-validation, which is what `oracle run` comes to after them.
    turns: list[tuple[Peer, Callable[[], Step | None]]] = [
        *((u, u.step) for u in unlearners), *((o, o.unlearning.step) for o in oracles),
    ]  # fmt: skip
    steps: list[Step] = []
    for _ in range(max_iterations):
        if versions.state(task_id).excluded_count >= withdrawal.number:
            break
        steps = []
        for peer, turn in turns:
            step = turn() or Step.done("nothing owed")
            log.info("%s %s: %s", peer.role, peer.me, step.action)
            steps.append(step)
        if all(step.is_waiting for step in steps):  # a silent trainer: let its deadline pass
            advance_chain_time(market.w3, int(market.task(task_id).round_duration) + 1)
    else:
        last = "; ".join(sorted({s.action for s in steps}))
        raise RuntimeError(f"the unlearning did not finish; the peers' last steps: {last}")
    observer = unlearners[0].session
    (recorded,) = [
        v for v in versions.versions(task_id)
        if v.reason == Reason.UNLEARNED and v.excludes == withdrawal.number
    ]  # fmt: skip
    run = unlearners[0]._run  # the plan every peer ran (all of them derived the same digest)
    accuracies = [
        float(entry["accuracy"])
        for o in oracles
        if (entry := o.journal.get(task_id, recorded.number, VERSION_STEP)) and "accuracy" in entry
    ]
    before = versions.version(task_id, trained_version)
    rounds = int(observer.info().rounds)
    old_accuracy = evaluate(spec, observer.global_weights(rounds + 1), test.x, test.y).accuracy
    new_weights = load_version(observer, versions, recorded.number)
    new_accuracy = evaluate(spec, new_weights, test.x, test.y).accuracy
    advance_chain_time(market.w3, max(1, withdrawal.deadline - market.now() + 1))
    return {
        "trainer": leaver.address, "withdrawal": withdrawal.number,
        "deadline": withdrawal.deadline, "method": run.plan.method if run else "?",
        "first_round": run.plan.first_round if run else 0,
        "calibration_rounds": (
            [{"round": st.step.round, "participants": list(st.participants)}
             for st in run.status()] if run else []
        ),
        "versions": [
            {"number": before.number, "reason": "trained", "parent": before.parent,
             "digest": "0x" + before.digest.hex(), "validated": before.validated,
             "test_accuracy": round(old_accuracy, 4),
             "sellable_after_deadline": versions.is_sellable(task_id, before.number)},
            {"number": recorded.number, "reason": "unlearned", "parent": recorded.parent,
             "digest": "0x" + recorded.digest.hex(), "validated": recorded.validated,
             "test_accuracy": round(new_accuracy, 4),
             "validation_accuracy": [round(a, 4) for a in accuracies],
             "excludes": recorded.excludes,
             "cid": versions.version_cid(task_id, recorded.number),
             "sellable_after_deadline": versions.is_sellable(task_id, recorded.number)},
        ],
        "honoured": versions.is_honoured(task_id, withdrawal.number),
    }  # fmt: skip
