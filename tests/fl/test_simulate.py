"""Simulation on digits with real PyTorch: accuracy floor, history that valuation can replay,
determinism, attacks' effect, DP accounting."""

from __future__ import annotations

import pytest

from marketplace.errors import ConfigError
from marketplace.fl.attacks import SignFlip
from marketplace.fl.data import DataSplits
from marketplace.fl.models import ModelSpec
from marketplace.fl.partition import partition
from marketplace.fl.privacy import PrivacyConfig
from marketplace.fl.simulate import SimulationResult, simulate
from marketplace.fl.train import TrainConfig, evaluate
from marketplace.fl.weights import weights_equal

CONFIG = TrainConfig(epochs=2, lr=0.1, batch_size=16)


@pytest.fixture(scope="module")
def fedavg_run(digits: DataSplits, mlp_spec: ModelSpec) -> SimulationResult:
    parts = partition("iid", digits.train.y, num_clients=5, seed=0)
    return simulate(
        model_spec=mlp_spec, splits=digits, partition=parts, rounds=4, train_config=CONFIG, seed=1
    )


def test_fedavg_on_digits_beats_the_accuracy_floor(fedavg_run: SimulationResult) -> None:
    curve = fedavg_run.accuracy_curve("test")

    assert curve[0] < 0.3
    assert fedavg_run.final_metrics.test_accuracy >= 0.90
    assert fedavg_run.final_metrics.val_accuracy >= 0.90


def test_history_replays_every_round_bit_for_bit(fedavg_run: SimulationResult) -> None:
    strategy = fedavg_run.strategy()

    for i, record in enumerate(fedavg_run.rounds):
        replay = strategy.aggregate(record.global_weights, list(reversed(record.updates)))
        assert weights_equal(replay.weights, record.result.weights)
        if i + 1 < len(fedavg_run.rounds):
            assert weights_equal(fedavg_run.rounds[i + 1].global_weights, record.result.weights)
        assert [u.sender for u in record.updates] == list(fedavg_run.trainer_ids)
    assert weights_equal(fedavg_run.final_weights, fedavg_run.rounds[-1].result.weights)


def test_coalition_utility_is_computable_from_the_history(
    fedavg_run: SimulationResult, digits: DataSplits
) -> None:
    record = fedavg_run.rounds[0]
    strategy = fedavg_run.strategy()

    alone = strategy.aggregate(record.global_weights, record.updates[:1]).weights
    everyone = record.result.weights
    acc_alone = evaluate(fedavg_run.model_spec, alone, digits.validation.x, digits.validation.y)
    acc_all = evaluate(fedavg_run.model_spec, everyone, digits.validation.x, digits.validation.y)

    assert acc_all.accuracy == pytest.approx(record.metrics.val_accuracy)
    assert 0 < acc_alone.accuracy <= 1


def test_same_seed_gives_the_same_model(
    fedavg_run: SimulationResult, digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=5, seed=0)

    again = simulate(
        model_spec=mlp_spec, splits=digits, partition=parts, rounds=4, train_config=CONFIG, seed=1
    )

    assert weights_equal(again.final_weights, fedavg_run.final_weights)


def test_sign_flippers_hurt_fedavg_but_not_the_median(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=7, seed=0)
    attackers = {"t01": SignFlip(factor=3.0), "t04": SignFlip(factor=3.0)}

    runs = {
        name: simulate(
            model_spec=mlp_spec,
            splits=digits,
            partition=parts,
            rounds=3,
            strategy=name,
            train_config=CONFIG,
            behaviours=attackers,
            seed=2,
        )
        for name in ("fedavg", "median")
    }

    assert runs["fedavg"].final_metrics.test_accuracy < 0.5
    assert runs["median"].final_metrics.test_accuracy > 0.85
    assert runs["median"].behaviours["t01"] == "sign_flip"


def test_multikrum_rejects_the_free_rider_and_copier_stays_accepted(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=6, seed=0)

    result = simulate(
        model_spec=mlp_spec,
        splits=digits,
        partition=parts,
        rounds=1,
        strategy="multikrum",
        train_config=CONFIG,
        behaviours={"t02": "gaussian_noise", "t05": "copier"},
    )

    record = result.rounds[0]
    assert "t02" in record.result.rejected
    copied = {u.sender: u.delta for u in record.updates}
    assert weights_equal(copied["t05"], copied["t00"])


def test_dp_epsilons_are_reported_for_trainers_that_train(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=4, seed=0)

    result = simulate(
        model_spec=mlp_spec,
        splits=digits,
        partition=parts,
        rounds=3,
        train_config=CONFIG,
        privacy=PrivacyConfig(clip_norm=1.0, noise_multiplier=1.0),
        behaviours={"t03": "free_rider"},
    )

    assert set(result.epsilons) == {"t00", "t01", "t02"}
    assert len(set(result.epsilons.values())) == 1 and next(iter(result.epsilons.values())) > 0
    norms = [
        sum(float(t.double().pow(2).sum()) for t in u.delta.values()) ** 0.5
        for u in result.rounds[0].updates
        if u.sender != "t03"
    ]
    assert all(n > 1.0 for n in norms)  # clipped to 1, then noise added on ~2.4k coordinates


def test_unknown_trainer_in_behaviours_is_a_config_error(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=3, seed=0)

    with pytest.raises(ConfigError, match="unknown trainers"):
        simulate(
            model_spec=mlp_spec,
            splits=digits,
            partition=parts,
            rounds=1,
            behaviours={"t09": "sign_flip"},
        )


def test_label_flipper_and_free_rider_contribute_nothing_useful(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    parts = partition("iid", digits.train.y, num_clients=4, seed=0)
    result = simulate(
        model_spec=mlp_spec,
        splits=digits,
        partition=parts,
        rounds=2,
        train_config=CONFIG,
        behaviours={"t01": "label_flip", "t02": "free_rider"},
    )
    record = result.rounds[1]
    strategy = result.strategy()
    by_sender = {u.sender: u for u in record.updates}

    def alone(sender: str) -> float:
        weights = strategy.aggregate(record.global_weights, [by_sender[sender]]).weights
        return evaluate(mlp_spec, weights, digits.validation.x, digits.validation.y).accuracy

    start = evaluate(mlp_spec, record.global_weights, digits.validation.x, digits.validation.y)
    assert alone("t01") < start.accuracy - 0.3  # trained on mirrored labels
    assert alone("t02") == start.accuracy  # a zero delta leaves the model as it was
    assert alone("t00") >= start.accuracy - 0.02
