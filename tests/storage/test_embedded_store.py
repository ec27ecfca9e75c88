"""Embedded-store-only behaviour: atomic writes, a full disk, garbage collection."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from marketplace.errors import ContentNotFoundError, StorageError
from marketplace.storage import embedded as embedded_module
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore


def test_disk_full_during_put_raises_storage_error_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the second write fails as a full disk would
    store = EmbeddedStore(tmp_path / "store")
    calls = {"n": 0}
    real_write = embedded_module._write

    def write_until_full(fd: int, data: bytes | memoryview) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(embedded_module, "_write", write_until_full)
    data = b"a" * (3 * 1024 * 1024)
    # Execute
    with pytest.raises(
        StorageError, match=r"No space left on device.*nothing was stored.*free some"
    ):
        store.put(data)
    # Assert
    assert list((tmp_path / "store" / "objects").iterdir()) == []
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_failed_fsync_leaves_no_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    store = EmbeddedStore(tmp_path / "store")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(embedded_module.os, "fsync", failing_fsync)
    # Execute
    with pytest.raises(StorageError, match="Input/output error"):
        store.put(b"payload")
    monkeypatch.undo()
    # Assert
    assert not store.has(raw_cid(b"payload"))
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_gc_removes_unpinned_objects_only(tmp_path: Path) -> None:
    # Prepare
    store = EmbeddedStore(tmp_path / "store")
    kept = store.put(b"kept")
    dropped = store.put(b"dropped", pin=False)
    # Execute
    removed = store.gc()
    # Assert
    assert removed == [dropped]
    assert store.has(kept)
    assert not store.has(dropped)
    assert store.pinned() == [kept]


def test_pin_of_absent_content_raises_content_not_found(tmp_path: Path) -> None:
    # Prepare
    store = EmbeddedStore(tmp_path / "store")
    # Execute / Assert
    with pytest.raises(ContentNotFoundError, match="put it first"):
        store.pin(raw_cid(b"absent"))


def test_unwritable_directory_is_a_clear_storage_error(tmp_path: Path) -> None:
    # Prepare: a file where the store's directory should be
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # Execute / Assert
    with pytest.raises(StorageError, match="cannot create the embedded store"):
        EmbeddedStore(blocker / "store")
