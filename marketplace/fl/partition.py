"""Partitioners: split a training set's rows among trainers, deterministically under a seed.

Every partitioner returns a ``Partition``: one sorted ``int64`` index array per trainer, disjoint,
covering the rows it assigns. :func:`label_skew` measures how far each trainer's label
distribution is from the global one (total-variation distance: 0 = identical, 1 = disjoint).

Example
-------
>>> parts = dirichlet_partition(labels, num_clients=8, alpha=0.3, seed=0)
>>> label_skew(parts, labels).mean  # grows as alpha shrinks
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.errors import ConfigError

Partition = list[np.ndarray]
"""One sorted int64 array of row indices per trainer."""

PARTITIONERS = ("iid", "dirichlet", "shards", "quantity_skew")


def _check_clients(n: int, num_clients: int, min_size: int = 1) -> None:
    if num_clients < 1:
        raise ConfigError("num_clients must be at least 1")
    if n < num_clients * min_size:
        raise ConfigError(
            f"{n} rows cannot give {num_clients} trainers {min_size} row(s) each: "
            "use fewer trainers or more data"
        )


def _finish(parts: Sequence[np.ndarray]) -> Partition:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def iid_partition(n: int, *, num_clients: int, seed: int = 0) -> Partition:
    """Shuffle the ``n`` rows and deal them into ``num_clients`` near-equal parts."""
    _check_clients(n, num_clients)
    perm = np.random.default_rng(seed).permutation(n)
    return _finish(np.array_split(perm, num_clients))


def dirichlet_partition(
    labels: np.ndarray,
    *,
    num_clients: int,
    alpha: float,
    seed: int = 0,
    min_size: int = 10,
    max_attempts: int = 100,
) -> Partition:
    """Label skew: each class's rows are split among trainers in proportions ~ Dirichlet(alpha).

    Small ``alpha`` (0.1) gives each trainer few classes; large ``alpha`` (100) is nearly IID.
    Draws are repeated (up to ``max_attempts``) until every trainer holds at least ``min_size``
    rows, as in Hsu et al. (2019); the whole sequence is fixed by ``seed``.
    """
    if alpha <= 0:
        raise ConfigError(f"Dirichlet alpha must be positive, got {alpha}")
    y = np.asarray(labels)
    _check_clients(y.shape[0], num_clients, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(max_attempts):
        buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * rows.shape[0]).astype(np.int64)
            for client, chunk in enumerate(np.split(rows, cuts)):
                buckets[client].append(chunk)
        parts = [np.concatenate(b) for b in buckets]
        if min(p.shape[0] for p in parts) >= min_size:
            return _finish(parts)
    raise ConfigError(
        f"no Dirichlet({alpha}) draw gave every one of {num_clients} trainers {min_size} rows in "
        f"{max_attempts} attempts: raise alpha or lower min_size"
    )


def shard_partition(
    labels: np.ndarray, *, num_clients: int, shards_per_client: int = 2, seed: int = 0
) -> Partition:
    """McMahan et al.'s pathological split: sort rows by label, cut into equal shards, give each
    trainer ``shards_per_client`` random shards (so it sees about that many classes)."""
    y = np.asarray(labels)
    num_shards = num_clients * shards_per_client
    _check_clients(y.shape[0], num_shards)
    rng = np.random.default_rng(seed)
    # Shuffle first so that rows of one class are in random order inside the label sort.
    perm = rng.permutation(y.shape[0])
    order = perm[np.argsort(y[perm], kind="stable")]
    shards = np.array_split(order, num_shards)
    shard_ids = rng.permutation(num_shards)
    return _finish(
        [
            np.concatenate(
                [shards[s] for s in shard_ids[i * shards_per_client : (i + 1) * shards_per_client]]
            )
            for i in range(num_clients)
        ]
    )


def quantity_skew_partition(
    n: int, *, num_clients: int, alpha: float = 1.0, seed: int = 0, min_size: int = 10
) -> Partition:
    """Unequal sizes, IID labels: sizes ~ Dirichlet(alpha) over trainers (at least ``min_size``)."""
    if alpha <= 0:
        raise ConfigError(f"Dirichlet alpha must be positive, got {alpha}")
    _check_clients(n, num_clients, min_size)
    rng = np.random.default_rng(seed)
    spare = n - num_clients * min_size
    shares = rng.dirichlet(np.full(num_clients, alpha))
    sizes = min_size + np.floor(shares * spare).astype(np.int64)
    sizes[np.argmax(shares)] += n - int(sizes.sum())  # rounding remainder to the largest share
    perm = rng.permutation(n)
    return _finish(np.split(perm, np.cumsum(sizes)[:-1]))


def partition(
    name: str,
    labels: np.ndarray,
    *,
    num_clients: int,
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 10,
) -> Partition:
    """Dispatch by name: ``"iid"``, ``"dirichlet"``, ``"shards"`` or ``"quantity_skew"``."""
    y = np.asarray(labels)
    if name == "iid":
        return iid_partition(y.shape[0], num_clients=num_clients, seed=seed)
    if name == "dirichlet":
        return dirichlet_partition(
            y, num_clients=num_clients, alpha=alpha, seed=seed, min_size=min_size
        )
    if name == "shards":
        return shard_partition(
            y, num_clients=num_clients, shards_per_client=shards_per_client, seed=seed
        )
    if name == "quantity_skew":
        return quantity_skew_partition(
            y.shape[0], num_clients=num_clients, alpha=alpha, seed=seed, min_size=min_size
        )
    raise ConfigError(f"unknown partitioner {name!r}: use one of {list(PARTITIONERS)}")


def add_label_noise(
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    fraction: float,
    num_classes: int,
    seed: int = 0,
) -> np.ndarray:
    """A copy of ``labels`` where ``fraction`` of the rows at ``indices`` (one trainer's part) get
    a different, uniformly drawn wrong label. The other rows are untouched."""
    if not 0 <= fraction <= 1:
        raise ConfigError(f"label-noise fraction must be in [0, 1], got {fraction}")
    if num_classes < 2:
        raise ConfigError("label noise needs at least 2 classes")
    rng = np.random.default_rng(seed)
    out = np.array(labels, dtype=np.int64, copy=True)
    idx = np.asarray(indices, dtype=np.int64)
    chosen = rng.choice(idx, size=round(fraction * idx.shape[0]), replace=False)
    # An offset in 1..K-1 modulo K is a uniformly drawn label that is never the true one.
    offsets = rng.integers(1, num_classes, size=chosen.shape[0])
    out[chosen] = (out[chosen] + offsets) % num_classes
    return out


@dataclass(frozen=True)
class LabelSkew:
    """Total-variation distance of each trainer's label distribution from the global one."""

    per_client: tuple[float, ...]
    mean: float
    max: float


def label_distribution(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class frequencies (sums to 1; all zeros for no rows)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    total = counts.sum()
    return counts / total if total else counts


def label_skew(
    parts: Sequence[np.ndarray], labels: np.ndarray, num_classes: int | None = None
) -> LabelSkew:
    """Per-trainer TV distance ``0.5 * sum|p_client - p_global|`` over the partitioned rows."""
    y = np.asarray(labels, dtype=np.int64)
    k = int(num_classes if num_classes is not None else y.max() + 1)
    assigned = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts else y[:0]
    global_dist = label_distribution(y[assigned], k)
    per = tuple(
        float(
            0.5
            * np.abs(label_distribution(y[np.asarray(p, dtype=np.int64)], k) - global_dist).sum()
        )
        for p in parts
    )
    return LabelSkew(
        per_client=per,
        mean=float(np.mean(per)) if per else 0.0,
        max=float(np.max(per)) if per else 0.0,
    )
