"""A data owner's privacy-preserving sketch: per-class counts and quantiles of task projections.

The task fixes a :class:`SketchSpec`: its seed draws ``m`` unit directions in feature space
(``m < d``, so a projection cannot be inverted), and ``Q`` quantile levels ``(j + 1/2) / Q``. An
owner's sketch holds, per class, its row count and, for each direction, the ``Q`` quantiles of its
rows' projections on that direction (order statistics: each number is one row's projection on one
direction, never a row and never an average of rows). A class with fewer than
``spec.min_class_count`` rows publishes its count only.

Sketches travel as canonical JSON with every quantile an integer number of ``1e-6`` steps, so the
same data gives the same bytes on every machine; :func:`parse_sketch` checks a received sketch
(size, schema, task, class set, shapes, monotone quantiles, the count against the offer's declared
sample count) and raises :class:`~marketplace.errors.InvalidSketchError` with the reason. No pickle.

Example
-------
>>> spec = SketchSpec(task_seed=7, input_dim=64, num_classes=10)
>>> sketch = build_sketch(x, y, spec)
>>> same = parse_sketch(sketch.to_json(), spec, declared_samples=len(y))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from marketplace.errors import ConfigError, InvalidSketchError
from marketplace.fl.seeding import derive_seed
from marketplace.jsonlimits import NestingError, shallow_json

SKETCH_VERSION = 1
QUANTILE_SCALE = 10**6
"""A published quantile is ``round(value * QUANTILE_SCALE)`` (features are standardised)."""
MAX_SKETCH_BYTES = 1 << 20
MAX_ABS_QUANTILE = 10**12  # |value| <= 1e6 after scaling: anything larger is not standardised data
MAX_BASIS_COSINE = 0.8
"""Largest ``|cos|`` an owner accepts between two directions of a published basis (see
:func:`check_basis`)."""


@dataclass(frozen=True)
class SketchSpec:
    """What a task fixes about sketches: feature space, classes, directions and quantile levels.

    Parameters
    ----------
    task_seed : int
        Seeds the projection directions (every party derives the same ones).
    input_dim : int
        Number of features ``d`` (after the task's standardisation).
    num_classes : int
        The task's label set is ``0..num_classes-1``.
    num_directions : int
        ``m`` projection directions; must be below ``input_dim`` (a projection on ``d`` or more
        directions could be inverted).
    num_quantiles : int
        ``Q`` quantile levels per direction.
    min_class_count : int
        Classes with fewer rows publish their count only.
    basis : tuple of tuple of int, optional
        Directions the task publishes (``1e-6`` steps, ``num_directions`` rows of ``input_dim``),
        e.g. :func:`discriminant_basis` of the requester's validation set; without it the
        directions are drawn from ``task_seed``.
    """

    task_seed: int
    input_dim: int
    num_classes: int
    num_directions: int = 16
    num_quantiles: int = 16
    min_class_count: int = 5
    basis: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError("a sketch needs a label set of at least 2 classes")
        if self.input_dim < 2:
            raise ConfigError("a sketch needs at least 2 features")
        if not 1 <= self.num_directions < self.input_dim:
            raise ConfigError(
                f"num_directions must be in 1..{self.input_dim - 1} (fewer than the features, so "
                f"a projection cannot be inverted), got {self.num_directions}"
            )
        if not 2 <= self.num_quantiles <= 256:
            raise ConfigError(f"num_quantiles must be in 2..256, got {self.num_quantiles}")
        if self.min_class_count < 1:
            raise ConfigError("min_class_count must be at least 1")
        if self.basis is not None:
            shape_ok = len(self.basis) == self.num_directions and all(
                len(row) == self.input_dim and any(row) for row in self.basis
            )
            if not shape_ok:
                raise ConfigError(
                    f"basis must be {self.num_directions} non-zero rows of {self.input_dim} ints"
                )

    def as_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able mapping (what the data request publishes)."""
        return {
            "basis": None if self.basis is None else [list(r) for r in self.basis],
            "task_seed": self.task_seed,
            "input_dim": self.input_dim,
            "num_classes": self.num_classes,
            "num_directions": self.num_directions,
            "num_quantiles": self.num_quantiles,
            "min_class_count": self.min_class_count,
        }

    @cached_property
    def digest(self) -> str:
        """Hex sha256 of the canonical spec: a sketch names the spec it was built under."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @cached_property
    def directions(self) -> np.ndarray:
        """``(m, d)`` float64 unit vectors: the published basis, else drawn from the task seed."""
        if self.basis is not None:
            raw = np.array(self.basis, dtype=np.float64)
        else:
            seed = derive_seed(self.task_seed, "sourcing", "directions")
            rng = np.random.Generator(np.random.PCG64(seed))
            raw = rng.standard_normal((self.num_directions, self.input_dim))
        unit: np.ndarray = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        return unit

    @property
    def levels(self) -> np.ndarray:
        """The ``Q`` quantile levels ``(j + 1/2) / Q``."""
        return (np.arange(self.num_quantiles) + 0.5) / self.num_quantiles


@dataclass(frozen=True, eq=False)
class Sketch:
    """A data owner's sketch.

    Attributes
    ----------
    spec_digest : str
        :attr:`SketchSpec.digest` of the task it answers.
    counts : tuple of int
        Rows per class.
    quantiles : tuple of (ndarray or None)
        Per class: ``(m, Q)`` int64 quantiles in ``1e-6`` steps, or ``None`` for a class below
        ``min_class_count``.
    """

    spec_digest: str
    counts: tuple[int, ...]
    quantiles: tuple[np.ndarray | None, ...]

    @property
    def num_samples(self) -> int:
        """Total rows."""
        return sum(self.counts)

    def quantile_values(self, c: int) -> np.ndarray | None:
        """Class ``c``'s quantiles as floats ``(m, Q)`` (``None`` when unpublished)."""
        q = self.quantiles[c]
        return None if q is None else q.astype(np.float64) / QUANTILE_SCALE

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (integers only)."""
        return {
            "version": SKETCH_VERSION,
            "spec": self.spec_digest,
            "num_samples": self.num_samples,
            "counts": list(self.counts),
            "quantiles": [None if q is None else q.tolist() for q in self.quantiles],
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no spaces): equal sketches give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        """Hex sha256 of :meth:`to_json` (what an offer commits to beside the sketch's CID)."""
        return hashlib.sha256(self.to_json()).hexdigest()


def discriminant_basis(
    x: np.ndarray, y: np.ndarray, *, num_classes: int, num_directions: int, seed: int
) -> tuple[tuple[int, ...], ...]:
    """A task basis from the requester's validation set: its linear discriminant directions
    (at most ``num_classes - 1``, shrinkage LDA), completed with seeded random directions.

    Publishing it reveals which feature directions separate the requester's classes, nothing
    about single rows; it makes class-conditional distances far more telling than random
    projections. Integers in ``1e-6`` steps, so every party uses the same numbers.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    if not 1 <= num_directions < d:
        raise ConfigError(f"num_directions must be in 1..{d - 1}, got {num_directions}")
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x, y)
    k = min(num_directions, num_classes - 1, lda.scalings_.shape[1])
    dirs = lda.scalings_[:, :k].T
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "sourcing", "basis")))
    extra = rng.standard_normal((num_directions - k, d))
    extra = extra / np.linalg.norm(extra, axis=1, keepdims=True)
    full = np.vstack([dirs, extra])
    return tuple(tuple(int(v) for v in np.rint(row * QUANTILE_SCALE)) for row in full)


def check_basis(spec: SketchSpec) -> None:
    """Refuse (:class:`ConfigError`, with the reason) a published basis with two near-parallel
    directions. The owner's side of the request: the requester chooses the basis.

    Near-parallel directions (say ``w`` and ``w + 0.01 e_j``) sort a class's rows alike, so the
    same row sits at the same quantile level on each of them and the differences of their
    quantiles spell out that row's features: on digits, such a basis of 63 directions gives back
    half the published quantile columns as a real row's features to within 0.05. Directions with
    ``|cos| <= MAX_BASIS_COSINE`` did not (0 of 160 columns). Honest bases are far from the bound
    (the discriminant basis of digits: 0.24 with 9 directions, 0.47 when completed to 63 with
    random ones). A seeded basis (``basis=None``) is not checked: its directions are not chosen.
    This blocks the simple linking attack, not every one (docs/security.md).
    """
    if spec.basis is None:
        return
    unit = spec.directions
    gram = np.abs(unit @ unit.T)
    np.fill_diagonal(gram, 0.0)
    i, j = np.unravel_index(int(np.argmax(gram)), gram.shape)
    if gram[i, j] > MAX_BASIS_COSINE:
        raise ConfigError(
            f"the task's sketch basis has directions {min(i, j)} and {max(i, j)} at |cos| "
            f"{gram[i, j]:.3f} > {MAX_BASIS_COSINE}: near-parallel directions would let the "
            "committee link your rows across directions and read them back; do not offer to this "
            "request"
        )


def build_sketch(
    x: np.ndarray, y: np.ndarray, spec: SketchSpec, *, min_class_count: int | None = None
) -> Sketch:
    """Sketch rows ``x`` ``(n, d)`` with labels ``y`` ``(n,)`` under the task's ``spec``.

    ``min_class_count`` overrides the spec's (the committee sketches its own validation set with
    1, since that sketch is never published).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != spec.input_dim or y.shape != (x.shape[0],):
        raise ConfigError(
            f"sketch input must be x (n, {spec.input_dim}) and y (n,), got {x.shape} and {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise ConfigError(f"labels must lie in the task's label set 0..{spec.num_classes - 1}")
    if not np.isfinite(x).all():
        raise ConfigError("the data contains NaN or Inf: clean it before sketching")
    floor = spec.min_class_count if min_class_count is None else min_class_count
    proj = x @ spec.directions.T  # (n, m)
    counts = np.bincount(y, minlength=spec.num_classes)
    quantiles: list[np.ndarray | None] = []
    for c in range(spec.num_classes):
        if counts[c] < floor:
            quantiles.append(None)
            continue
        # inverted_cdf: every quantile is one row's projection (an order statistic), not a mix.
        q = np.quantile(proj[y == c], spec.levels, axis=0, method="inverted_cdf").T  # (m, Q)
        quantiles.append(np.rint(q * QUANTILE_SCALE).astype(np.int64))
    return Sketch(spec.digest, tuple(int(v) for v in counts), tuple(quantiles))


def parse_sketch(data: bytes | str, spec: SketchSpec, *, declared_samples: int) -> Sketch:
    """Decode and check a received sketch; raise :class:`InvalidSketchError` naming the fault.

    Parameters
    ----------
    data : bytes or str
        The sketch's JSON as fetched (the caller has checked it against the offer's digest).
    spec : SketchSpec
        The task's spec: the sketch must name it and match its class set and shapes.
    declared_samples : int
        The sample count the offer declared (on-chain): it must equal the sketch's total.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_SKETCH_BYTES:
        raise InvalidSketchError(f"sketch is {len(raw)} bytes, above {MAX_SKETCH_BYTES}")
    try:
        doc = shallow_json(raw)
    except NestingError as exc:
        raise InvalidSketchError(f"sketch {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSketchError(f"sketch is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise InvalidSketchError("sketch must be a JSON object")
    expected = {"version", "spec", "num_samples", "counts", "quantiles"}
    if set(doc) != expected:
        raise InvalidSketchError(f"sketch keys must be {sorted(expected)}, got {sorted(doc)}")
    if doc["version"] != SKETCH_VERSION:
        raise InvalidSketchError(f"sketch version {doc['version']!r} is not {SKETCH_VERSION}")
    if doc["spec"] != spec.digest:
        raise InvalidSketchError("sketch was built for another task spec (wrong seed or schema)")
    counts = doc["counts"]
    if not isinstance(counts, list) or len(counts) != spec.num_classes:
        raise InvalidSketchError(
            f"sketch must count {spec.num_classes} classes (the task's label set)"
        )
    if not all(_is_int(v) and v >= 0 for v in counts):
        raise InvalidSketchError("class counts must be non-negative integers")
    total = sum(counts)
    if not _is_int(doc["num_samples"]) or doc["num_samples"] != total:
        raise InvalidSketchError(f"num_samples {doc['num_samples']!r} != sum of counts {total}")
    if total != declared_samples:
        raise InvalidSketchError(
            f"sketch counts {total} rows but the offer declares {declared_samples}"
        )
    if total == 0:
        raise InvalidSketchError("sketch describes no rows")
    qs = doc["quantiles"]
    if not isinstance(qs, list) or len(qs) != spec.num_classes:
        raise InvalidSketchError(f"quantiles must list {spec.num_classes} classes")
    parsed: list[np.ndarray | None] = []
    for c, (n_c, q) in enumerate(zip(counts, qs, strict=True)):
        if n_c < spec.min_class_count:
            if q is not None:
                raise InvalidSketchError(
                    f"class {c} has {n_c} rows (< {spec.min_class_count}): its quantiles must be "
                    "null (too few rows to publish)"
                )
            parsed.append(None)
            continue
        parsed.append(_parse_class_quantiles(c, q, spec))
    return Sketch(spec.digest, tuple(int(v) for v in counts), tuple(parsed))


def _parse_class_quantiles(c: int, q: object, spec: SketchSpec) -> np.ndarray:
    shape = (spec.num_directions, spec.num_quantiles)
    if not (
        isinstance(q, list)
        and len(q) == shape[0]
        and all(isinstance(row, list) and len(row) == shape[1] for row in q)
    ):
        raise InvalidSketchError(f"class {c} quantiles must be a {shape[0]}x{shape[1]} array")
    if not all(_is_int(v) and abs(v) <= MAX_ABS_QUANTILE for row in q for v in row):
        raise InvalidSketchError(f"class {c} quantiles must be bounded integers")
    arr = np.array(q, dtype=np.int64)
    if (np.diff(arr, axis=1) < 0).any():
        raise InvalidSketchError(f"class {c} quantiles must be non-decreasing along each direction")
    return arr


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
