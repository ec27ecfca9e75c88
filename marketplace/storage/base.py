"""The one content-store interface every backend implements (Kubo over RPC, the embedded store).

Both backends give the same bytes the same CID (Kubo's ``--cid-version=1 --raw-leaves`` layout), so
a CID committed on-chain from a node using one backend can be fetched by a node using the other
once the bytes reach the IPFS network.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

from marketplace.errors import DigestMismatchError, StorageError
from marketplace.storage.cid import Cid

STREAM_CHUNK = 1024 * 1024  # read/write granularity for files and streams


def read_file_chunks(path: Path, chunk_size: int = STREAM_CHUNK) -> Iterator[bytes]:
    """The bytes of ``path`` in ``chunk_size`` pieces."""
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


class DigestCheck:
    """Running sha256 of a stream, compared with the expected digest at the end."""

    def __init__(self, cid: str, expected_sha256: bytes | None) -> None:
        if expected_sha256 is not None and len(expected_sha256) != 32:
            raise StorageError(
                f"expected_sha256 must be 32 bytes, got {len(expected_sha256)}: "
                "pass a sha256 digest"
            )
        self._cid = cid
        self._expected = expected_sha256
        self._hash = hashlib.sha256() if expected_sha256 is not None else None

    def update(self, chunk: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(chunk)

    def verify(self) -> None:
        """Raise :class:`DigestMismatchError` unless the bytes seen hash to the expected digest."""
        if self._hash is None or self._expected is None:
            return
        actual = self._hash.digest()
        if not hmac.compare_digest(actual, self._expected):
            raise DigestMismatchError(
                f"content of {self._cid} hashes to 0x{actual.hex()}, expected "
                f"0x{self._expected.hex()}: the provider served other bytes; do not use them"
            )


def size_exceeded(cid: str, max_size: int) -> StorageError:
    return StorageError(
        f"content of {cid} is larger than max_size={max_size} bytes: refusing it "
        "(raise max_size if this payload is expected)"
    )


class ContentStore(ABC):
    """Content-addressed bytes: put returns a CID, get the bytes (optionally digest-checked).

    Implementations must be safe to call from several threads.
    """

    #: A short name for logs and messages, e.g. ``kubo(/ip4/127.0.0.1/tcp/5001)``.
    name: str

    @abstractmethod
    def put_stream(self, chunks: Iterable[bytes], *, pin: bool = True) -> Cid:
        """Store the concatenation of ``chunks`` (read once, never held whole); return its CID."""

    def put(self, data: bytes, *, pin: bool = True) -> Cid:
        """Store ``data``; return its CID."""
        view = memoryview(data)
        return self.put_stream(
            (view[i : i + STREAM_CHUNK] for i in range(0, max(len(view), 1), STREAM_CHUNK)),  # type: ignore[misc]
            pin=pin,
        )

    def put_file(self, path: Path, *, pin: bool = True) -> Cid:
        """Store the content of the file at ``path``; return its CID."""
        return self.put_stream(read_file_chunks(path), pin=pin)

    @abstractmethod
    def get_stream(
        self,
        cid: str,
        *,
        expected_sha256: bytes | None = None,
        max_size: int | None = None,
        chunk_size: int = STREAM_CHUNK,
    ) -> Iterator[bytes]:
        """The content under ``cid`` in pieces.

        The digest is checked after the last piece: a consumer must not act on the content before
        the iterator is exhausted (it raises :class:`DigestMismatchError` then). Raises
        :class:`StorageError` as soon as more than ``max_size`` bytes arrive.
        """

    def with_timeout(self, seconds: float) -> ContentStore:
        """This store with each of its network calls bounded by ``seconds`` (for a caller that
        must not wait the default on content nobody serves); a store without network calls
        returns itself."""
        return self

    def get(
        self, cid: str, *, expected_sha256: bytes | None = None, max_size: int | None = None
    ) -> bytes:
        """The content under ``cid``; checks its sha256 when ``expected_sha256`` is given."""
        out = io.BytesIO()  # getvalue() hands over its buffer: no second copy, unlike b"".join
        for chunk in self.get_stream(cid, expected_sha256=expected_sha256, max_size=max_size):
            out.write(chunk)
        return out.getvalue()

    def get_to_file(
        self,
        cid: str,
        path: Path,
        *,
        expected_sha256: bytes | None = None,
        max_size: int | None = None,
    ) -> int:
        """Write the content under ``cid`` to ``path``; returns its size.

        The file appears only complete and verified (temp file, fsync, rename): on any failure no
        file, partial or not, is left at ``path``.
        """
        path = Path(path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in self.get_stream(
                    cid, expected_sha256=expected_sha256, max_size=max_size
                ):
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return size

    @abstractmethod
    def pin(self, cid: str) -> None:
        """Keep the content under ``cid`` (it must be in the store, or fetchable)."""

    @abstractmethod
    def unpin(self, cid: str) -> None:
        """Let the content under ``cid`` be garbage-collected; no error if it was not pinned."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether the whole content under ``cid`` is held locally (never fetches)."""

    def close(self) -> None:  # noqa: B027 (optional hook, most stores hold nothing)
        """Release connections or handles."""
