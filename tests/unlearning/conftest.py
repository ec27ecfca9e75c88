"""A small federation on digits (4 trainers, 6 rounds), recorded as a task stores it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from marketplace.fl.data import Dataset, DataSplits, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.seeding import derive_seed
from marketplace.fl.strategy import Strategy, get_strategy
from marketplace.fl.train import TrainConfig, train_local
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights, get_weights
from marketplace.unlearning.history import StoredHistory, train_and_record

SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(32,), num_classes=10, seed=0)
LOCAL = TrainConfig(epochs=2, lr=0.1, batch_size=16)
ROUNDS = 6
WITHDRAWN = "t03"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Federation:
    splits: DataSplits
    data: dict[str, Dataset]
    train: Callable[[str, int, Weights, int], ClientUpdate]
    strategy: Strategy
    history: StoredHistory
    final: Weights


def make_train(data: dict[str, Dataset]) -> Callable[[str, int, Weights, int], ClientUpdate]:
    def local(trainer: str, round_: int, start: Weights, epochs: int) -> ClientUpdate:
        config = replace(LOCAL, epochs=epochs, seed=derive_seed(0, "train", trainer, round_))
        result = train_local(SPEC, start, data[trainer], config)
        return ClientUpdate(trainer, result.delta, result.num_samples)

    return local


@pytest.fixture(scope="session")
def federation() -> Federation:
    splits = split_dataset(load_dataset("digits"), seed=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(splits.train)), 4)
    data = {f"t{i:02d}": splits.train.subset(p) for i, p in enumerate(parts)}
    train = make_train(data)
    strategy = get_strategy("fedavg")
    history, final = train_and_record(
        start=get_weights(build_model(SPEC)),
        rounds=ROUNDS,
        samples={t: len(d) for t, d in data.items()},
        train=train,
        strategy=strategy,
        epochs=LOCAL.epochs,
    )
    return Federation(splits, data, train, strategy, history, final)
