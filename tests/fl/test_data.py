"""Datasets: built-ins, user files (.npz without pickles, .csv), digests and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marketplace.errors import ConfigError
from marketplace.fl.data import DataSplits, load_dataset, split_dataset


@pytest.mark.parametrize(
    ("name", "n", "features", "classes"),
    [("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3)],
)
def test_builtin_dataset_cards(name: str, n: int, features: int, classes: int) -> None:
    card = load_dataset(name).card()

    assert (card.n, card.features, card.classes) == (n, features, classes)
    assert card.sha256 == load_dataset(name).card().sha256


def test_synthetic_dataset_follows_its_parameters_and_seed() -> None:
    a = load_dataset("synthetic", n_samples=300, n_features=12, n_classes=3, seed=5)
    b = load_dataset("synthetic", n_samples=300, n_features=12, n_classes=3, seed=6)

    assert a.x.shape == (300, 12) and a.num_classes == 3
    assert a.sha256() != b.sha256()


def test_digest_changes_when_one_label_changes() -> None:
    ds = load_dataset("wine")
    y = ds.y.copy()
    y[0] = (y[0] + 1) % ds.num_classes

    assert ds.with_labels(y).sha256() != ds.sha256()


def test_npz_dataset_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.arange(20, dtype=np.float64).reshape(10, 2), y=np.array([3, 7] * 5))

    ds = load_dataset(path)

    assert ds.card().n == 10 and ds.num_classes == 2
    assert set(ds.y.tolist()) == {0, 1}  # labels 3 and 7 become class ids 0 and 1


def test_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, {"b": 2}]
    np.savez(path, x=objects, y=np.array([0, 1]))

    with pytest.raises(ConfigError, match="object \\(pickled\\) arrays, which are refused"):
        load_dataset(path)


def test_npz_without_x_and_y_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.npz"
    np.savez(path, features=np.ones((3, 2)), labels=np.array([0, 1, 0]))

    with pytest.raises(ConfigError, match="arrays named 'x' and 'y'"):
        load_dataset(path)


def test_csv_dataset_with_header_uses_last_column_as_label(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("f1,f2,label\n0.5,1.0,0\n1.5,2.0,1\n2.5,3.0,1\n")

    ds = load_dataset(path)

    np.testing.assert_array_equal(ds.x, [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]])
    np.testing.assert_array_equal(ds.y, [0, 1, 1])


def test_csv_with_text_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,2,0\n3,four,1\n")

    with pytest.raises(ConfigError, match="must be numeric"):
        load_dataset(path)


def test_unknown_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_split_sizes_stratification_and_determinism(digits: DataSplits) -> None:
    again = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)

    sizes = (len(digits.train), len(digits.validation), len(digits.test))
    assert sum(sizes) == 1797
    assert sizes == (1257, 270, 270)
    assert digits.validation.sha256() == again.validation.sha256()
    assert np.bincount(digits.test.y, minlength=10).min() >= 25  # stratified: ~27 per class


def test_standardisation_is_fitted_on_train_only(digits: DataSplits) -> None:
    raw = load_dataset("digits")

    assert np.allclose(digits.train.x.mean(axis=0), 0.0, atol=1e-4)
    # The validation set is transformed with train's statistics, so its mean is not exactly 0.
    assert not np.allclose(digits.validation.x.mean(axis=0), 0.0, atol=1e-3)
    assert np.allclose(digits.mean[10:20], raw.x.mean(axis=0)[10:20], atol=0.2)
