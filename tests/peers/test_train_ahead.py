"""A round trained ahead of its batch (node.peers.trainer): its update is used only when the
model it started from is, bit for bit, the round's global model once the batch is on-chain."""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import Future
from types import SimpleNamespace

import torch

from marketplace.fl.serialization import dump_weights
from marketplace.fl.weights import Weights
from node.peers.trainer import Ahead, TrainerNode


def digest_of(model: Weights) -> bytes:
    return hashlib.sha256(dump_weights(model)).digest()


def guess_from(model: Weights) -> Ahead:
    return Ahead(digest_of(model), "bafkguess", b"\x01" * 32)


def node_with(global_model: Weights, ahead: dict[int, Ahead | None]) -> TrainerNode:
    """A trainer node holding only what training ahead touches: its guesses and its session's
    global model (the one the recorded batch gives)."""
    node = TrainerNode.__new__(TrainerNode)
    node.session = SimpleNamespace(model_digest=lambda r: digest_of(global_model))  # type: ignore[assignment]
    node.ahead_counts = Counter()
    node._ahead = {}
    for r, result in ahead.items():
        future: Future[Ahead | None] = Future()
        future.set_result(result)
        node._ahead[r] = future
    return node


def test_the_guess_is_used_when_the_batch_gives_the_same_model() -> None:
    model = {"w": torch.tensor([0.5, -1.0]), "b": torch.zeros(1)}
    guess = guess_from({k: v.clone() for k, v in model.items()})
    node = node_with(model, {3: guess})
    assert node._take_ahead(3) == guess
    assert node.ahead_counts == Counter(used=1)
    assert node._take_ahead(3) is None  # taken once


def test_the_guess_is_dropped_when_the_batch_gives_another_model() -> None:
    # Prepare: the batch left one leaf out, so the model differs in its last bit
    model = {"w": torch.tensor([0.5, -1.0])}
    off = {"w": torch.nextafter(model["w"], torch.tensor([1.0, 1.0]))}
    node = node_with(model, {4: guess_from(off), 5: None})
    # Execute / Assert: trained again (None), counted as missed; a failed guess is no guess
    assert node._take_ahead(4) is None
    assert node._take_ahead(5) is None
    assert node._take_ahead(6) is None
    assert node.ahead_counts == Counter(missed=1)


def test_the_guess_is_compared_bit_for_bit_and_on_every_tensor() -> None:
    model = {"w": torch.ones(2), "b": torch.zeros(1)}
    others = (
        {"b": torch.zeros(1), "w": torch.ones(2)},  # the same model, keys in another order
        {"w": torch.ones(2)},  # a tensor missing
        {"w": torch.ones(2), "b": torch.full((1,), 1e-30)},
        {"w": torch.ones(2), "b": torch.full((1,), -0.0)},  # bit for bit: -0.0 is another model
    )
    used = [node_with(model, {2: guess_from(o)})._take_ahead(2) is not None for o in others]
    assert used == [True, False, False, False]
