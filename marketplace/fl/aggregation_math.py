"""The pure math of aggregation, on a float64 matrix ``X`` of shape ``(n, d)``: one row per update.

No torch, no I/O: every function is a deterministic function of its arguments (rows are taken in
the order given; callers sort them by sender first), unit-tested on tiny hand-checked arrays.
"""

from __future__ import annotations

import numpy as np

from marketplace.errors import InvalidUpdateError


def _matrix(x: np.ndarray) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        raise InvalidUpdateError(
            f"aggregation needs a non-empty (n, d) matrix, got shape {m.shape}"
        )
    if not np.isfinite(m).all():
        raise InvalidUpdateError("aggregation input contains NaN or Inf")
    return m


def weighted_mean(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_i w_i x_i / sum_i w_i`` (FedAvg with sample counts as weights)."""
    m = _matrix(x)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (m.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise InvalidUpdateError(
            "weights must be one non-negative value per row with a positive sum"
        )
    out: np.ndarray = (w[:, None] * m).sum(axis=0) / w.sum()
    return out


def coordinate_median(x: np.ndarray) -> np.ndarray:
    """Coordinate-wise median (mean of the two middle values when ``n`` is even)."""
    out: np.ndarray = np.median(_matrix(x), axis=0)
    return out


def trimmed_mean(x: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise mean after dropping the ``k = floor(beta * n)`` smallest and largest values.

    Yin et al. (2018). Requires ``0 <= beta < 0.5`` so that at least one value remains.
    """
    m = _matrix(x)
    if not 0 <= beta < 0.5:
        raise InvalidUpdateError(f"trimmed-mean beta must be in [0, 0.5), got {beta}")
    n = m.shape[0]
    k = int(np.floor(beta * n))
    if n - 2 * k < 1:
        raise InvalidUpdateError(f"trimming {k} from each end of {n} updates leaves none")
    ordered = np.sort(m, axis=0)
    out: np.ndarray = ordered[k : n - k].mean(axis=0)
    return out


def pairwise_sq_distances(x: np.ndarray) -> np.ndarray:
    """``D[i, j] = ||x_i - x_j||²``, from explicit differences (exact and symmetric, unlike the
    Gram-matrix shortcut, so every peer gets the same bits)."""
    m = _matrix(x)
    n = m.shape[0]
    d = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        diff = m[i + 1 :] - m[i]
        row = np.einsum("ij,ij->i", diff, diff)
        d[i, i + 1 :] = row
        d[i + 1 :, i] = row
    return d


def krum_scores(x: np.ndarray, f: int) -> np.ndarray:
    """Krum score of each row: sum of squared distances to its ``n - f - 2`` nearest other rows.

    Blanchard et al. (2017); requires ``n >= 2f + 3`` so that each score uses at least one
    neighbour.
    """
    m = _matrix(x)
    n = m.shape[0]
    if f < 0 or n < 2 * f + 3:
        raise InvalidUpdateError(
            f"Krum with f={f} needs at least {2 * f + 3} updates, got {n}: lower f or wait for more"
        )
    d = pairwise_sq_distances(m)
    k = n - f - 2
    scores = np.empty(n, dtype=np.float64)
    for i in range(n):
        others = np.delete(d[i], i)
        scores[i] = np.sort(others)[:k].sum()
    return scores


def krum_select(x: np.ndarray, f: int, m: int = 1) -> np.ndarray:
    """Indices of the ``m`` rows with the lowest Krum scores (ties broken by row order)."""
    n = np.asarray(x).shape[0]
    if not 1 <= m <= n:
        raise InvalidUpdateError(f"Multi-Krum m must be in 1..{n}, got {m}")
    scores = krum_scores(x, f)
    return np.sort(np.lexsort((np.arange(n), scores))[:m])


def multikrum(x: np.ndarray, f: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the ``m`` rows Krum trusts most; returns ``(aggregate, selected indices)``.

    ``m = 1`` is plain Krum (the single selected row).
    """
    chosen = krum_select(x, f, m)
    return _matrix(x)[chosen].mean(axis=0), chosen


def bulyan(x: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Bulyan (El Mhamdi et al., 2018): pick ``theta = n - 2f`` rows by repeated Krum, then per
    coordinate average the ``theta - 2f`` values closest to the median of the picked rows.

    Requires ``n >= 4f + 3``. Returns ``(aggregate, selected indices)``.
    """
    m = _matrix(x)
    n = m.shape[0]
    if f < 0 or n < 4 * f + 3:
        raise InvalidUpdateError(
            f"Bulyan with f={f} needs at least {4 * f + 3} updates, got {n}: lower f or use Krum"
        )
    remaining = list(range(n))
    chosen: list[int] = []
    theta = n - 2 * f
    while len(chosen) < theta:
        sub = m[remaining]
        # Krum on what is left; below 2f+3 rows fall back to f=0-style nearest-neighbour scoring.
        f_here = min(f, (len(remaining) - 3) // 2)
        best = int(krum_select(sub, max(f_here, 0), 1)[0]) if len(remaining) >= 3 else 0
        chosen.append(remaining.pop(best))
    picked = m[sorted(chosen)]
    beta = theta - 2 * f
    med = np.median(picked, axis=0)
    # Per coordinate, the beta values nearest the median (stable order for ties).
    order = np.argsort(np.abs(picked - med), axis=0, kind="stable")[:beta]
    closest = np.take_along_axis(picked, order, axis=0)
    return closest.mean(axis=0), np.array(sorted(chosen), dtype=np.int64)


def clip_rows(x: np.ndarray, tau: float) -> np.ndarray:
    """Each row scaled to L2 norm at most ``tau`` (rows of norm 0 stay 0)."""
    m = _matrix(x)
    if not tau > 0:
        raise InvalidUpdateError(f"clipping radius must be positive, got {tau}")
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    factor = np.minimum(1.0, tau / np.where(norms > 0, norms, 1.0))
    out: np.ndarray = m * factor[:, None]
    return out


def centered_clipping(
    x: np.ndarray, tau: float | None = None, *, iters: int = 3, center: np.ndarray | None = None
) -> np.ndarray:
    """Centered clipping (Karimireddy, He & Jaggi, 2021): ``iters`` times,
    ``v <- v + mean_i clip(x_i - v, tau)``.

    Starts from ``center`` (default: the coordinate-wise median, as this aggregator keeps no
    momentum between rounds). ``tau=None`` picks the median distance of the rows to the start,
    so at most half the rows are clipped at the first step.
    """
    m = _matrix(x)
    if iters < 1:
        raise InvalidUpdateError(f"centered clipping needs iters >= 1, got {iters}")
    v = np.median(m, axis=0) if center is None else np.asarray(center, dtype=np.float64)
    if v.shape != (m.shape[1],):
        raise InvalidUpdateError(f"center has shape {v.shape}, expected ({m.shape[1]},)")
    if tau is None:
        dist = np.sqrt(np.einsum("ij,ij->i", m - v, m - v))
        tau = float(np.median(dist))
        if tau == 0.0:
            return v
    for _ in range(iters):
        v = v + clip_rows(m - v, tau).mean(axis=0)
    return v


def bucket_means(x: np.ndarray, s: int, seed: int) -> np.ndarray:
    """Bucketing (Karimireddy, He & Jaggi, 2022): shuffle the rows with ``seed``, split them into
    ``ceil(n / s)`` buckets of ``s`` consecutive rows (the last may be smaller) and return the
    bucket means, one row each. A robust aggregator then combines the means, whose spread is
    ``sqrt(s)`` smaller for honest rows (better on non-IID data)."""
    m = _matrix(x)
    if s < 1:
        raise InvalidUpdateError(f"bucket size must be at least 1, got {s}")
    order = np.random.default_rng(seed).permutation(m.shape[0])
    shuffled = m[order]
    out: np.ndarray = np.stack([shuffled[i : i + s].mean(axis=0) for i in range(0, m.shape[0], s)])
    return out
