"""Small updates carried inside their announcement, so a peer needs no IPFS round trip.

An announcement signs ``{chainId, task, round, cid, digest, sender, nonce}``; the update itself is
the envelope whose sha256 is ``digest``. When the envelope is small (at most
:data:`MAX_INLINE_BYTES`), the trainer sends it in the same pubsub message, framed after the
signed announcement::

    MAGIC | len(announcement) (2 bytes, big-endian) | announcement JSON | envelope

The signature does not need to cover the envelope: the signed ``digest`` binds it. A receiver
uses the payload only if it hashes to that digest and if ``cid`` is the CID of exactly those
bytes (:func:`~marketplace.storage.cid.raw_cid`: one raw block, as Kubo adds them), so a peer that
reads the update by CID instead gets the very same bytes and every honest peer aggregates the
same set. The chain's committed digest is compared again when the update is used. The trainer
still adds the envelope to IPFS, for the record and for peers that miss the message.
"""

from __future__ import annotations

import hashlib

from marketplace.errors import DigestMismatchError, SignatureError
from marketplace.storage.cid import CHUNK_SIZE, raw_cid

MAGIC = b"FMUPD1\n"
#: Largest envelope sent inline (one Kubo chunk at most, so its CID is a raw block).
MAX_INLINE_BYTES = 64 * 1024
_LENGTH_BYTES = 2

assert MAX_INLINE_BYTES <= CHUNK_SIZE  # a raw-leaf CID is only defined for one chunk


def pack(announcement: bytes, payload: bytes) -> bytes:
    """One pubsub message: the signed announcement's wire form followed by the envelope."""
    if len(payload) > MAX_INLINE_BYTES:
        raise SignatureError(
            f"inline payload of {len(payload)} bytes exceeds {MAX_INLINE_BYTES}: "
            "announce the CID alone"
        )
    if len(announcement) >= 1 << (8 * _LENGTH_BYTES):
        raise SignatureError(f"announcement of {len(announcement)} bytes cannot be framed")
    return MAGIC + len(announcement).to_bytes(_LENGTH_BYTES, "big") + announcement + payload


def unpack(message: bytes) -> tuple[bytes, bytes | None]:
    """``(announcement, payload)`` of a message; ``payload`` is ``None`` for a bare announcement.

    Raises :class:`SignatureError` for a truncated frame. The payload's size is the caller's to
    bound (:data:`MAX_INLINE_BYTES`).
    """
    if not message.startswith(MAGIC):
        return message, None
    head = len(MAGIC) + _LENGTH_BYTES
    if len(message) < head:
        raise SignatureError("malformed inline update: truncated frame")
    size = int.from_bytes(message[len(MAGIC) : head], "big")
    if len(message) < head + size:
        raise SignatureError("malformed inline update: truncated announcement")
    return message[head : head + size], message[head + size :]


def check_payload(payload: bytes, *, cid: str, digest: bytes) -> None:
    """Refuse an inline payload that is not exactly the announced update.

    Raises :class:`DigestMismatchError` when its sha256 is not ``digest`` or its CID is not
    ``cid`` (a sender must not show peers other bytes than the ones stored under the CID).
    """
    actual = hashlib.sha256(payload).digest()
    if actual != digest:
        raise DigestMismatchError(
            f"inline payload hashes to {actual.hex()[:16]}…, announced {digest.hex()[:16]}…"
        )
    if raw_cid(payload) != cid:
        raise DigestMismatchError(f"inline payload is not the content of {cid}")
