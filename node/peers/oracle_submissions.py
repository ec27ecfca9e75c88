"""The oracle's step after training: evaluate the task's validation submissions.

For each submission on ``ModelMarket`` (submission 1 is the task's final aggregate, posted by the
requester; later ones are developers'), a committee member fetches the model sealed to it, checks
it against the on-chain digest, scores it on the committed validation set (a deterministic ppm,
:func:`marketplace.protocol.model_evaluation.evaluate_submission`) and commits, then reveals, the
score. The ``(score, salt)`` pair is journaled *before* the commitment is sent, so a restarted
oracle reveals what it committed. Committing reserves the task's ``oracleSlash`` of the member's
registry stake; once the submission is resolved the member settles every committee member's
evaluation stake: released for a member that revealed (whatever it revealed: dissent is not
slashable, there is no arbiter over submissions), slashed for one that committed and did not
reveal by the reveal deadline.

A model that does not match its digest, fails to open or fails validation scores 0 (the chain
keeps the CID as evidence); content not yet served is transient and retried by the run loop.
"""

from __future__ import annotations

import secrets
from typing import Any

from marketplace.chain.model_market_client import ModelMarketClient
from marketplace.errors import (
    CryptoError,
    DigestMismatchError,
    FedMarketError,
    InvalidUpdateError,
    TransactionRevertedError,
)
from marketplace.protocol.model_evaluation import evaluate_submission, fetch_submission
from marketplace.protocol.session import open_validation_set
from node.peers.base import Peer, Step

EVAL_STEP = "evaluation"  # journal step; its round is the submission number
PRODUCT_CONTRACT = "ModelMarket"
# A settlement another committee member (or anyone) sent first.
ALREADY_SETTLED = "ModelMarketNothingToSettle"


def evaluate_submissions(peer: Peer) -> Step | None:
    """The one next thing ``peer`` (a committee member) owes the task's submissions: an
    evaluation to commit or reveal, a stake to settle; a waiting step while the committee is
    still committing or revealing; ``None`` when nothing is owed (or the task has no product)."""
    s = peer.session
    if PRODUCT_CONTRACT not in s.market.deployment.contracts:
        return None
    client = ModelMarketClient(s.market.w3, s.market.deployment)
    product = client.product(s.task_id)
    if not product.configured:
        return None
    waiting: Step | None = None
    for sub in range(1, product.submission_count + 1):
        step = _own_evaluation(peer, client, sub) or _settle_one(peer, client, sub)
        if step is not None and not step.is_waiting:
            return step
        waiting = waiting or step
    return waiting


def _own_evaluation(peer: Peer, client: ModelMarketClient, sub: int) -> Step | None:
    """Commit or reveal this member's evaluation of ``sub``; ``None`` when it has nothing to do."""
    s = peer.session
    tid = s.task_id
    info = client.submission(tid, sub)
    mine = client.evaluation_of(tid, sub, peer.me)
    now = s.market.now()
    if not mine.committed:
        if now > info.commit_deadline:
            return None  # missed: nothing to reveal, nothing to settle for itself
        chosen = _chosen(peer, client, sub)
        client.commit_evaluation(
            peer.account, tid, sub, int(chosen["score"]), bytes.fromhex(str(chosen["salt"]))
        )
        return Step.acted(f"committed its evaluation of submission {sub}")
    if mine.revealed or now > info.reveal_deadline:
        return None
    if now <= info.commit_deadline and info.commit_count < s.info().committee_size:
        return Step.waiting(f"waiting for the committee to commit on submission {sub}")
    recorded = peer.journal.get(tid, sub, EVAL_STEP)
    if recorded is None:
        raise FedMarketError(
            f"task {tid}: committed an evaluation of submission {sub} but the journal lost its "
            "salt, so this oracle cannot reveal; restore the node's journal"
        )
    client.reveal_evaluation(
        peer.account, tid, sub, int(recorded["score"]), bytes.fromhex(str(recorded["salt"]))
    )
    return Step.acted(f"revealed {recorded['score']} ppm for submission {sub}")


def _chosen(peer: Peer, client: ModelMarketClient, sub: int) -> dict[str, Any]:
    """The score and salt this member commits for ``sub`` (chosen once, journaled)."""
    s = peer.session
    recorded = peer.journal.get(s.task_id, sub, EVAL_STEP)
    if recorded is not None:
        return recorded
    score = score_submission(peer, client, sub)
    return peer.journal.record_once(
        s.task_id, sub, EVAL_STEP, {"score": score, "salt": secrets.token_bytes(32).hex()}
    )


def score_submission(peer: Peer, client: ModelMarketClient, sub: int) -> int:
    """``sub``'s validation accuracy in ppm, or 0 for a model that fails its digest or checks."""
    s = peer.session
    x_val, y_val = open_validation_set(s)  # refuses a set that does not match the commitment
    try:
        blob = fetch_submission(
            client, s.store, task_id=s.task_id, submission=sub, member=peer.me,
            x25519_private=s.identity.x25519_private,
        )  # fmt: skip
        return evaluate_submission(s.doc.model, blob, x_val, y_val)
    except (DigestMismatchError, CryptoError, InvalidUpdateError):
        return 0


def _settle_one(peer: Peer, client: ModelMarketClient, sub: int) -> Step | None:
    """Settle one committee member's evaluation stake on ``sub`` once that is final; a waiting
    step while a committed member's outcome is still open."""
    s = peer.session
    tid = s.task_id
    info = client.submission(tid, sub)
    past_reveal = s.market.now() > info.reveal_deadline
    pending: Step | None = None
    for oracle in s.members().oracles:
        vote = client.evaluation_of(tid, sub, oracle)
        if not vote.committed or vote.settled:
            continue
        if not past_reveal and not (vote.revealed and info.decided):
            pending = Step.waiting(f"waiting for submission {sub}'s reveal window to close")
            continue
        try:
            client.settle_evaluation(peer.account, tid, sub, oracle)
        except TransactionRevertedError as exc:
            if exc.error_name != ALREADY_SETTLED:
                raise
            continue
        what = "released" if vote.revealed else "slashed"  # ModelMarket slashes silence only
        return Step.acted(f"{what} {oracle}'s evaluation stake on submission {sub}")
    return pending
