"""RoundUtility on real PyTorch models and the real aggregators of ``marketplace.fl``."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace import fl
from marketplace.errors import ValuationError
from marketplace.fl.weights import flatten
from marketplace.valuation import ExactShapley
from marketplace.valuation.round_utility import RoundUtility

SPEC = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)


@pytest.fixture(scope="module")
def splits() -> fl.DataSplits:
    return fl.split_dataset(fl.load_dataset("digits"), seed=0)


@pytest.fixture(scope="module")
def simulation(splits: fl.DataSplits) -> fl.SimulationResult:
    parts = fl.partition("iid", splits.train.y, num_clients=4, seed=0)
    return fl.simulate(
        model_spec=SPEC,
        splits=splits,
        partition=parts,
        rounds=1,
        train_config=fl.TrainConfig(epochs=2, lr=0.1),
        behaviours={"t03": "free_rider"},
        seed=0,
    )


def utility_for(sim: fl.SimulationResult, splits: fl.DataSplits, **kwargs: object) -> RoundUtility:
    record = sim.rounds[0]
    return RoundUtility(
        model_spec=SPEC,
        global_weights=record.global_weights,
        updates=record.updates,
        strategy=kwargs.pop("strategy", sim.strategy()),  # type: ignore[arg-type]
        x_val=splits.validation.x,
        y_val=splits.validation.y,
        **kwargs,  # type: ignore[arg-type]
    )


def test_grand_coalition_is_exactly_the_strategys_next_global_model(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    # Prepare
    utility = utility_for(simulation, splits)

    # Execute
    ours = utility.coalition_flat_weights(frozenset(range(utility.n)))

    # Assert: bit for bit what Strategy.aggregate produced during the simulation
    assert np.array_equal(ours, flatten(simulation.rounds[0].result.weights))


def test_empty_coalition_scores_the_global_model_unchanged(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    # Prepare
    utility = utility_for(simulation, splits)
    reference = fl.evaluate(
        SPEC, simulation.rounds[0].global_weights, splits.validation.x, splits.validation.y
    )

    # Execute
    score = utility(frozenset())

    # Assert: float64 vs float32 evaluation may differ by at most one validation row
    assert abs(score - reference.accuracy) <= 1 / len(splits.validation.y)


def test_training_coalitions_beat_the_global_model_and_the_free_rider_adds_nothing(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    # Prepare
    utility = utility_for(simulation, splits)
    assert utility.players == ("t00", "t01", "t02", "t03")

    # Execute
    values = ExactShapley().estimate(utility).as_floats()

    # Assert
    assert utility(frozenset({0, 1, 2})) > utility(frozenset())
    assert min(values[:3]) > values[3]


def test_values_are_cached_per_coalition(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    # Prepare
    utility = utility_for(simulation, splits)

    # Execute
    first = utility(frozenset({0, 2}))
    second = utility(frozenset({2, 0}))

    # Assert
    assert first == second
    assert utility.evaluations == 1


def test_negative_loss_metric_is_below_zero(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    utility = utility_for(simulation, splits, metric="neg_loss")
    assert utility(frozenset({0})) < 0


def test_coalitions_too_small_for_krum_fall_back_to_the_weighted_mean(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    # Prepare: Krum with f=1 needs 5 updates; this round has 4
    krum = utility_for(simulation, splits, strategy=fl.get_strategy("krum", f=1))
    fedavg = utility_for(simulation, splits, strategy=fl.get_strategy("fedavg"))

    # Execute / Assert
    pair = frozenset({0, 1})
    assert np.array_equal(krum.coalition_flat_weights(pair), fedavg.coalition_flat_weights(pair))


def test_refusing_small_coalitions_is_a_clear_error(
    simulation: fl.SimulationResult, splits: fl.DataSplits
) -> None:
    utility = utility_for(
        simulation, splits, strategy=fl.get_strategy("krum", f=1), small_coalition="error"
    )
    with pytest.raises(ValuationError, match="refuses a coalition"):
        utility(frozenset({0, 1}))


def test_unknown_metric_is_refused(simulation: fl.SimulationResult, splits: fl.DataSplits) -> None:
    with pytest.raises(ValuationError, match="unknown metric"):
        utility_for(simulation, splits, metric="f1")
