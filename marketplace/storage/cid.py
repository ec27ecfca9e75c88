"""CIDs exactly as Kubo computes them for ``ipfs add --cid-version=1 --raw-leaves``.

Kubo splits a file into 256 KiB chunks (``size-262144``), stores each chunk as a ``raw`` block, and
links them in a balanced UnixFS tree of ``dag-pb`` nodes with at most 174 links each. A file of one
chunk or less is its raw leaf, so its CID is ``bafkrei…``; a larger one is a ``bafybei…`` dag-pb
root. :class:`UnixFSCidBuilder` reproduces that tree from a stream of bytes (keeping only the leaf
hashes in memory), so the embedded store hands out the very CID a Kubo daemon gives the same bytes.
The protobuf encoding below is the canonical dag-pb form (links before data, empty link names kept),
checked against a real daemon in ``tests/storage``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NewType

import cid as pycid
import multihash
import varint

from marketplace.errors import StorageError

Cid = NewType("Cid", str)
"""A CID in its string form (CIDv1 base32 ``b…`` from our stores; CIDv0 ``Qm…`` accepted)."""

CHUNK_SIZE = 256 * 1024  # Kubo's default chunker, size-262144 (passed explicitly to the daemon)
MAX_LINKS = 174  # Kubo's default Import.UnixFSFileMaxLinks
CHUNKER = f"size-{CHUNK_SIZE}"

_RAW = 0x55
_DAG_PB = 0x70
_SHA2_256 = 0x12
_UNIXFS_FILE = 2
# 'b' and base32 of 36 bytes: version, codec, sha2-256 code, length 32, the digest.
_OUR_CID_CHARS = 1 + 58


def parse_cid(value: str) -> Cid:
    """Validate a CID string and return it unchanged; :class:`StorageError` if it is not one."""
    if not isinstance(value, str) or not value or len(value) > 256:
        raise StorageError(f"not a CID: {value!r} (expected a string like 'bafkrei…')")
    if _is_our_cid(value):
        return Cid(value)
    try:
        pycid.from_string(value)
    except Exception as exc:  # py-cid raises ValueError/KeyError/… for the many malformed forms
        raise StorageError(f"not a CID: {value!r} ({exc})") from exc
    return Cid(value)


def _is_our_cid(value: str) -> bool:
    """Whether ``value`` is a CID of the one form our stores hand out (v1, base32, raw or
    dag-pb, sha2-256): checked by one base32 decode, where py-cid's general parser costs a
    gossiped message more than its signature's hash (every other form still goes through it)."""
    if len(value) != _OUR_CID_CHARS or value[0] != "b" or not value.islower():
        return False
    try:
        raw = base64.b32decode(value[1:].upper() + "======")
    except ValueError:
        return False
    return raw[:1] == b"\x01" and raw[1] in (_RAW, _DAG_PB) and raw[2:4] == b"\x12\x20"


def _cid_bytes(codec: int, digest: bytes) -> bytes:
    # CIDv1 binary: version, codec, multihash (code, length, digest); all fit one varint byte.
    mh: bytes = multihash.encode(digest, _SHA2_256)
    return _varint(1) + _varint(codec) + mh


def _cid_string(cid_bytes: bytes) -> Cid:
    codec = "raw" if cid_bytes[1] == _RAW else "dag-pb"
    encoded = pycid.make_cid(1, codec, cid_bytes[2:]).encode("base32")
    return Cid(encoded.decode("ascii"))


def raw_cid(data: bytes) -> Cid:
    """The CIDv1 (raw codec, sha2-256, base32) of one block holding ``data``."""
    return _cid_string(_cid_bytes(_RAW, hashlib.sha256(data).digest()))


def _varint(value: int) -> bytes:
    encoded: bytes = varint.encode(value)
    return encoded


def _field_bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


@dataclass(frozen=True)
class _Node:
    cid: bytes  # binary CID
    file_size: int  # bytes of file content under this node
    tree_size: int  # serialized bytes of this node and everything below (dag-pb Tsize)


def _branch(children: list[_Node]) -> _Node:
    """A UnixFS ``File`` dag-pb node over ``children`` (canonical dag-pb: Links, then Data)."""
    links = b"".join(
        _field_bytes(
            2, _field_bytes(1, c.cid) + _field_bytes(2, b"") + _field_varint(3, c.tree_size)
        )
        for c in children
    )
    file_size = sum(c.file_size for c in children)
    unixfs = _field_varint(1, _UNIXFS_FILE) + _field_varint(3, file_size)
    unixfs += b"".join(_field_varint(4, c.file_size) for c in children)
    block = links + _field_bytes(1, unixfs)
    return _Node(
        cid=_cid_bytes(_DAG_PB, hashlib.sha256(block).digest()),
        file_size=file_size,
        tree_size=len(block) + sum(c.tree_size for c in children),
    )


class UnixFSCidBuilder:
    """Feed bytes in any pieces with :meth:`update`; :meth:`finish` returns Kubo's CID for them.

    Memory is one chunk plus ~50 bytes per 256 KiB leaf (≈ 20 KB for 100 MB).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._leaves: list[_Node] = []
        self._done = False

    def _leaf(self, chunk: bytes | bytearray | memoryview) -> None:
        digest = hashlib.sha256(chunk).digest()
        size = len(chunk)
        self._leaves.append(_Node(cid=_cid_bytes(_RAW, digest), file_size=size, tree_size=size))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add the next piece of the content."""
        if self._done:
            raise StorageError("UnixFSCidBuilder.update after finish(): use a new builder")
        view = memoryview(data).cast("B")
        if self._pending:
            need = CHUNK_SIZE - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) < CHUNK_SIZE:
                return
            self._leaf(self._pending)
            self._pending = bytearray()
        while len(view) >= CHUNK_SIZE:  # whole chunks straight from the caller's buffer: no copy
            self._leaf(view[:CHUNK_SIZE])
            view = view[CHUNK_SIZE:]
        self._pending += view

    def finish(self) -> Cid:
        """The root CID of everything passed to :meth:`update`."""
        self._done = True
        if self._pending or not self._leaves:
            self._leaf(self._pending)  # the last, short chunk (or the empty file's only leaf)
            self._pending = bytearray()
        level = self._leaves
        if len(level) == 1:
            return _cid_string(level[0].cid)
        # Kubo's balanced layout fills each node to MAX_LINKS before opening the next, left to
        # right, with every leaf at the same depth: exactly grouping each level in runs of 174.
        while len(level) > 1:
            level = [_branch(level[i : i + MAX_LINKS]) for i in range(0, len(level), MAX_LINKS)]
        return _cid_string(level[0].cid)


def unixfs_cid(chunks: Iterable[bytes | bytearray | memoryview]) -> Cid:
    """Kubo's CIDv1 (``--raw-leaves``, 256 KiB chunks, balanced) of the concatenated ``chunks``."""
    builder = UnixFSCidBuilder()
    for chunk in chunks:
        builder.update(chunk)
    return builder.finish()
