"""A peer's part in a consent withdrawal: derive the model without the withdrawn owners, publish
it, record it as a new version, and the committee's re-validation before it attests.

The chain is the record: ``TaskCreated`` gives round 1's model, ``ModelPosted`` the later rounds'
(CID, plaintext digest, poster), ``UpdateCommitted`` every update (CID, envelope digest, samples),
and ``ModelVersions`` the withdrawals and versions. :func:`derive_unlearned` reads that record,
fetches from the content store only what unlearning reads, checks every digest, opens the
envelopes with this peer's key, and runs :func:`marketplace.unlearning.retrain.unlearn` — so
every honest peer that runs it derives the same weights and digest.

Withdrawals ``1..k`` are forgotten together (a version excludes a prefix of them); the parent is
the latest validated version. The new version's bytes are sealed to the task's members that have
not withdrawn (or stored in clear when the task's model is public), with the envelope context's
round set to ``rounds + 1 + k`` so it cannot be confused with a round's model.

Remaining trainers' new local training (calibration rounds) is, here, the :class:`LocalTrainer`
the caller gives: in-process runs (tests, simulations) pass a closure over the trainers' data.
Where every trainer holds its own data, the same steps run over the network:
:mod:`marketplace.protocol.calibration`; :func:`publish_version` records either result.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.versions_client import Reason, VersionsClient
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import ConfigError, DigestMismatchError, FedMarketError
from marketplace.fl.serialization import dump_weights, load_weights
from marketplace.fl.train import evaluate
from marketplace.fl.weights import Weights
from marketplace.protocol.session import ENVELOPE_OVERHEAD, TaskSession
from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import LocalTrainer, StoredHistory
from marketplace.unlearning.retrain import Method, UnlearnResult, unlearn
from marketplace.unlearning.stored import (
    RecordedBlob,
    RecordedUpdate,
    TaskRecord,
    history_from_store,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnlearnedVersion:
    """A version this peer derived and recorded."""

    number: int
    parent: int
    excludes: int  # withdrawals 1..excludes are forgotten
    cid: str
    result: UnlearnResult


def task_record(session: TaskSession) -> tuple[TaskRecord, dict[int, str]]:
    """The task's on-chain record of rounds ``1..R`` and who posted each round's model."""
    market, task_id = session.market, session.task_id
    rounds = int(session.info().rounds)
    models = {
        1: RecordedBlob(
            str(session.created["initialModelCid"]),
            bytes(session.created["initialModelDigest"]),  # type: ignore[call-overload]
        )
    }
    posters: dict[int, str] = {}
    for e in market.events(market.market, "ModelPosted", filters={"taskId": task_id}):
        r = int(e["args"]["round"])
        if r not in models and r <= rounds:  # the contract keeps the first post of a round
            models[r] = RecordedBlob(str(e["args"]["cid"]), bytes(e["args"]["digest"]))
            posters[r] = Web3.to_checksum_address(e["args"]["poster"])
    updates = {
        r: [RecordedUpdate(c.sender, c.cid, c.digest, c.num_samples) for c in session.committed(r)]
        for r in range(1, rounds + 1)
    }
    return TaskRecord(rounds, models, updates), posters


def withdrawn_owners(
    versions: VersionsClient, task_id: int, upto: int | None = None
) -> tuple[int, list[str]]:
    """``(k, trainers)``: withdrawals ``1..k`` (all so far unless ``upto``) and who made them."""
    found = versions.withdrawals(task_id)
    k = len(found) if upto is None else upto
    if k < 1 or k > len(found):
        raise ConfigError(
            f"task {task_id} has {len(found)} withdrawals: nothing to unlearn up to {k}"
        )
    return k, [w.trainer for w in found[:k]]


def history_of(session: TaskSession) -> tuple[StoredHistory, int]:
    """The task's stored rounds as this peer reads them (every digest checked, envelopes opened
    with its key), and the block time the final model was first posted (0: not yet)."""
    record, posters = task_record(session)
    me = session.identity

    def open_update(blob: bytes, round_: int, sender: str) -> bytes:
        ctx = EnvelopeContext(session.chain_id, session.task_id, round_, sender)
        return open_envelope(
            blob, recipient_address=me.address, x25519_private=me.x25519_private,
            expected_context=ctx,
        )  # fmt: skip

    def open_model(blob: bytes, round_: int) -> bytes:
        if round_ == 1 or session.doc.public_model:
            return blob  # the initial model is a seeded init, published in clear
        return open_update(blob, round_, posters[round_])

    history = history_from_store(
        session.store, record, spec=session.weight_spec(), max_bytes=session.doc.max_update_bytes,
        max_total_norm=session.doc.max_update_norm, open_update=open_update,
        open_model=open_model,
    )  # fmt: skip
    final = record.rounds + 1
    market = session.market
    posted_at = 0
    for e in market.events(market.market, "ModelPosted", filters={"taskId": session.task_id}):
        if int(e["args"]["round"]) == final:
            posted_at = int(market.w3.eth.get_block(e["blockNumber"])["timestamp"])
            break
    return history, posted_at


def derive_unlearned(
    session: TaskSession,
    *,
    withdrawn: list[str],
    train: LocalTrainer,
    config: FedEraserConfig | None = None,
    method: Method | Literal["auto"] = "auto",
) -> UnlearnResult:
    """The task's model without ``withdrawn``'s data, from the store and the chain's record,
    every remaining trainer's new training run in this process through ``train``."""
    history, _ = history_of(session)
    return unlearn(
        history, withdrawn=withdrawn, train=train, strategy=session.doc.strategy(),
        epochs=session.doc.train.epochs, config=config, method=method,
    )  # fmt: skip


