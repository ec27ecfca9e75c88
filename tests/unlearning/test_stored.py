"""Unlearning from a real content store (the embedded store), every digest checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from marketplace.errors import DigestMismatchError
from marketplace.fl.models import build_model
from marketplace.fl.serialization import WeightSpec, dump_weights
from marketplace.storage.embedded import EmbeddedStore
from marketplace.unlearning import FedEraserConfig, unlearn
from marketplace.unlearning.stored import (
    RecordedBlob,
    RecordedUpdate,
    TaskRecord,
    unlearn_from_store,
)

from .conftest import LOCAL, SPEC, WITHDRAWN, Federation

MAX = 1 << 20


def _publish(store: EmbeddedStore, fed: Federation) -> TaskRecord:
    models, updates = {}, {}
    for r in range(1, fed.history.rounds + 1):
        blob = dump_weights(fed.history.global_weights(r))
        models[r] = RecordedBlob(store.put(blob), hashlib.sha256(blob).digest())
        updates[r] = []
        for u in fed.history.updates(r):
            ublob = dump_weights(u.delta)
            cid = store.put(ublob)
            updates[r].append(
                RecordedUpdate(u.sender, cid, hashlib.sha256(ublob).digest(), u.num_samples)
            )
    return TaskRecord(fed.history.rounds, models, updates)


def _run(store: EmbeddedStore, record: TaskRecord, fed: Federation):  # type: ignore[no-untyped-def]
    return unlearn_from_store(
        store, record, withdrawn=WITHDRAWN, train=fed.train, strategy=fed.strategy,
        epochs=LOCAL.epochs, spec=WeightSpec.from_module(build_model(SPEC)), max_bytes=MAX,
        config=FedEraserConfig(interval=2, calibration_epochs=1),
    )  # fmt: skip


def test_store_run_matches_the_in_memory_run(tmp_path: Path, federation: Federation) -> None:
    store = EmbeddedStore(tmp_path / "store")
    record = _publish(store, federation)
    from_store = _run(store, record, federation)
    in_memory = unlearn(
        federation.history, withdrawn=WITHDRAWN, train=federation.train,
        strategy=federation.strategy, epochs=LOCAL.epochs,
        config=FedEraserConfig(interval=2, calibration_epochs=1),
    )  # fmt: skip
    assert from_store.digest == in_memory.digest
    assert from_store.digest == hashlib.sha256(dump_weights(from_store.weights)).digest()


def test_update_digest_mismatch_is_refused(tmp_path: Path, federation: Federation) -> None:
    store = EmbeddedStore(tmp_path / "store")
    record = _publish(store, federation)
    bad = dict(record.updates)
    u = bad[2][0]
    bad[2] = [RecordedUpdate(u.sender, u.cid, b"\x00" * 32, u.num_samples), *bad[2][1:]]
    with pytest.raises(DigestMismatchError, match="expected 0x00"):
        _run(store, TaskRecord(record.rounds, record.models, bad), federation)


def test_model_digest_mismatch_is_refused(tmp_path: Path, federation: Federation) -> None:
    store = EmbeddedStore(tmp_path / "store")
    record = _publish(store, federation)
    models = dict(record.models)
    models[1] = RecordedBlob(models[1].cid, hashlib.sha256(b"other").digest())
    with pytest.raises(DigestMismatchError, match="round 1 model"):
        _run(store, TaskRecord(record.rounds, models, record.updates), federation)
