"""Shared FL fixtures: the digits splits and small model specs (real data, real PyTorch)."""

from __future__ import annotations

import pytest
import torch

from marketplace.fl.data import DataSplits, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # The CI machine has 2 cores shared with other suites.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)


@pytest.fixture(scope="session")
def mlp_spec() -> ModelSpec:
    return ModelSpec(arch="mlp", input_dim=64, hidden=(32,), num_classes=10, seed=0)
