"""The embedded content store: content-addressed files in a local directory, no daemon needed.

It is the zero-setup default of ``fedmarket demo``. Objects are kept whole (``objects/<cid>``)
rather than as blocks, but named by the CID Kubo would give them (see :mod:`.cid`), so a CID from
this store is a real IPFS CID. Pins are marker files (``pins/<cid>``); :meth:`EmbeddedStore.gc`
removes unpinned objects. Every write is atomic: bytes go to ``tmp/``, are fsynced, then renamed
into place, so a crash or a full disk never leaves a partial object behind.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from marketplace.errors import ContentNotFoundError, StorageError
from marketplace.storage.base import STREAM_CHUNK, ContentStore, DigestCheck, size_exceeded
from marketplace.storage.cid import Cid, UnixFSCidBuilder, parse_cid

log = logging.getLogger(__name__)


def _write(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EmbeddedStore(ContentStore):
    """A content store in ``directory`` (created if missing)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._objects = self.directory / "objects"
        self._pins = self.directory / "pins"
        self._tmp = self.directory / "tmp"
        try:
            for d in (self._objects, self._pins, self._tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the embedded store in {self.directory}: {exc.strerror}; "
                "choose a writable directory"
            ) from exc
        self.name = f"embedded({self.directory})"

    def _object_path(self, cid: str) -> Path:
        return self._objects / parse_cid(cid)

    def put_stream(self, chunks: Iterable[bytes], *, pin: bool = True) -> Cid:
        builder = UnixFSCidBuilder()
        fd, tmp_name = tempfile.mkstemp(prefix="put-", dir=self._tmp)
        tmp_path = Path(tmp_name)
        try:
            try:
                for chunk in chunks:
                    builder.update(chunk)
                    _write(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            cid = builder.finish()
            final = self._objects / cid
            os.replace(tmp_path, final)  # same bytes ⇒ same name, so replacing is harmless
            _fsync_dir(self._objects)
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            hint = "free some disk space" if exc.errno == errno.ENOSPC else "check the directory"
            raise StorageError(
                f"could not write to the embedded store in {self.directory}: "
                f"{exc.strerror or exc}; nothing was stored ({hint} and retry)"
            ) from exc
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        if pin:
            self.pin(cid)
        log.debug("stored %s in %s", cid, self.directory)
        return cid

    def _open(self, cid: str, max_size: int | None) -> BinaryIO:
        """Open the object, refusing it before any byte is read if it exceeds ``max_size``."""
        path = self._object_path(cid)
        try:
            f = open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise ContentNotFoundError(
                f"no content under {cid} in the embedded store {self.directory}"
            ) from None
        if max_size is not None and os.fstat(f.fileno()).st_size > max_size:
            f.close()
            raise size_exceeded(cid, max_size)
        return f

    def get_stream(
        self,
        cid: str,
        *,
        expected_sha256: bytes | None = None,
        max_size: int | None = None,
        chunk_size: int = STREAM_CHUNK,
    ) -> Iterator[bytes]:
        check = DigestCheck(cid, expected_sha256)
        f = self._open(cid, max_size)  # errors surface here, not at the first next()

        def read() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_size):
                    check.update(chunk)
                    yield chunk
            check.verify()

        return read()

    def get(
        self, cid: str, *, expected_sha256: bytes | None = None, max_size: int | None = None
    ) -> bytes:
        # One read of the whole object instead of joining 1 MiB pieces: half the peak memory.
        check = DigestCheck(cid, expected_sha256)
        with self._open(cid, max_size) as f:
            data = f.read()
        check.update(data)
        check.verify()
        return data

    def pin(self, cid: str) -> None:
        if not self._object_path(cid).exists():
            raise ContentNotFoundError(
                f"cannot pin {cid}: not in the embedded store {self.directory} (put it first)"
            )
        (self._pins / cid).touch()

    def unpin(self, cid: str) -> None:
        (self._pins / parse_cid(cid)).unlink(missing_ok=True)

    def has(self, cid: str) -> bool:
        return self._object_path(cid).exists()

    def pinned(self) -> list[Cid]:
        """The CIDs currently pinned."""
        return sorted(Cid(p.name) for p in self._pins.iterdir())

    def gc(self) -> list[Cid]:
        """Delete unpinned objects (and stale temp files); returns the CIDs removed."""
        removed: list[Cid] = []
        for obj in self._objects.iterdir():
            if not (self._pins / obj.name).exists():
                obj.unlink(missing_ok=True)
                removed.append(Cid(obj.name))
        for tmp in self._tmp.iterdir():
            tmp.unlink(missing_ok=True)
        return sorted(removed)
