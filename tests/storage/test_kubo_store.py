"""Kubo-only behaviour: CIDs agree with the embedded store, failures of the daemon are clear."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.errors import StorageError, StoreUnreachableError
from marketplace.storage.cid import CHUNK_SIZE, MAX_LINKS, raw_cid, unixfs_cid
from marketplace.storage.embedded import EmbeddedStore
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon
from marketplace.storage.kubo_rpc import normalize_api

# One leaf, the two-leaf boundary, and the first size that needs a second level of dag-pb nodes.
CROSS_CHECK_SIZES = [
    0,
    1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    5 * CHUNK_SIZE + 3,
    MAX_LINKS * CHUNK_SIZE + 1,
]


@pytest.mark.parametrize("size", CROSS_CHECK_SIZES)
def test_embedded_cid_equals_kubo_cid_for_the_same_bytes(
    kubo_store: KuboStore, tmp_path: Path, size: int
) -> None:
    # Prepare
    data = os.urandom(size)
    embedded = EmbeddedStore(tmp_path / "e")
    # Execute
    kubo_cid = kubo_store.put(data, pin=False)
    embedded_cid = embedded.put(data)
    # Assert
    assert embedded_cid == kubo_cid
    assert unixfs_cid([data]) == kubo_cid


def test_single_block_cid_is_raw_cidv1_base32(kubo_store: KuboStore) -> None:
    # Prepare
    data = b"one block"
    # Execute
    cid = kubo_store.put(data)
    # Assert
    assert cid == raw_cid(data)
    assert cid.startswith("bafkrei")


def test_api_given_as_url_or_multiaddr_reaches_the_same_daemon(kubo: KuboDaemon) -> None:
    # Prepare
    by_url = KuboStore(kubo.api_url)
    by_multiaddr = KuboStore(kubo.api_multiaddr)
    # Execute
    cid = by_url.put(b"same daemon")
    # Assert
    assert by_multiaddr.get(cid) == b"same daemon"
    assert normalize_api(kubo.api_url)[1] == kubo.api_url


def test_unparseable_api_address_is_refused() -> None:
    # Execute / Assert
    with pytest.raises(StorageError, match="expected a multiaddr like /ip4/127"):
        KuboStore("localhost-5001")


def test_unreachable_daemon_raises_store_unreachable_naming_address_and_fix(
    fresh_kubo: KuboDaemon,
) -> None:
    # Prepare: a daemon that was there and is gone, so the port is real but closed
    store = KuboStore(fresh_kubo.api_multiaddr, timeout=5.0, retries=1)
    fresh_kubo.stop()
    # Execute / Assert
    with pytest.raises(StoreUnreachableError) as err:
        store.put(b"anything")
    message = str(err.value)
    assert fresh_kubo.api_multiaddr in message
    assert "is the daemon running?" in message
    assert "--ipfs-api" in message
    assert "\n" not in message


def test_daemon_killed_during_get_to_file_leaves_no_file(
    fresh_kubo: KuboDaemon, tmp_path: Path
) -> None:
    # Prepare: content larger than the loopback socket buffers, so the kill lands mid-transfer
    store = KuboStore(fresh_kubo.api_multiaddr, timeout=10.0, retries=0)
    cid = store.put(os.urandom(32 * 1024 * 1024))
    real_get_stream = store.get_stream

    def killing_stream(*args: object, **kwargs: object) -> Iterator[bytes]:
        stream = real_get_stream(*args, **kwargs)  # type: ignore[arg-type]
        yield next(stream)
        fresh_kubo.kill()
        yield from stream

    store.get_stream = killing_stream  # type: ignore[method-assign]
    target = tmp_path / "update.bin"
    # Execute
    with pytest.raises(StorageError) as err:
        store.get_to_file(cid, target)
    # Assert
    assert cid in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_daemon_killed_during_put_stream_raises_store_unreachable(fresh_kubo: KuboDaemon) -> None:
    # Prepare
    store = KuboStore(fresh_kubo.api_multiaddr, timeout=10.0, retries=0)

    def chunks() -> Iterator[bytes]:
        for i in range(64):
            if i == 4:
                fresh_kubo.kill()
            yield os.urandom(1024 * 1024)

    # Execute / Assert
    with pytest.raises(StoreUnreachableError, match="is unreachable"):
        store.put_stream(chunks())


@pytest.mark.parametrize("size", [1, 13_000, CHUNK_SIZE])
def test_one_chunk_is_put_as_its_raw_block_pinned_or_not_as_asked(
    kubo_store: KuboStore, size: int
) -> None:
    # Prepare
    data = os.urandom(size)
    # Execute
    pinned = kubo_store.put(data)
    loose = kubo_store.put(os.urandom(size), pin=False)
    # Assert: the CID `add` gives (one raw block), readable, and pinned only when asked
    assert pinned == raw_cid(data)
    assert kubo_store.get(pinned, expected_sha256=hashlib.sha256(data).digest()) == data
    pins = kubo_store._post("pin/ls", {"type": "recursive"}).json()["Keys"]
    assert pinned in pins and loose not in pins
