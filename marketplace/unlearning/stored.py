"""Unlearning from the content store and the on-chain record, every digest checked.

The chain records, per round, the global model that started it (``ModelPosted``: CID and the
sha256 of its plaintext safetensors; round 1 is the task's initial model) and each trainer's update
(``UpdateCommitted``: CID, sha256 of the stored bytes — the envelope — and sample count). A
:class:`TaskRecord` is that record; :func:`history_from_store` turns it into a lazily loaded
:class:`StoredHistory` that fetches only the models and updates unlearning reads, refuses bytes
whose digest differs from the record (:class:`DigestMismatchError`), and validates every tensor
against the model's :class:`WeightSpec` (safetensors only, never pickle).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from marketplace.errors import ConfigError, DigestMismatchError
from marketplace.fl.serialization import WeightSpec, load_weights
from marketplace.fl.strategy import Strategy
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.storage.base import ContentStore
from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import LocalTrainer, StoredHistory, Withdrawn
from marketplace.unlearning.retrain import Method, UnlearnResult, unlearn

ENVELOPE_OVERHEAD = 1 << 20  # wrapped keys and header of an encrypted blob, generously

OpenUpdate = Callable[[bytes, int, str], bytes]
"""Turns an update's stored bytes (round, sender) into safetensors bytes (opens the envelope)."""
OpenModel = Callable[[bytes, int], bytes]
"""Turns a round model's stored bytes into safetensors bytes."""


def _plain_update(blob: bytes, round_: int, sender: str) -> bytes:
    return blob


def _plain_model(blob: bytes, round_: int) -> bytes:
    return blob


@dataclass(frozen=True)
class RecordedBlob:
    """A round's global model as recorded on-chain: its CID and its plaintext sha256."""

    cid: str
    digest: bytes


@dataclass(frozen=True)
class RecordedUpdate:
    """A committed update as recorded on-chain."""

    sender: str
    cid: str
    digest: bytes  # sha256 of the stored bytes
    num_samples: int


@dataclass(frozen=True)
class TaskRecord:
    """The on-chain record of a finished task's rounds ``1..rounds``."""

    rounds: int
    models: Mapping[int, RecordedBlob]  # round -> the global model that started it
    updates: Mapping[int, Sequence[RecordedUpdate]]  # round -> committed updates

    def __post_init__(self) -> None:
        missing = [r for r in range(1, self.rounds + 1) if r not in self.updates]
        if self.rounds < 1 or missing:
            raise ConfigError(f"the task record lacks the updates of rounds {missing[:5]}")


def history_from_store(
    store: ContentStore,
    record: TaskRecord,
    *,
    spec: WeightSpec,
    max_bytes: int,
    max_total_norm: float | None = None,
    open_update: OpenUpdate = _plain_update,
    open_model: OpenModel = _plain_model,
) -> StoredHistory:
    """A :class:`StoredHistory` that loads from ``store`` on demand, checking every digest."""
    models: dict[int, Weights] = {}
    loaded: dict[int, list[ClientUpdate]] = {}

    def model(round_: int) -> Weights:
        if round_ not in models:
            ref = record.models.get(round_)
            if ref is None:
                raise ConfigError(
                    f"the record has no model for round {round_}: post it (ModelPosted) first"
                )
            blob = store.get(ref.cid, max_size=max_bytes + ENVELOPE_OVERHEAD)
            plain = open_model(blob, round_)
            actual = hashlib.sha256(plain).digest()
            if not hmac.compare_digest(actual, ref.digest):
                raise DigestMismatchError(
                    f"round {round_} model {ref.cid} hashes to 0x{actual.hex()}, the chain records "
                    f"0x{ref.digest.hex()}: refusing it; fetch it from another provider"
                )
            models[round_] = dict(
                sorted(load_weights(plain, spec=spec, max_bytes=max_bytes).items())
            )
        return models[round_]

    def updates(round_: int) -> list[ClientUpdate]:
        if round_ not in loaded:
            out = []
            for u in sorted(record.updates[round_], key=lambda u: u.sender):
                blob = store.get(
                    u.cid, expected_sha256=u.digest, max_size=max_bytes + ENVELOPE_OVERHEAD
                )
                delta = load_weights(
                    open_update(blob, round_, u.sender), spec=spec, max_bytes=max_bytes,
                    max_total_norm=max_total_norm,
                )  # fmt: skip
                out.append(ClientUpdate(u.sender, dict(sorted(delta.items())), u.num_samples))
            loaded[round_] = out
        return list(loaded[round_])

    participants = {
        r: {u.sender: u.num_samples for u in record.updates[r]} for r in range(1, record.rounds + 1)
    }
    return StoredHistory(
        rounds=record.rounds, participants=participants, global_weights=model, updates=updates
    )


def unlearn_from_store(
    store: ContentStore,
    record: TaskRecord,
    *,
    withdrawn: Withdrawn,
    train: LocalTrainer,
    strategy: Strategy,
    epochs: int,
    spec: WeightSpec,
    max_bytes: int,
    max_total_norm: float | None = None,
    config: FedEraserConfig | None = None,
    method: Method | Literal["auto"] = "auto",
    open_update: OpenUpdate = _plain_update,
    open_model: OpenModel = _plain_model,
) -> UnlearnResult:
    """Forget ``withdrawn`` from the stored rounds of ``record``; returns weights and digest.

    Raises :class:`DigestMismatchError` if any fetched model or update differs from the record,
    :class:`InvalidUpdateError` if one does not fit ``spec``.
    """
    history = history_from_store(
        store, record, spec=spec, max_bytes=max_bytes, max_total_norm=max_total_norm,
        open_update=open_update, open_model=open_model,
    )  # fmt: skip
    return unlearn(
        history, withdrawn=withdrawn, train=train, strategy=strategy, epochs=epochs,
        config=config, method=method,
    )  # fmt: skip