def _version_context(session: TaskSession, excludes: int, proposer: str) -> EnvelopeContext:
    rounds = int(session.info().rounds)
    return EnvelopeContext(session.chain_id, session.task_id, rounds + 1 + excludes, proposer)


def latest_validated(versions: VersionsClient, task_id: int) -> int:
    """The highest validated version number; :class:`ConfigError` if none is."""
    validated = [v.number for v in versions.versions(task_id) if v.validated]
    if not validated:
        raise ConfigError(
            f"task {task_id} has no validated version: record the trained model and have the "
            "committee attest it first"
        )
    return validated[-1]


def record_unlearned(
    session: TaskSession,
    versions: VersionsClient,
    proposer: LocalAccount,
    *,
    train: LocalTrainer,
    upto: int | None = None,
    config: FedEraserConfig | None = None,
) -> UnlearnedVersion:
    """Derive the model without withdrawals ``1..upto``, publish it, record it (Unlearned)."""
    k, gone = withdrawn_owners(versions, session.task_id, upto)
    result = derive_unlearned(session, withdrawn=gone, train=train, config=config)
    return publish_version(session, versions, proposer, result, excludes=k, withdrawn=gone)


def publish_version(
    session: TaskSession,
    versions: VersionsClient,
    proposer: LocalAccount,
    result: UnlearnResult,
    *,
    excludes: int,
    withdrawn: Sequence[str],
) -> UnlearnedVersion:
    """Store ``result`` (sealed to the members not in ``withdrawn`` unless the task's model is
    public) and record it as the ``Unlearned`` version excluding withdrawals ``1..excludes``,
    child of the latest validated version."""
    task_id, k = session.task_id, excludes
    parent = latest_validated(versions, task_id)
    plain = dump_weights(result.weights)
    if session.doc.public_model:
        cid = session.store.put(plain)
    else:
        gone = set(withdrawn)
        recipients = {a: key for a, key in session.members().recipients().items() if a not in gone}
        blob = seal(
            plain, recipients=recipients, context=_version_context(session, k, proposer.address)
        )
        cid = session.store.put(blob)
    number = versions.record_version(
        proposer, task_id, parent=parent, reason=Reason.UNLEARNED, excludes=k,
        digest=result.digest, cid=cid,
    )  # fmt: skip
    log.info("task %d: recorded version %d (%s, excludes %d)", task_id, number, result.method, k)
    return UnlearnedVersion(number, parent, k, cid, result)


def load_version(session: TaskSession, versions: VersionsClient, number: int) -> Weights:
    """A recorded version's weights: fetched, opened, digest-checked against the record."""
    v = versions.version(session.task_id, number)
    cid = versions.version_cid(session.task_id, number)
    max_bytes = session.doc.max_update_bytes
    blob = session.store.get(cid, max_size=max_bytes + ENVELOPE_OVERHEAD)
    if not session.doc.public_model:
        me = session.identity
        blob = open_envelope(
            blob, recipient_address=me.address, x25519_private=me.x25519_private,
            expected_context=_version_context(session, v.excludes, v.proposer),
        )  # fmt: skip
    actual = hashlib.sha256(blob).digest()
    if not hmac.compare_digest(actual, v.digest):
        raise DigestMismatchError(
            f"version {number} at {cid} hashes to 0x{actual.hex()}, the chain records "
            f"0x{v.digest.hex()}: refusing it"
        )
    return load_weights(blob, spec=session.weight_spec(), max_bytes=max_bytes)


def revalidate(
    session: TaskSession,
    versions: VersionsClient,
    oracle: LocalAccount,
    number: int,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    tolerance: float = 0.05,
) -> float:
    """The committee's re-validation: evaluate the version on the validation set and attest it
    when its accuracy is within ``tolerance`` of the task's trained model; returns the accuracy.

    Raises :class:`FedMarketError` (and does not attest) when the version falls short.
    """
    spec = session.doc.model
    weights = load_version(session, versions, number)
    accuracy = evaluate(spec, weights, x_val, y_val).accuracy
    final = session.global_weights(int(session.info().rounds) + 1)
    reference = evaluate(spec, final, x_val, y_val).accuracy
    if accuracy < reference - tolerance:
        raise FedMarketError(
            f"version {number} scores {accuracy:.4f} on the validation set, more than {tolerance} "
            f"below the trained model's {reference:.4f}: not attesting it"
        )
    versions.attest_version(oracle, session.task_id, number)
    return accuracy
