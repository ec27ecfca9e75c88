"""The shared ContentStore suite: every test runs on the Kubo store and on the embedded store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from marketplace.errors import ContentNotFoundError, DigestMismatchError, StorageError
from marketplace.storage.base import ContentStore
from marketplace.storage.cid import CHUNK_SIZE

SIZES = [0, 1, 1000, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * 1024 * 1024 + 7]

# Valid CID of bytes that no test stores (sha256 of b"never stored by any test").
ABSENT = "bafkreifjde7jmcmm6pow6bnrpbinseecfmmozn57xbumhhh5u55pnfifx4"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.mark.parametrize("size", SIZES)
def test_put_then_get_returns_the_same_bytes(store: ContentStore, size: int) -> None:
    # Prepare
    data = os.urandom(size)
    # Execute
    cid = store.put(data)
    # Assert
    assert cid.startswith("baf")
    assert store.get(cid, expected_sha256=sha(data)) == data


def test_put_stream_and_put_file_give_the_cid_of_put(store: ContentStore, tmp_path: Path) -> None:
    # Prepare
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    pieces = [data[i : i + 70_000] for i in range(0, len(data), 70_000)]
    # Execute
    from_bytes = store.put(data)
    from_stream = store.put_stream(iter(pieces))
    from_file = store.put_file(path)
    # Assert
    assert from_bytes == from_stream == from_file


def test_get_stream_yields_the_content_in_pieces(store: ContentStore) -> None:
    # Prepare
    data = os.urandom(3 * 1024 * 1024 + 5)
    cid = store.put(data)
    # Execute
    pieces = list(store.get_stream(cid, expected_sha256=sha(data), chunk_size=1024 * 1024))
    # Assert
    assert len(pieces) >= 2
    assert b"".join(pieces) == data


def test_get_with_wrong_digest_raises_digest_mismatch(store: ContentStore) -> None:
    # Prepare
    data = b"an update"
    cid = store.put(data)
    # Execute / Assert
    with pytest.raises(DigestMismatchError, match=f"content of {cid} hashes to 0x"):
        store.get(cid, expected_sha256=sha(b"another update"))


def test_get_stream_with_wrong_digest_raises_after_the_last_piece(store: ContentStore) -> None:
    # Prepare
    data = os.urandom(CHUNK_SIZE * 2)
    cid = store.put(data)
    stream = store.get_stream(cid, expected_sha256=sha(b"x"), chunk_size=CHUNK_SIZE)
    # Execute / Assert
    with pytest.raises(DigestMismatchError):
        for _ in stream:
            pass


def test_get_with_malformed_digest_is_refused(store: ContentStore) -> None:
    # Prepare
    cid = store.put(b"payload")
    # Execute / Assert
    with pytest.raises(StorageError, match="expected_sha256 must be 32 bytes"):
        store.get(cid, expected_sha256=b"\x00" * 20)


def test_get_larger_than_max_size_is_refused(store: ContentStore) -> None:
    # Prepare
    cid = store.put(b"x" * 5000)
    # Execute / Assert
    with pytest.raises(StorageError, match="larger than max_size=4999"):
        store.get(cid, max_size=4999)
    assert store.get(cid, max_size=5000) == b"x" * 5000


def test_get_to_file_writes_the_verified_content(store: ContentStore, tmp_path: Path) -> None:
    # Prepare
    data = os.urandom(CHUNK_SIZE + 99)
    cid = store.put(data)
    target = tmp_path / "out.bin"
    # Execute
    size = store.get_to_file(cid, target, expected_sha256=sha(data))
    # Assert
    assert size == len(data)
    assert target.read_bytes() == data


def test_get_to_file_with_wrong_digest_leaves_no_file(store: ContentStore, tmp_path: Path) -> None:
    # Prepare
    data = os.urandom(CHUNK_SIZE + 99)
    cid = store.put(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # Execute
    with pytest.raises(DigestMismatchError):
        store.get_to_file(cid, out_dir / "out.bin", expected_sha256=sha(b"other"))
    # Assert
    assert list(out_dir.iterdir()) == []


def test_has_is_true_only_for_stored_content(store: ContentStore) -> None:
    # Prepare
    cid = store.put(b"held")
    # Execute / Assert
    assert store.has(cid)
    assert not store.has(ABSENT)


def test_pin_and_unpin_are_accepted_and_unpin_is_idempotent(store: ContentStore) -> None:
    # Prepare
    cid = store.put(b"pinned content", pin=False)
    # Execute
    store.pin(cid)
    store.unpin(cid)
    store.unpin(cid)
    # Assert
    assert store.get(cid) == b"pinned content"


def test_malformed_cid_is_refused_with_a_clear_error(store: ContentStore) -> None:
    # Execute / Assert
    with pytest.raises(StorageError, match="not a CID: 'not-a-cid'"):
        store.get("not-a-cid")


def test_get_of_absent_content_raises_content_not_found(
    store: ContentStore, request: pytest.FixtureRequest
) -> None:
    # Prepare: a short timeout, since Kubo would otherwise wait for a provider
    if hasattr(store, "timeout"):
        store.timeout = 1.0
    # Execute / Assert
    with pytest.raises(ContentNotFoundError, match=ABSENT):
        store.get(ABSENT)
