"""Shared sourcing fixtures: the digits splits and a task spec with a discriminant basis."""

from __future__ import annotations

import pytest

from marketplace.fl.data import DataSplits, load_dataset, split_dataset
from marketplace.sourcing import SketchSpec, discriminant_basis


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)


@pytest.fixture(scope="session")
def spec(digits: DataSplits) -> SketchSpec:
    v = digits.validation
    basis = discriminant_basis(v.x, v.y, num_classes=10, num_directions=9, seed=3)
    return SketchSpec(task_seed=3, input_dim=64, num_classes=10, num_directions=9, basis=basis)
