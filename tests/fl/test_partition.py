"""Partitioners: sizes, disjointness, determinism, skew statistics, label noise."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.errors import ConfigError
from marketplace.fl.partition import (
    add_label_noise,
    dirichlet_partition,
    label_skew,
    partition,
)

LABELS = np.repeat(np.arange(10), 60)  # 600 rows, 10 balanced classes
PARAMS = {
    "iid": {},
    "dirichlet": {"alpha": 0.5},
    "shards": {"shards_per_client": 2},
    "quantity_skew": {"alpha": 0.5},
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_partition_covers_every_row_exactly_once(name: str) -> None:
    parts = partition(name, LABELS, num_clients=8, seed=3, **PARAMS[name])

    joined = np.concatenate(parts)
    assert len(parts) == 8
    assert sum(len(p) for p in parts) == LABELS.shape[0]
    assert np.array_equal(np.sort(joined), np.arange(LABELS.shape[0]))
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_partition_is_deterministic_under_its_seed(name: str) -> None:
    first = partition(name, LABELS, num_clients=8, seed=3, **PARAMS[name])
    again = partition(name, LABELS, num_clients=8, seed=3, **PARAMS[name])
    other = partition(name, LABELS, num_clients=8, seed=4, **PARAMS[name])

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_label_skew_grows_as_alpha_shrinks() -> None:
    skews = [
        label_skew(dirichlet_partition(LABELS, num_clients=8, alpha=a, seed=0), LABELS).mean
        for a in (100.0, 1.0, 0.1)
    ]

    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.15 and skews[2] > 0.5


def test_dirichlet_gives_every_trainer_min_size_rows() -> None:
    parts = dirichlet_partition(LABELS, num_clients=8, alpha=0.1, seed=0, min_size=20)

    assert min(len(p) for p in parts) >= 20


def test_shards_give_each_trainer_few_classes() -> None:
    shards = partition("shards", LABELS, num_clients=10, shards_per_client=2, seed=0)
    iid = partition("iid", LABELS, num_clients=10, seed=0)

    shard_classes = [len(np.unique(LABELS[p])) for p in shards]
    iid_classes = [len(np.unique(LABELS[p])) for p in iid]

    assert max(shard_classes) <= 2
    assert min(iid_classes) >= 8


def test_quantity_skew_gives_unequal_sizes_with_iid_labels() -> None:
    parts = partition("quantity_skew", LABELS, num_clients=6, alpha=0.5, seed=1, min_size=10)

    sizes = sorted(len(p) for p in parts)
    assert sizes[0] >= 10
    assert sizes[-1] > 3 * sizes[0]


def test_label_skew_is_zero_for_identical_and_known_for_single_class() -> None:
    labels = np.array([0, 1, 0, 1, 0, 0, 1, 1])
    balanced = [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])]
    single = [np.array([0, 2, 4, 5]), np.array([1, 3, 6, 7])]

    assert label_skew(balanced, labels).per_client == (0.0, 0.0)
    # Each part holds one class of two balanced classes: TV = 0.5 * (|1 - .5| + |0 - .5|) = 0.5.
    assert label_skew(single, labels).per_client == (0.5, 0.5)


def test_label_noise_changes_exactly_the_fraction_of_one_trainers_rows() -> None:
    part = np.arange(100, 200)

    noisy = add_label_noise(LABELS, part, fraction=0.3, num_classes=10, seed=0)

    changed = np.flatnonzero(noisy != LABELS)
    assert changed.shape[0] == 30
    assert set(changed.tolist()) <= set(part.tolist())
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert np.array_equal(
        add_label_noise(LABELS, part, fraction=0.3, num_classes=10, seed=0), noisy
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: partition("dirichlet", LABELS, num_clients=4, alpha=0.0),
            "alpha must be positive",
        ),
        (lambda: partition("iid", LABELS, num_clients=601), "cannot give 601 trainers"),
        (lambda: partition("zipf", LABELS, num_clients=4), "unknown partitioner 'zipf'"),
        (
            lambda: add_label_noise(LABELS, np.arange(5), fraction=1.5, num_classes=10),
            "fraction must be in",
        ),
        (
            lambda: dirichlet_partition(LABELS, num_clients=60, alpha=0.01, min_size=10),
            "no Dirichlet",
        ),
    ],
)
def test_bad_partition_requests_are_config_errors(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()  # type: ignore[operator]
