"""Encrypted envelopes: only listed recipients open them; any tampering is a CryptoError."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_private
from marketplace.crypto.envelope import (
    MIN_SEGMENT_SIZE,
    TAG_SIZE,
    EnvelopeContext,
    open_envelope,
    open_stream,
    parse_header,
    seal,
    seal_stream,
)
from marketplace.errors import CryptoError

SEG = MIN_SEGMENT_SIZE  # small segments so a few KB exercise multi-segment paths


def open_as(blob: bytes, reader: tuple[str, X25519PrivateKey], ctx: EnvelopeContext) -> bytes:
    address, key = reader
    return open_envelope(blob, recipient_address=address, x25519_private=key, expected_context=ctx)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG])
def test_every_recipient_opens_what_was_sealed(recipients, context, size) -> None:
    # Prepare
    plaintext = os.urandom(size)
    # Execute
    blob = seal(plaintext, recipients=recipients, context=context, segment_size=SEG)
    # Assert
    for i in (2, 3, 4):
        reader = (Account.from_key(DEV_PRIVATE_KEYS[i]).address, dev_x25519_private(i))
        assert open_as(blob, reader, context) == plaintext


def test_streamed_seal_and_open_agree_with_whole_bytes_forms(recipients, reader, context) -> None:
    # Prepare
    plaintext = os.urandom(7 * SEG + 123)
    pieces = [plaintext[i : i + 1000] for i in range(0, len(plaintext), 1000)]
    # Execute
    streamed = b"".join(
        seal_stream(pieces, recipients=recipients, context=context, segment_size=SEG)
    )
    whole = seal(plaintext, recipients=recipients, context=context, segment_size=SEG)
    opened_stream = b"".join(
        open_stream(
            [streamed[i : i + 777] for i in range(0, len(streamed), 777)],
            recipient_address=reader[0], x25519_private=reader[1], expected_context=context,
        )
    )  # fmt: skip
    # Assert: same length layout (keys differ per envelope), both open to the plaintext
    assert len(streamed) == len(whole)
    assert open_as(streamed, reader, context) == plaintext
    assert opened_stream == plaintext


def test_envelope_size_is_header_plus_one_tag_per_segment(recipients, context) -> None:
    # Prepare
    plaintext = b"x" * (3 * SEG)
    # Execute
    blob = seal(plaintext, recipients=recipients, context=context, segment_size=SEG)
    # Assert
    assert len(blob) == parse_header(blob).length + len(plaintext) + 3 * TAG_SIZE


def test_non_recipient_cannot_open(recipients, context) -> None:
    # Prepare
    blob = seal(b"secret update", recipients=recipients, context=context)
    outsider = (Account.from_key(DEV_PRIVATE_KEYS[9]).address, dev_x25519_private(9))
    # Execute / Assert
    with pytest.raises(CryptoError, match=f"{outsider[0]} is not a recipient"):
        open_as(blob, outsider, context)


def test_recipient_address_with_someone_elses_key_cannot_open(recipients, reader, context) -> None:
    # Prepare
    blob = seal(b"secret update", recipients=recipients, context=context)
    impostor = (reader[0], dev_x25519_private(9))
    # Execute / Assert
    with pytest.raises(CryptoError, match="cannot unwrap the content key"):
        open_as(blob, impostor, context)


@pytest.mark.parametrize("where", ["header", "wrapped key", "first segment", "last tag"])
def test_flipping_one_bit_anywhere_is_detected(recipients, reader, context, where) -> None:
    # Prepare
    blob = bytearray(
        seal(os.urandom(3 * SEG), recipients=recipients, context=context, segment_size=SEG)
    )
    header_len = parse_header(blob).length
    wrapped_at = blob.index(b'"wrapped_key":"') + len('"wrapped_key":"')
    offset = {
        "header": blob.index(b'"nonce_prefix":"') + len('"nonce_prefix":"'),
        "wrapped key": wrapped_at,
        "first segment": header_len + 10,
        "last tag": len(blob) - 1,
    }[where]
    if where in ("first segment", "last tag"):
        blob[offset] ^= 0x01
    else:  # inside hex text: another hex digit, so the header still parses
        blob[offset] = ord("0") if blob[offset] != ord("0") else ord("1")
    # Execute / Assert
    with pytest.raises(CryptoError):
        open_as(bytes(blob), reader, context)


def test_truncated_envelope_is_refused(recipients, reader, context) -> None:
    # Prepare: cut exactly at a segment boundary, where only the final-segment flag can tell
    blob = seal(os.urandom(3 * SEG), recipients=recipients, context=context, segment_size=SEG)
    cut = parse_header(blob).length + 2 * (SEG + TAG_SIZE)
    # Execute / Assert
    with pytest.raises(CryptoError, match="segment 1 failed authentication"):
        open_as(blob[:cut], reader, context)
    with pytest.raises(CryptoError, match="truncated envelope"):
        open_as(blob[:20], reader, context)


def test_appended_bytes_are_refused(recipients, reader, context) -> None:
    # Prepare
    blob = seal(os.urandom(SEG), recipients=recipients, context=context, segment_size=SEG)
    # Execute / Assert
    with pytest.raises(CryptoError, match="failed authentication"):
        open_as(blob + b"\x00" * 40, reader, context)


def test_truncated_stream_is_refused(recipients, reader, context) -> None:
    # Prepare
    blob = seal(os.urandom(3 * SEG), recipients=recipients, context=context, segment_size=SEG)
    cut = parse_header(blob).length + 2 * (SEG + TAG_SIZE)
    # Execute / Assert
    with pytest.raises(CryptoError, match="failed authentication"):
        list(open_stream([blob[:cut]], recipient_address=reader[0], x25519_private=reader[1],
                         expected_context=context))  # fmt: skip


@pytest.mark.parametrize("field", ["chain_id", "task_id", "round"])
def test_envelope_for_another_chain_task_or_round_is_refused(
    recipients, reader, context, field
) -> None:
    # Prepare
    blob = seal(b"round-3 update", recipients=recipients, context=context)
    elsewhere = dataclasses.replace(context, **{field: getattr(context, field) + 1})
    # Execute / Assert
    with pytest.raises(CryptoError, match="replayed or misrouted"):
        open_as(blob, reader, elsewhere)


def test_rewriting_the_header_context_breaks_authentication(recipients, reader, context) -> None:
    # Prepare: an attacker rewrites round 3 → 4 in the header and opens with round 4 expected
    blob = seal(b"round-3 update", recipients=recipients, context=context)
    forged = blob.replace(b'"round":3', b'"round":4')
    # Execute / Assert
    with pytest.raises(CryptoError, match="failed authentication"):
        open_as(forged, reader, dataclasses.replace(context, round=4))


def test_malformed_blobs_are_refused_with_crypto_error(reader, context) -> None:
    # Prepare
    bad_version = b"FMENV\x09" + b"\x00\x00\x00\x02{}"
    bad_json = b"FMENV\x01" + b"\x00\x00\x00\x03{x}"
    not_object = b"FMENV\x01" + b"\x00\x00\x00\x02[]"
    # Execute / Assert
    with pytest.raises(CryptoError, match="bad magic"):
        open_as(b"PK\x03\x04" + b"\x00" * 40, reader, context)
    with pytest.raises(CryptoError, match="unsupported envelope version 9"):
        open_as(bad_version, reader, context)
    with pytest.raises(CryptoError, match="not JSON"):
        open_as(bad_json, reader, context)
    with pytest.raises(CryptoError, match="not a JSON object"):
        open_as(not_object, reader, context)


def test_a_header_nested_deep_is_refused_not_a_crash(reader, context) -> None:
    # 200 KiB of "[" (under the 256 KiB header cap): json.loads would overflow the C stack of a
    # process that imported web3 (py_ecc raises the recursion limit to 100,000) and kill it.
    import marketplace.chain.sourcing_client  # noqa: F401  (web3, py_ecc: the real recursion limit)

    body = b"[" * 200_000
    blob = b"FMENV\x01" + len(body).to_bytes(4, "big") + body
    with pytest.raises(CryptoError, match="nests deeper"):
        open_as(blob, reader, context)


def test_header_missing_a_field_is_refused(recipients, reader, context) -> None:
    # Prepare
    blob = seal(b"x", recipients=recipients, context=context)
    header = parse_header(blob)
    obj = json.loads(blob[10 : header.length])
    del obj["segment_size"]
    body = json.dumps(obj).encode()
    forged = b"FMENV\x01" + len(body).to_bytes(4, "big") + body + blob[header.length :]
    # Execute / Assert
    with pytest.raises(CryptoError, match="'segment_size' missing"):
        open_as(forged, reader, context)


def test_sealing_for_nobody_or_a_bad_key_is_refused(context) -> None:
    # Execute / Assert
    with pytest.raises(CryptoError, match="at least one recipient"):
        seal(b"x", recipients={}, context=context)
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        seal(b"x", recipients={context.sender: b"\x01" * 31}, context=context)
    with pytest.raises(CryptoError, match="not an Ethereum address"):
        seal(b"x", recipients={"0x123": b"\x01" * 32}, context=context)
    with pytest.raises(CryptoError, match="low order"):
        seal(b"x", recipients={context.sender: b"\x00" * 32}, context=context)


@pytest.mark.parametrize("size", [0, SEG, 3 * SEG, 3 * SEG + 5])
@pytest.mark.parametrize("piece", [1000, SEG, 2 * SEG + 1, 10**9])
def test_seal_stream_handles_any_chunking(recipients, reader, context, size, piece) -> None:
    # Prepare
    plaintext = os.urandom(size)
    pieces = [plaintext[i : i + piece] for i in range(0, size, piece)]
    # Execute
    blob = b"".join(seal_stream(pieces, recipients=recipients, context=context, segment_size=SEG))
    # Assert: the same layout as seal() (segment count and final flag), and it opens
    assert len(blob) == len(
        seal(plaintext, recipients=recipients, context=context, segment_size=SEG)
    )
    assert open_as(blob, reader, context) == plaintext
