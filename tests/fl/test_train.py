"""Local training and evaluation: determinism, deltas' form, FedProx, evaluation, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marketplace.errors import ConfigError, InvalidUpdateError
from marketplace.fl.data import Dataset, DataSplits
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.train import TrainConfig, evaluate, train_local
from marketplace.fl.weights import apply_delta, get_weights, l2_norm, weights_equal


@pytest.fixture(scope="module")
def local(digits: DataSplits) -> Dataset:
    return digits.train.subset(np.arange(200))


def test_same_seed_gives_bit_identical_deltas(mlp_spec: ModelSpec, local: Dataset) -> None:
    start = get_weights(build_model(mlp_spec))
    config = TrainConfig(epochs=2, seed=11)

    first = train_local(mlp_spec, start, local, config)
    second = train_local(mlp_spec, start, local, config)
    other = train_local(mlp_spec, start, local, config.with_seed(12))

    assert weights_equal(first.delta, second.delta)
    assert not weights_equal(first.delta, other.delta)
    assert first.num_samples == 200 and math.isfinite(first.loss)


def test_delta_is_sorted_float32_in_the_models_layout(mlp_spec: ModelSpec, local: Dataset) -> None:
    start = get_weights(build_model(mlp_spec))

    delta = train_local(mlp_spec, start, local, TrainConfig()).delta

    assert list(delta) == sorted(start)
    assert all(delta[k].dtype == torch.float32 and delta[k].shape == start[k].shape for k in delta)


def test_training_improves_accuracy_on_held_out_data(
    mlp_spec: ModelSpec, digits: DataSplits
) -> None:
    start = get_weights(build_model(mlp_spec))
    before = evaluate(mlp_spec, start, digits.validation.x, digits.validation.y)

    result = train_local(mlp_spec, start, digits.train, TrainConfig(epochs=3, lr=0.1))
    after = evaluate(
        mlp_spec, apply_delta(start, result.delta), digits.validation.x, digits.validation.y
    )

    assert before.accuracy < 0.3
    assert after.accuracy > 0.85
    assert after.loss < before.loss


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fedprox_term_keeps_the_update_closer_to_global(
    mlp_spec: ModelSpec, local: Dataset, optimizer: str
) -> None:
    start = get_weights(build_model(mlp_spec))
    base = TrainConfig(epochs=3, lr=0.05 if optimizer == "sgd" else 0.01, optimizer=optimizer)  # type: ignore[arg-type]

    free = train_local(mlp_spec, start, local, base)
    prox = train_local(mlp_spec, start, local, TrainConfig(**{**base.__dict__, "fedprox_mu": 10.0}))

    assert l2_norm(prox.delta) < 0.8 * l2_norm(free.delta)


def test_training_restores_torch_thread_and_determinism_settings(
    mlp_spec: ModelSpec, local: Dataset
) -> None:
    torch.set_num_threads(1)
    start = get_weights(build_model(mlp_spec))

    train_local(mlp_spec, start, local, TrainConfig(num_threads=2))

    assert torch.get_num_threads() == 1
    assert not torch.are_deterministic_algorithms_enabled()


def test_concurrent_training_on_threads_restores_the_settings_and_stays_deterministic(
    mlp_spec: ModelSpec, local: Dataset
) -> None:
    """Overlapping calls would restore each other's process-wide settings: they are serialized."""
    from concurrent.futures import ThreadPoolExecutor

    torch.set_num_threads(1)
    start = get_weights(build_model(mlp_spec))
    config = TrainConfig(num_threads=2, seed=3)
    alone = train_local(mlp_spec, start, local, config).delta

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: train_local(mlp_spec, start, local, config), range(8)))

    assert all(weights_equal(r.delta, alone) for r in results)
    assert torch.get_num_threads() == 1
    assert not torch.are_deterministic_algorithms_enabled()


def test_evaluate_reports_per_class_accuracy(mlp_spec: ModelSpec, digits: DataSplits) -> None:
    start = get_weights(build_model(mlp_spec))
    keep = digits.test.y != 3  # class 3 absent from the evaluated set

    result = evaluate(mlp_spec, start, digits.test.x[keep], digits.test.y[keep])

    assert math.isnan(result.per_class_accuracy[3])
    counts = np.bincount(digits.test.y[keep], minlength=10)
    weighted = (
        sum(acc * c for acc, c in zip(result.per_class_accuracy, counts, strict=True) if c)
        / counts.sum()
    )
    assert weighted == pytest.approx(result.accuracy)
    assert result.num_samples == int(keep.sum())


def test_weights_of_another_model_are_refused(mlp_spec: ModelSpec, local: Dataset) -> None:
    other = get_weights(build_model(ModelSpec(arch="logreg", input_dim=64, num_classes=10)))

    with pytest.raises(InvalidUpdateError, match="do not match the model"):
        train_local(mlp_spec, other, local, TrainConfig())
    with pytest.raises(InvalidUpdateError, match="do not match the model"):
        evaluate(mlp_spec, other, local.x, local.y)


def test_nan_global_weights_are_refused(mlp_spec: ModelSpec, local: Dataset) -> None:
    start = get_weights(build_model(mlp_spec))
    first = sorted(start)[0]
    start[first] = torch.full_like(start[first], float("nan"))

    with pytest.raises(InvalidUpdateError, match="NaN or Inf"):
        train_local(mlp_spec, start, local, TrainConfig())


@pytest.mark.parametrize(
    "kwargs",
    [{"epochs": 0}, {"lr": 0.0}, {"optimizer": "rmsprop"}, {"momentum": 1.0}, {"num_threads": 0}],
)
def test_bad_train_configs_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_cnn_trains_deterministically_on_digits(digits: DataSplits) -> None:
    spec = ModelSpec(arch="cnn", input_dim=64, num_classes=10, input_shape=(1, 8, 8), seed=0)
    start = get_weights(build_model(spec))
    config = TrainConfig(epochs=2, lr=0.1)

    first = train_local(spec, start, digits.train, config)
    again = train_local(spec, start, digits.train, config)
    acc = evaluate(spec, apply_delta(start, first.delta), digits.test.x, digits.test.y).accuracy

    assert weights_equal(first.delta, again.delta)
    assert acc > 0.7
