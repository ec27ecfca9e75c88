"""Datasets: scikit-learn's shipped sets, synthetic data, or a user's ``.npz`` / ``.csv``.

Nothing is downloaded. A :class:`Dataset` is two arrays (``x`` float32 ``(n, d)``, ``y`` int64
``(n,)`` with labels ``0..K-1``); its :class:`DatasetCard` carries a sha256 of the canonical arrays,
which is what a requester commits to on-chain for the validation set.

Example
-------
>>> splits = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)
>>> splits.train.card().n, splits.validation.x.shape[1]
(1257, 64)
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from marketplace.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN_DATASETS = ("digits", "breast_cancer", "wine", "synthetic")


@dataclass(frozen=True)
class DatasetCard:
    """A dataset's public description; ``sha256`` identifies its exact arrays."""

    name: str
    n: int
    features: int
    classes: int
    sha256: str


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features ``x`` (float32, ``(n, d)``) and labels ``y`` (int64, ``(n,)``, in ``0..K-1``)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        x = np.ascontiguousarray(self.x, dtype=np.float32)
        y = np.ascontiguousarray(self.y, dtype=np.int64)
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ConfigError(
                f"dataset {self.name!r}: x must be (n, d) and y (n,), got {x.shape} and {y.shape}"
            )
        if x.shape[0] and (y.min() < 0 or y.max() >= self.num_classes):
            raise ConfigError(
                f"dataset {self.name!r}: labels must lie in 0..{self.num_classes - 1}"
            )
        if not np.isfinite(x).all():
            raise ConfigError(f"dataset {self.name!r}: x contains NaN or Inf; clean the data first")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray, *, name: str | None = None) -> Dataset:
        """The rows at ``indices`` (copied)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(name or self.name, self.x[idx], self.y[idx], self.num_classes)

    def with_labels(self, y: np.ndarray) -> Dataset:
        """The same features with other labels (label noise, label flip)."""
        return Dataset(self.name, self.x, y, self.num_classes)

    def sha256(self) -> str:
        """Hex sha256 of the canonical encoding (see :func:`canonical_digest`)."""
        return canonical_digest(self.x, self.y)

    def card(self) -> DatasetCard:
        """The public card of this dataset."""
        return DatasetCard(
            name=self.name,
            n=len(self),
            features=int(self.x.shape[1]),
            classes=self.num_classes,
            sha256=self.sha256(),
        )


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test sets, standardised with statistics fitted on train only."""

    train: Dataset
    validation: Dataset
    test: Dataset
    mean: np.ndarray
    scale: np.ndarray


