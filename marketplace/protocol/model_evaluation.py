"""The committee's evaluation of a validation submission: a deterministic score in ppm.

Every committee member loads the submitted weights (safetensors, checked against the task's model
spec: names, shapes, dtypes, finite values), runs them on the hidden validation set on the CPU and
scores the accuracy as an exact fraction ``correct / n`` rounded half-to-even to parts per million,
so honest members commit the same integer and the contract's quorum rule can decide.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from marketplace.chain.model_market_client import ZERO_ADDRESS, ModelMarketClient
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import ChainError, ConfigError, DigestMismatchError
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.serialization import WeightSpec, load_weights
from marketplace.fl.train import predict_logits, torch_settings
from marketplace.fl.weights import check_finite
from marketplace.storage.base import ContentStore
from marketplace.valuation.quantize import fraction_to_ppm

MAX_MODEL_BYTES = 512 * 1024 * 1024


def evaluate_submission(
    model_spec: ModelSpec,
    blob: bytes,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    expected_digest: bytes | None = None,
) -> int:
    """Validation accuracy of a submitted model, in ppm (round half to even on the exact ratio).

    Parameters
    ----------
    model_spec : ModelSpec
        The task's architecture; the weights must match its layout exactly.
    blob : bytes
        The submitted weights (safetensors, already decrypted).
    x_val, y_val : arrays
        The hidden validation set.
    expected_digest : bytes, optional
        The submission's on-chain digest; checked before anything is parsed.
    """
    if expected_digest is not None and hashlib.sha256(blob).digest() != expected_digest:
        raise DigestMismatchError(
            "the submitted model does not hash to its on-chain digest: score it 0 and report it"
        )
    y = np.asarray(y_val, dtype=np.int64)
    if y.shape[0] == 0:
        raise ConfigError("the validation set is empty: the committee cannot score a submission")
    spec = WeightSpec.from_module(build_model(model_spec))
    weights = load_weights(blob, spec=spec, max_bytes=MAX_MODEL_BYTES)
    check_finite(weights, what="submitted model")
    with torch_settings(1):
        pred = predict_logits(model_spec, weights, x_val).argmax(dim=1)
    correct = int((pred == torch.as_tensor(y)).sum())
    return fraction_to_ppm(Fraction(correct, int(y.shape[0])))


def commit_and_reveal_evaluation(
    client: ModelMarketClient,
    oracles: Sequence[LocalAccount],
    task_id: int,
    submission: int,
    score_ppm: int,
) -> None:
    """Each of ``oracles`` commits ``score_ppm`` for the submission, then reveals it (the reveal is
    allowed at once when the whole committee committed, else after the commit window); once the
    score is decided each settles its evaluation stake (released: it revealed the quorum score)."""
    salts = [secrets.token_bytes(32) for _ in oracles]
    for oracle, salt in zip(oracles, salts, strict=True):
        client.commit_evaluation(oracle, task_id, submission, score_ppm, salt)
    for oracle, salt in zip(oracles, salts, strict=True):
        client.reveal_evaluation(oracle, task_id, submission, score_ppm, salt)
    if client.submission(task_id, submission).decided:  # free their evaluation stake
        for oracle in oracles:
            client.settle_evaluation(oracle, task_id, submission, oracle.address)


def submission_context(chain_id: int, task_id: int, developer: str) -> EnvelopeContext:
    """The envelope context a developer seals its submission under (round 0: after training)."""
    return EnvelopeContext(chain_id=chain_id, task_id=task_id, round=0, sender=developer)


def seal_submission(
    blob: bytes, *, recipients: Mapping[str, bytes], chain_id: int, task_id: int, developer: str
) -> bytes:
    """A submission sealed to the committee's X25519 keys (``address -> raw public key``)."""
    return seal(
        blob, recipients=recipients, context=submission_context(chain_id, task_id, developer)
    )


def fetch_submission(
    client: ModelMarketClient,
    store: ContentStore,
    *,
    task_id: int,
    submission: int,
    member: str,
    x25519_private: X25519PrivateKey,
) -> bytes:
    """A committee member's copy of a submission: its CID from the ``ModelSubmitted`` event, the
    envelope opened with the member's key, the plaintext checked against the on-chain digest."""
    info = client.submission(task_id, submission)
    if info.developer == ZERO_ADDRESS:
        raise ChainError(f"task {task_id} has no submission {submission}")
    events = client.contract.events.ModelSubmitted().get_logs(
        from_block=client.deployment.block,
        argument_filters={"taskId": task_id, "submission": submission},
    )
    if not events:
        raise ChainError(f"no ModelSubmitted event for task {task_id} submission {submission}")
    cid = str(events[0]["args"]["modelCid"])
    blob = open_envelope(
        store.get(cid, max_size=MAX_MODEL_BYTES + 1024 * 1024),
        recipient_address=member,
        x25519_private=x25519_private,
        expected_context=submission_context(client.chain_id, task_id, info.developer),
    )
    if hashlib.sha256(blob).digest() != info.digest:
        raise DigestMismatchError(
            f"submission {submission} of task {task_id} does not hash to its on-chain digest: "
            "score it 0 and keep the CID as evidence"
        )
    return blob
