"""Encrypted envelopes: one payload, readable only by the listed recipients.

Layout (version 1)::

    b"FMENV" | version (1 byte) | header length (4 bytes, big-endian) | header (canonical JSON)
    | segment 0 | segment 1 | ... | segment n-1

The header names the context (chain id, task id, round, sender), the segment size, a nonce prefix
and, for each recipient, an ephemeral X25519 public key and the content key wrapped for it
(X25519 → HKDF-SHA256 → AES-256-GCM). The payload is encrypted with a fresh AES-256-GCM content
key in segments of ``segment_size`` bytes (the STREAM construction): segment ``i`` uses the nonce
``prefix(7) | i (4, big-endian) | last (1)`` and, as associated data, the sha256 of everything
before the first segment. So a change anywhere in the header (context, recipients, wrapped keys)
or in any segment, reordering, truncation at a segment boundary, or appended bytes all fail
authentication.

Segments let :func:`seal_stream` and :func:`open_stream` work in constant memory on payloads of any
size; :func:`seal` and :func:`open_envelope` are the whole-bytes forms.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_utils.address import is_address

from marketplace.errors import CryptoError
from marketplace.jsonlimits import shallow_json
from marketplace.units import checksum_address

MAGIC = b"FMENV"
VERSION = 1
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MIN_SEGMENT_SIZE = 4096
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
MAX_RECIPIENTS = 1024
MAX_HEADER_BYTES = 256 * 1024
TAG_SIZE = 16
_PREFIX = struct.Struct(">5sBI")  # magic, version, header length
_WRAP_INFO = b"fedmarket/envelope/v1/key-wrap"
_WRAP_NONCE = bytes(
    12
)  # each wrapping key is used once (fresh ephemeral key), so a fixed nonce is safe


@dataclass(frozen=True)
class EnvelopeContext:
    """What an envelope is for; bound into its authentication, checked on opening."""

    chain_id: int
    task_id: int
    round: int
    sender: str

    def __post_init__(self) -> None:
        for name in ("chain_id", "task_id", "round"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
                raise CryptoError(f"EnvelopeContext.{name} must be a uint256, got {value!r}")
        object.__setattr__(self, "sender", _address(self.sender, "sender"))

    def describe(self) -> str:
        return f"chain {self.chain_id} task {self.task_id} round {self.round} from {self.sender}"


def _address(value: object, what: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise CryptoError(f"{what} is not an Ethereum address: {value!r}")
    return checksum_address(value)


def _public_raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _kek(shared: bytes, epk: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=epk + recipient_public, info=_WRAP_INFO
    ).derive(shared)


def _wrap_aad(address: str) -> bytes:
    return _WRAP_INFO + b"|" + address.encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 2**32:
        raise CryptoError("payload too large for one envelope (2**32 segments): split it")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _build_header(
    recipients: Mapping[str, bytes], context: EnvelopeContext, segment_size: int
) -> tuple[bytes, bytes, bytes]:
    """``(prefix_bytes, content_key, nonce_prefix)`` for a new envelope."""
    if not recipients:
        raise CryptoError("an envelope needs at least one recipient")
    if len(recipients) > MAX_RECIPIENTS:
        raise CryptoError(f"{len(recipients)} recipients exceed the limit of {MAX_RECIPIENTS}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise CryptoError(
            f"segment_size {segment_size} outside {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}"
        )
    content_key = AESGCM.generate_key(bit_length=256)
    nonce_prefix = secrets.token_bytes(7)
    entries = []
    for raw_address, public in recipients.items():
        address = _address(raw_address, "recipient")
        if not isinstance(public, bytes | bytearray) or len(public) != 32:
            raise CryptoError(f"X25519 public key of {address} must be 32 bytes")
        ephemeral = X25519PrivateKey.generate()
        epk = _public_raw(ephemeral.public_key())
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
        except ValueError:
            raise CryptoError(f"X25519 public key of {address} is invalid (low order)") from None
        wrapped = AESGCM(_kek(shared, epk, bytes(public))).encrypt(
            _WRAP_NONCE, content_key, _wrap_aad(address)
        )
        entries.append({"address": address, "epk": epk.hex(), "wrapped_key": wrapped.hex()})
    entries.sort(key=lambda e: e["address"].lower())
    if len({e["address"] for e in entries}) != len(entries):
        raise CryptoError("a recipient is listed twice (addresses differ only in case)")
    header = {
        "chain_id": context.chain_id,
        "task_id": context.task_id,
        "round": context.round,
        "sender": context.sender,
        "segment_size": segment_size,
        "nonce_prefix": nonce_prefix.hex(),
        "recipients": entries,
    }
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER_BYTES:
        raise CryptoError(f"envelope header of {len(body)} bytes exceeds {MAX_HEADER_BYTES}")
    return _PREFIX.pack(MAGIC, VERSION, len(body)) + body, content_key, nonce_prefix


def seal_stream(
    chunks: Iterable[bytes | memoryview],
    *,
    recipients: Mapping[str, bytes],
    context: EnvelopeContext,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Iterator[bytes]:
    """Encrypt the concatenation of ``chunks``; yields the envelope in pieces (header first).

    ``recipients`` maps each reader's address to its 32-byte X25519 public key (as registered
    on-chain). Memory use is about two segments whatever the payload size.
    """
    prefix, key, nonce_prefix = _build_header(recipients, context, segment_size)
    aad = hashlib.sha256(prefix).digest()
    aead = AESGCM(key)
    yield prefix
    # One full segment is held back until more input shows it is not the last. Full segments are
    # views into the caller's chunks (no copy), so chunks must not be mutated once yielded.
    held: memoryview | bytes | None = None
    partial = bytearray()
    index = 0

    def emit(segment: memoryview | bytes | bytearray, last: bool) -> bytes:
        nonlocal index
        out = aead.encrypt(_nonce(nonce_prefix, index, last), segment, aad)
        index += 1
        return out

    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if partial:
            need = segment_size - len(partial)
            partial += view[:need]
            view = view[need:]
            if len(partial) < segment_size:
                continue
            if held is not None:
                yield emit(held, False)
            held, partial = bytes(partial), bytearray()
        while len(view) >= segment_size:
            if held is not None:
                yield emit(held, False)
            held, view = view[:segment_size], view[segment_size:]
        if view:
            if held is not None:
                yield emit(held, False)
                held = None
            partial += view
    if partial:
        if held is not None:
            yield emit(held, False)
        yield emit(partial, True)
    else:
        yield emit(held if held is not None else b"", True)


def seal(
    plaintext: bytes,
    *,
    recipients: Mapping[str, bytes],
    context: EnvelopeContext,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> bytes:
    """Encrypt ``plaintext`` for ``recipients`` under ``context``; returns the envelope bytes."""
    prefix, key, nonce_prefix = _build_header(recipients, context, segment_size)
    aad = hashlib.sha256(prefix).digest()
    aead = AESGCM(key)
    view = memoryview(plaintext)
    count = max(1, -(-len(view) // segment_size))
    out = io.BytesIO()  # getvalue() hands over its buffer without a copy
    out.write(prefix)
    for i in range(count):
        segment = view[i * segment_size : (i + 1) * segment_size]
        out.write(aead.encrypt(_nonce(nonce_prefix, i, i == count - 1), segment, aad))
    return out.getvalue()


@dataclass(frozen=True)
class EnvelopeHeader:
    """The parsed, not yet authenticated, header of an envelope."""

    context: EnvelopeContext
    segment_size: int
    nonce_prefix: bytes
    recipients: dict[str, tuple[bytes, bytes]]  # address → (ephemeral public key, wrapped key)
    aad: bytes  # sha256 of the bytes before the first segment
    length: int  # bytes before the first segment


def _field(header: dict[str, Any], name: str, kind: type) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CryptoError(
            f"malformed envelope: header field {name!r} missing or not {kind.__name__}"
        )
    return value


def parse_header(blob: bytes | bytearray | memoryview) -> EnvelopeHeader:
    """Parse the header at the start of ``blob``; :class:`CryptoError` if it is malformed."""
    view = memoryview(blob)
    if len(view) < _PREFIX.size:
        raise CryptoError(f"not an envelope: {len(view)} bytes is shorter than its fixed prefix")
    magic, version, length = _PREFIX.unpack(view[: _PREFIX.size])
    if magic != MAGIC:
        raise CryptoError("not an envelope: bad magic bytes (expected a FedMarket envelope)")
    if version != VERSION:
        raise CryptoError(f"unsupported envelope version {version}: this fedmarket reads {VERSION}")
    if length > MAX_HEADER_BYTES:
        raise CryptoError(f"malformed envelope: header length {length} exceeds {MAX_HEADER_BYTES}")
    end = _PREFIX.size + length
    if len(view) < end:
        raise CryptoError("truncated envelope: the header is cut short")
    try:
        header = shallow_json(bytes(view[_PREFIX.size : end]))  # a peer's: nesting bounded
    except (ValueError, UnicodeDecodeError) as exc:
        raise CryptoError(f"malformed envelope: header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CryptoError("malformed envelope: header is not a JSON object")
    try:
        context = EnvelopeContext(
            chain_id=_field(header, "chain_id", int),
            task_id=_field(header, "task_id", int),
            round=_field(header, "round", int),
            sender=_field(header, "sender", str),
        )
        segment_size = _field(header, "segment_size", int)
        nonce_prefix = bytes.fromhex(_field(header, "nonce_prefix", str))
        entries = _field(header, "recipients", list)
        recipients: dict[str, tuple[bytes, bytes]] = {}
        for entry in entries[: MAX_RECIPIENTS + 1]:
            if not isinstance(entry, dict):
                raise CryptoError("malformed envelope: a recipient entry is not an object")
            address = _address(_field(entry, "address", str), "recipient")
            epk = bytes.fromhex(_field(entry, "epk", str))
            wrapped = bytes.fromhex(_field(entry, "wrapped_key", str))
            if len(epk) != 32 or len(wrapped) != 32 + TAG_SIZE:
                raise CryptoError(f"malformed envelope: key material of {address} has wrong length")
            recipients[address] = (epk, wrapped)
    except ValueError as exc:  # bytes.fromhex
        raise CryptoError(f"malformed envelope: {exc}") from exc
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE or len(nonce_prefix) != 7:
        raise CryptoError("malformed envelope: segment size or nonce prefix out of range")
    if not recipients or len(recipients) != len(entries) or len(entries) > MAX_RECIPIENTS:
        raise CryptoError("malformed envelope: recipients list empty, duplicated or too long")
    return EnvelopeHeader(
        context=context,
        segment_size=segment_size,
        nonce_prefix=nonce_prefix,
        recipients=recipients,
        aad=hashlib.sha256(view[:end]).digest(),
        length=end,
    )


def _content_key(
    header: EnvelopeHeader,
    *,
    recipient_address: str,
    x25519_private: X25519PrivateKey,
    expected_context: EnvelopeContext,
) -> bytes:
    if header.context != expected_context:
        raise CryptoError(
            f"envelope is bound to {header.context.describe()}, expected "
            f"{expected_context.describe()}: it belongs elsewhere (replayed or misrouted)"
        )
    address = _address(recipient_address, "recipient_address")
    if address not in header.recipients:
        raise CryptoError(f"{address} is not a recipient of this envelope: it cannot be opened")
    epk, wrapped = header.recipients[address]
    own_public = _public_raw(x25519_private.public_key())
    try:
        shared = x25519_private.exchange(X25519PublicKey.from_public_bytes(epk))
        return AESGCM(_kek(shared, epk, own_public)).decrypt(
            _WRAP_NONCE, wrapped, _wrap_aad(address)
        )
    except (InvalidTag, ValueError):
        raise CryptoError(
            f"cannot unwrap the content key for {address}: wrong X25519 key for this address, "
            "or the envelope was tampered with"
        ) from None


def _tampered(index: int) -> CryptoError:
    return CryptoError(
        f"envelope segment {index} failed authentication: tampered with, truncated or reordered"
    )


def open_envelope(
    blob: bytes | bytearray | memoryview,
    *,
    recipient_address: str,
    x25519_private: X25519PrivateKey,
    expected_context: EnvelopeContext,
) -> bytes:
    """Decrypt an envelope for ``recipient_address``; :class:`CryptoError` on any mismatch.

    Checks, in order: format, context (chain, task, round, sender), that the address is a
    recipient, the key unwrap, then every segment's authentication and the final-segment flag.
    """
    view = memoryview(blob)
    header = parse_header(view)
    key = _content_key(
        header,
        recipient_address=recipient_address,
        x25519_private=x25519_private,
        expected_context=expected_context,
    )
    aead = AESGCM(key)
    body = view[header.length :]
    stride = header.segment_size + TAG_SIZE
    count = max(1, -(-len(body) // stride))
    out = io.BytesIO()  # getvalue() hands over its buffer without a copy
    for i in range(count):
        segment = body[i * stride : (i + 1) * stride]
        if len(segment) < TAG_SIZE:
            raise CryptoError("truncated envelope: a segment is shorter than its tag")
        try:
            out.write(
                aead.decrypt(_nonce(header.nonce_prefix, i, i == count - 1), segment, header.aad)
            )
        except InvalidTag:
            raise _tampered(i) from None
    return out.getvalue()


def open_stream(
    chunks: Iterable[bytes | memoryview],
    *,
    recipient_address: str,
    x25519_private: X25519PrivateKey,
    expected_context: EnvelopeContext,
) -> Iterator[bytes]:
    """Decrypt an envelope arriving in pieces; yields the plaintext in segments.

    Each yielded segment is authenticated, but truncation is only detectable at the end: act on
    the plaintext only once the iterator is exhausted without raising.
    """
    buffer = bytearray()
    it = iter(chunks)
    header: EnvelopeHeader | None = None
    for chunk in it:
        buffer += chunk
        if len(buffer) >= _PREFIX.size:
            length = _PREFIX.unpack_from(buffer)[2]
            if length > MAX_HEADER_BYTES or len(buffer) >= _PREFIX.size + length:
                header = parse_header(buffer)  # raises at once on a bad prefix or header
                break
    if header is None:
        parse_header(buffer)  # raises the precise "truncated"/"not an envelope" error
        raise CryptoError("truncated envelope")  # pragma: no cover (parse_header raised)
    key = _content_key(
        header,
        recipient_address=recipient_address,
        x25519_private=x25519_private,
        expected_context=expected_context,
    )
    aead = AESGCM(key)
    del buffer[: header.length]
    stride = header.segment_size + TAG_SIZE
    index = 0
    for chunk in it:
        buffer += chunk
        while len(buffer) > stride:  # a segment followed by more bytes cannot be the last
            segment = memoryview(buffer)[:stride]
            try:
                plain = aead.decrypt(_nonce(header.nonce_prefix, index, False), segment, header.aad)
            except InvalidTag:
                raise _tampered(index) from None
            finally:
                segment.release()
            del buffer[:stride]
            index += 1
            yield plain
    if len(buffer) < TAG_SIZE:
        raise CryptoError("truncated envelope: the last segment is shorter than its tag")
    try:
        yield aead.decrypt(_nonce(header.nonce_prefix, index, True), bytes(buffer), header.aad)
    except InvalidTag:
        raise _tampered(index) from None