def canonical_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """A JSON header (dtypes, shapes) then ``x`` as little-endian float32 C-order bytes and ``y``
    as little-endian int64: the bytes :func:`canonical_digest` hashes (what an audit package
    carries, so an auditor checks it against the task's on-chain validation commitment)."""
    xc = np.ascontiguousarray(x, dtype="<f4")
    yc = np.ascontiguousarray(y, dtype="<i8")
    header = {
        "x": {"dtype": "<f4", "shape": list(xc.shape)},
        "y": {"dtype": "<i8", "shape": list(yc.shape)},
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return head + xc.tobytes() + yc.tobytes()


def canonical_digest(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 of :func:`canonical_bytes`: the same arrays hash the same on every machine."""
    return hashlib.sha256(canonical_bytes(x, y)).hexdigest()


def load_dataset(
    source: str | Path,
    *,
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
    seed: int = 0,
) -> Dataset:
    """Load a built-in dataset by name or a user's file by path.

    Parameters
    ----------
    source : str or Path
        ``"digits"``, ``"breast_cancer"``, ``"wine"``, ``"synthetic"`` (scikit-learn's
        ``make_classification``), or a path to ``.npz`` (arrays ``x`` and ``y``) or ``.csv``
        (numeric, last column the label, an optional header row).
    n_samples, n_features, n_classes, seed : int
        Size and seed of ``"synthetic"`` only.
    """
    name = str(source)
    if name == "digits":
        bunch = skdatasets.load_digits()
        return _from_arrays("digits", bunch.data, bunch.target)
    if name == "breast_cancer":
        bunch = skdatasets.load_breast_cancer()
        return _from_arrays("breast_cancer", bunch.data, bunch.target)
    if name == "wine":
        bunch = skdatasets.load_wine()
        return _from_arrays("wine", bunch.data, bunch.target)
    if name == "synthetic":
        x, y = skdatasets.make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=max(2, n_features // 2),
            n_redundant=max(0, n_features // 4),
            n_classes=n_classes,
            n_clusters_per_class=1,
            random_state=seed,
        )
        return _from_arrays(f"synthetic-{n_samples}x{n_features}-k{n_classes}-s{seed}", x, y)
    path = Path(source)
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix == ".csv":
        return _load_csv(path)
    raise ConfigError(
        f"unknown dataset {name!r}: use one of {list(BUILTIN_DATASETS)} or a .npz/.csv file path"
    )


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray) -> Dataset:
    """Relabel ``y`` to ``0..K-1`` (sorted unique values) and build the dataset."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)  # images are flattened; the CNN reshapes them back
    if not np.issubdtype(x.dtype, np.number) or not (
        np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    ):
        raise ConfigError(f"dataset {name!r}: x and y must be numeric arrays")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ConfigError(f"dataset {name!r}: labels must be integers (class ids)")
    classes, y_index = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ConfigError(f"dataset {name!r} has fewer than 2 classes")
    return Dataset(name, x.astype(np.float32), y_index.astype(np.int64), int(classes.shape[0]))


def _load_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise ConfigError(f"dataset file {path} does not exist")
    try:
        # allow_pickle=False: an .npz with object arrays could run code when unpickled.
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise ConfigError(
                    f"{path}: an .npz dataset needs arrays named 'x' and 'y', found {archive.files}"
                )
            x, y = archive["x"], archive["y"]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ConfigError(
                f"{path} holds object (pickled) arrays, which are refused: save numeric arrays only"
            ) from None
        raise ConfigError(f"{path} is not a readable .npz file ({exc})") from None
    except (OSError, EOFError) as exc:  # an empty file is EOFError ("No data left in file")
        raise ConfigError(
            f"{path} is not a readable .npz file ({exc or type(exc).__name__}): save it with "
            "numpy.savez(path, x=features, y=labels)"
        ) from None
    return _from_arrays(path.stem, x, y)


def _load_csv(path: Path) -> Dataset:
    if not path.is_file():
        raise ConfigError(f"dataset file {path} does not exist")
    with path.open(newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if rows and not _is_numeric_row(rows[0]):
        rows = rows[1:]  # a header row
    try:
        table = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError:
        raise ConfigError(
            f"{path}: every value must be numeric (last column the class label)"
        ) from None
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] < 2:
        raise ConfigError(f"{path}: need at least one row with one feature and a label column")
    return _from_arrays(path.stem, table[:, :-1], table[:, -1])


def _is_numeric_row(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def split_dataset(
    dataset: Dataset,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    standardize: bool = True,
) -> DataSplits:
    """Stratified train/validation/test split, deterministic under ``seed``.

    Standardisation (zero mean, unit variance per feature) is fitted on the train rows only and
    applied to all three, so nothing about validation or test leaks into training.
    """
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError("val_fraction and test_fraction must be in (0, 1) with a sum below 1")
    idx = np.arange(len(dataset))
    try:
        train_idx, rest_idx = train_test_split(
            idx, test_size=val_fraction + test_fraction, random_state=seed, stratify=dataset.y
        )
        val_idx, test_idx = train_test_split(
            rest_idx,
            test_size=test_fraction / (val_fraction + test_fraction),
            random_state=seed,
            stratify=dataset.y[rest_idx],
        )
    except ValueError as exc:  # a class too rare to appear in every split
        raise ConfigError(
            f"cannot split {dataset.name!r} stratified ({exc}): add rows to the rare classes"
        ) from None
    train_idx, val_idx, test_idx = np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
    x = dataset.x
    if standardize:
        scaler = StandardScaler().fit(x[train_idx])
        mean = scaler.mean_.astype(np.float32)
        # Constant features get scale 1 (StandardScaler does the same), not a division by zero.
        std = scaler.scale_.astype(np.float32)
        x = ((x - mean) / std).astype(np.float32)
    else:
        mean = np.zeros(x.shape[1], dtype=np.float32)
        std = np.ones(x.shape[1], dtype=np.float32)
    k = dataset.num_classes
    return DataSplits(
        train=Dataset(f"{dataset.name}/train", x[train_idx], dataset.y[train_idx], k),
        validation=Dataset(f"{dataset.name}/validation", x[val_idx], dataset.y[val_idx], k),
        test=Dataset(f"{dataset.name}/test", x[test_idx], dataset.y[test_idx], k),
        mean=mean,
        scale=std,
    )


def check_fits(data: Dataset, input_dim: int, num_classes: int, *, task: str = "the task") -> None:
    """Refuse (one line, with the fix) data the task's model cannot train on — checked before a
    trainer joins, so no bond is posted for data that would crash in round 1."""
    features = int(data.x.shape[1]) if data.x.ndim == 2 else -1
    if len(data) == 0:
        raise ConfigError(f"dataset {data.name!r} has no rows: give data with at least one row")
    if features != int(input_dim):
        raise ConfigError(
            f"dataset {data.name!r} has {features} features per row but {task}'s model takes "
            f"{input_dim}: give data with {input_dim} features (see `fedmarket task show`)"
        )
    if int(data.num_classes) > int(num_classes):
        raise ConfigError(
            f"dataset {data.name!r} has {data.num_classes} classes but {task}'s model predicts "
            f"{num_classes}: give data labelled with at most {num_classes} classes"
        )
