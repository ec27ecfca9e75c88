"""What an auditor receives: the submitted model and the validation set, sealed to it.

The requester (who holds the validation set) seals one envelope to the task's auditors, with the
context ``(chain id, task id, round = submission, sender = requester)``; its payload is the model
(length-prefixed) and the validation set in its canonical encoding
(:func:`marketplace.fl.data.canonical_bytes`, whose sha256 is the task's on-chain
``validationCommitment``). The auditor checks the model against the submission's on-chain digest
and the validation set against that commitment (``ModelMarketClient.validation_commitment``)
before auditing, then signs its attestation (``ModelMarketClient.sign_attestation``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import CryptoError, DigestMismatchError

_LEN = struct.Struct(">Q")


@dataclass(frozen=True)
class AuditPackage:
    """The model and the validation set an auditor works on."""

    model: bytes
    validation: bytes

    def to_bytes(self) -> bytes:
        return _LEN.pack(len(self.model)) + self.model + self.validation

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditPackage:
        if len(data) < _LEN.size:
            raise CryptoError("audit package truncated")
        (n,) = _LEN.unpack_from(data)
        if n > len(data) - _LEN.size:
            raise CryptoError("audit package truncated: model length beyond the payload")
        return cls(model=data[_LEN.size : _LEN.size + n], validation=data[_LEN.size + n :])


def audit_context(chain_id: int, task_id: int, submission: int, requester: str) -> EnvelopeContext:
    """The context of an audit package (``round`` carries the submission number)."""
    return EnvelopeContext(chain_id=chain_id, task_id=task_id, round=submission, sender=requester)


def seal_audit_package(
    package: AuditPackage, *, auditors: Mapping[str, bytes], context: EnvelopeContext
) -> bytes:
    """The package sealed to each auditor's X25519 key (``address -> raw public key``)."""
    return seal(package.to_bytes(), recipients=auditors, context=context)


def open_audit_package(
    blob: bytes,
    *,
    auditor: str,
    x25519_private: X25519PrivateKey,
    context: EnvelopeContext,
    model_digest: bytes,
    validation_commitment: bytes,
) -> AuditPackage:
    """Open a package and check both parts against their on-chain digests."""
    package = AuditPackage.from_bytes(
        open_envelope(
            blob, recipient_address=auditor, x25519_private=x25519_private, expected_context=context
        )
    )
    if hashlib.sha256(package.model).digest() != model_digest:
        raise DigestMismatchError("the audited model is not the submission's: refuse to attest")
    if hashlib.sha256(package.validation).digest() != validation_commitment:
        raise DigestMismatchError(
            "the validation set does not match the task's commitment: refuse to attest"
        )
    return package
