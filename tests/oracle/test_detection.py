"""The oracle's flags as a detector on a simulated task with known attackers."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.errors import ValuationError
from marketplace.fl.data import load_dataset, split_dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.partition import partition
from marketplace.fl.simulate import simulate
from marketplace.fl.train import TrainConfig
from marketplace.oracle.detection import evaluate_flags, simulated_address
from marketplace.valuation.config import ValuationConfig
from marketplace.valuation.flags import FlagConfig

SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)


def _digits() -> Any:
    return split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)


def _two_rounds(data: Any, trainers: int, behaviours: dict[str, str]) -> Any:
    """Two rounds of 1-epoch FedAvg on an IID split, keeping the history the oracle scores."""
    return simulate(
        model_spec=SPEC,
        splits=data,
        partition=partition("iid", data.train.y, num_clients=trainers, seed=0),
        rounds=2,
        train_config=TrainConfig(epochs=1, lr=0.1, batch_size=16),
        behaviours=behaviours,
    )


def test_flags_catch_a_free_rider_and_a_sign_flipper_and_spare_the_honest() -> None:
    data = _digits()
    parts = partition("iid", data.train.y, num_clients=5, seed=0)

    result = _two_rounds(data, 5, {"t00": "free_rider", "t03": "sign_flip"})

    found = evaluate_flags(result, data.validation.x, data.validation.y)

    assert found.recall == 1.0 and found.false_flag_rate == 0.0
    assert sorted(found.flagged) == ["t00", "t03"]
    assert found.flagged["t00"] & 4  # FREE_RIDER bit
    assert simulated_address("t00").startswith("0x") and len(simulated_address("t00")) == 42
    lean = simulate(model_spec=SPEC, splits=data, partition=parts, rounds=1, keep_history=False)
    with pytest.raises(ValuationError, match="keep_history=True"):
        evaluate_flags(lean, data.validation.x, data.validation.y, config=ValuationConfig())


def test_flags_catch_colluding_min_max_attackers_and_a_label_flipper() -> None:
    # min-max hides inside the honest spread (its Shapley total is near 0): the twin rule on the
    # updates catches the colluders; the label flipper's negative value flags it.
    data = _digits()
    result = _two_rounds(data, 7, {"t01": "min_max", "t05": "min_max", "t03": "label_flip"})

    found = evaluate_flags(result, data.validation.x, data.validation.y)

    assert found.flagged == {"t01": 2, "t03": 2, "t05": 2}  # POISONER, nobody else
    assert found.recall == 1.0 and found.false_flag_rate == 0.0
    no_twins = evaluate_flags(
        result, data.validation.x, data.validation.y, flag_config=FlagConfig(twin_ratio=0.0)
    )
    assert no_twins.flagged == {"t03": 2}  # the thresholds reach the rules
