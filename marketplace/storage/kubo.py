"""The Kubo content store: a Kubo (go-ipfs) daemon over its HTTP RPC API.

Every call is a plain ``requests`` POST to ``/api/v0/...``. ipfshttpclient 0.7 was tried first
and dropped: its ``connect()`` refuses any Kubo ≥ 0.8, its multipart upload buffers what we must
stream (a 100 MB update may not be held three times), its pubsub predates Kubo 0.11's wire format,
and every call it makes passes urllib3 the removed ``strict`` argument (a FutureWarning today, an
error in urllib3 3). The RPC surface we need (add, cat, files/stat, dag/stat, pin, version) is
small.

Every call has a timeout; idempotent calls are retried a bounded number of times on transient
failures (connection refused or reset, 502/503/504), and an unreachable daemon is one
:class:`StoreUnreachableError` naming the address and the fix.

Content is added with ``--cid-version=1 --raw-leaves --chunker=size-262144``, so CIDs match the
embedded store's for the same bytes; content of one chunk is put as that one raw block
(``block/put``: the same CID, without the UnixFS importer's work).
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import requests

from marketplace.errors import ContentNotFoundError, StorageError, StoreUnreachableError
from marketplace.storage.base import (
    STREAM_CHUNK,
    ContentStore,
    DigestCheck,
    read_file_chunks,
    size_exceeded,
)
from marketplace.storage.cid import CHUNK_SIZE, CHUNKER, Cid, parse_cid, raw_cid
from marketplace.storage.kubo_rpc import (
    KuboCommandError,
    KuboRpc,
    TransientRpcError,
    short_cause,
)

log = logging.getLogger(__name__)

_BLOCK_PUT_PARAMS = {"cid-codec": "raw", "mhtype": "sha2-256", "mhlen": "-1"}

_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": CHUNKER,
    "progress": "false",
    "quieter": "true",
}


def _is_not_found(message: str) -> bool:
    lowered = message.lower()
    return any(
        s in lowered
        for s in ("context deadline exceeded", "not found", "block was not found", "no link named")
    )


class KuboStore(KuboRpc, ContentStore):
    """A :class:`ContentStore` backed by a Kubo daemon's RPC API (see :class:`KuboRpc`)."""

    # --- ContentStore ---------------------------------------------------------------------
    def version(self) -> str:
        """The daemon's Kubo version (also a cheap liveness check)."""
        try:
            return str(self._call("version", "version", {})["Version"])
        except KuboCommandError as exc:
            raise StorageError(f"IPFS version on {self.name} failed: {exc}") from None

    def _add(
        self, body: Callable[[], Iterable[bytes | memoryview]], *, pin: bool, retry: bool
    ) -> Cid:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def multipart() -> Iterator[bytes | memoryview]:
            # Streamed as a chunked request body: the payload is never copied into one buffer.
            yield head
            for chunk in body():
                if chunk:
                    yield chunk
            yield tail

        params = {**_ADD_PARAMS, "pin": "true" if pin else "false"}
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

        def attempt() -> Cid:
            try:
                resp = self._post("add", params, data=multipart(), headers=headers)
            except KuboCommandError as exc:
                raise StorageError(f"IPFS add on {self.name} failed: {exc}") from None
            lines = [line for line in resp.text.splitlines() if line.strip()]
            try:
                last = json.loads(lines[-1])
            except (IndexError, ValueError) as exc:
                raise StorageError(
                    f"IPFS add on {self.name} returned no CID: {resp.text[:200]!r}"
                ) from exc
            if "Hash" not in last:
                raise StorageError(f"IPFS add on {self.name} failed: {last.get('Message', last)}")
            return Cid(str(last["Hash"]))

        if retry:
            return self._retrying("add", attempt)
        try:
            return attempt()
        except TransientRpcError as exc:
            raise exc.error from exc.__cause__

    def _put_block(self, data: bytes, *, pin: bool) -> Cid:
        """Bytes that fit one chunk, put as the one raw block ``add`` would make of them (the
        same CID, :func:`~marketplace.storage.cid.raw_cid`) with ``block/put``: no UnixFS
        importer, about half the daemon's CPU per put — a trainer puts an update every round."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        params = {**_BLOCK_PUT_PARAMS, "pin": "true" if pin else "false"}
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        expected = raw_cid(data)

        def attempt() -> Cid:
            try:
                resp = self._post("block/put", params, data=body, headers=headers)
            except KuboCommandError as exc:
                raise StorageError(f"IPFS block put on {self.name} failed: {exc}") from None
            try:
                key = str(resp.json()["Key"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"IPFS block put on {self.name} returned no CID: {resp.text[:200]!r}"
                ) from exc
            if key != expected:
                raise StorageError(
                    f"IPFS block put on {self.name} stored {key}, expected {expected}: is the "
                    "daemon's block format configured differently?"
                )
            return Cid(key)

        return self._retrying("block put", attempt)

    def put_stream(self, chunks: Iterable[bytes], *, pin: bool = True) -> Cid:
        # A one-shot iterable cannot be replayed, so a failed stream is reported, not retried.
        return self._add(lambda: chunks, pin=pin, retry=False)

    def put(self, data: bytes, *, pin: bool = True) -> Cid:
        if 0 < len(data) <= CHUNK_SIZE:
            return self._put_block(data, pin=pin)
        view = memoryview(data)
        return self._add(
            lambda: (view[i : i + STREAM_CHUNK] for i in range(0, len(view), STREAM_CHUNK)),
            pin=pin, retry=True,
        )  # fmt: skip

    def put_file(self, path: Path, *, pin: bool = True) -> Cid:
        return self._add(lambda: read_file_chunks(path), pin=pin, retry=True)

    def size(self, cid: str) -> int:
        """The content size under ``cid`` (fetches only the root block)."""
        parse_cid(cid)

        def attempt() -> int:
            try:
                resp = self._post(
                    "files/stat", {"arg": f"/ipfs/{cid}", "timeout": self._kubo_timeout()}
                )
            except KuboCommandError as exc:
                if _is_not_found(str(exc)):
                    raise ContentNotFoundError(
                        f"no content under {cid} reachable from {self.name} within "
                        f"{self.timeout:.0f}s: is a peer holding it connected?"
                    ) from None
                raise StorageError(f"IPFS stat of {cid} on {self.name} failed: {exc}") from None
            stat = resp.json()
            if stat.get("Type") != "file":
                raise StorageError(f"{cid} is a {stat.get('Type')}, not a file: pass a file CID")
            return int(stat["Size"])

        return self._retrying("files/stat", attempt)

    def with_timeout(self, seconds: float) -> KuboStore:
        """A view of this store (same daemon and connection pool) whose calls give up after
        ``seconds``: Kubo is told 80% of it as its command timeout, so a CID nobody provides
        fails as :class:`ContentNotFoundError` after ``0.8 * seconds`` of ``files/stat``."""
        view = copy.copy(self)
        view.timeout = float(seconds)
        return view

    def get_stream(
        self,
        cid: str,
        *,
        expected_sha256: bytes | None = None,
        max_size: int | None = None,
        chunk_size: int = STREAM_CHUNK,
    ) -> Iterator[bytes]:
        check = DigestCheck(cid, expected_sha256)
        size = self.size(cid)  # known up front: refuse oversize content before downloading it
        if max_size is not None and size > max_size:
            raise size_exceeded(cid, max_size)

        def open_cat() -> requests.Response:
            try:
                return self._post("cat", {"arg": cid, "timeout": self._kubo_timeout()}, stream=True)
            except KuboCommandError as exc:
                raise StorageError(f"IPFS cat of {cid} on {self.name} failed: {exc}") from None

        resp = self._retrying("cat", open_cat)
        return self._read(resp, cid, size, check, chunk_size)

    def _read(
        self, resp: requests.Response, cid: str, size: int, check: DigestCheck, chunk_size: int
    ) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in resp.iter_content(chunk_size):
                received += len(chunk)
                if received > size:
                    raise StorageError(f"{self.name} sent more than the {size} bytes of {cid}")
                check.update(chunk)
                yield chunk
        except (requests.RequestException, OSError) as exc:
            raise StoreUnreachableError(
                f"connection to the IPFS daemon at {self.api_multiaddr} dropped after {received} "
                f"of {size} bytes of {cid} ({short_cause(exc)}): is the daemon running? "
                "retry the fetch"
            ) from exc
        finally:
            resp.close()
        if received != size:
            # Kubo reports a mid-stream failure in an HTTP trailer; a short body is how it shows.
            raise StorageError(
                f"{self.name} ended {cid} after {received} of {size} bytes: the daemon failed "
                "mid-transfer (see its log); retry the fetch"
            )
        check.verify()

    def pin(self, cid: str) -> None:
        parse_cid(cid)
        try:
            self._call("pin add", "pin/add", {"arg": cid, "timeout": self._kubo_timeout()})
        except KuboCommandError as exc:
            if _is_not_found(str(exc)):
                raise ContentNotFoundError(
                    f"cannot pin {cid}: not found from {self.name} ({exc})"
                ) from None
            raise StorageError(f"IPFS pin of {cid} on {self.name} failed: {exc}") from None

    def unpin(self, cid: str) -> None:
        parse_cid(cid)
        try:
            self._call("pin rm", "pin/rm", {"arg": cid})
        except KuboCommandError as exc:
            if "not pinned" in str(exc):
                return
            raise StorageError(f"IPFS unpin of {cid} on {self.name} failed: {exc}") from None

    def has(self, cid: str) -> bool:
        parse_cid(cid)

        def attempt() -> bool:
            try:
                # dag/stat walks the whole DAG; offline makes a missing block an error, not a fetch.
                self._post("dag/stat", {"arg": cid, "offline": "true", "progress": "false"}).close()
            except KuboCommandError:
                return False
            return True

        return self._retrying("dag/stat", attempt)
