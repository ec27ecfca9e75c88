"""Flags on trainers, each with its evidence: invalid update, poisoner, free rider, copier.

The bits are fixed by the contract (``TaskMarket.claim(..., flags, ...)``)::

    1 INVALID     the update failed to decrypt, or its digest, shape, dtype or values were bad
    2 POISONER    a large negative contribution (below -k*MAD of the trainers' totals, or below an
                  absolute threshold), or updates that betray an attack (near-twins of another
                  trainer's, or a first layer concentrated on a few input features: see
                  :mod:`marketplace.valuation.update_flags`)
    4 FREE_RIDER  the update's norm is ~0 next to the round's median norm, or it just replays the
                  previous global model change
    8 COPIER      the update equals (cosine > 0.9999) one committed earlier in the round; the
                  earlier trainer keeps its credit

Evidence is a small JSON-able dict with no floats (numbers that are not integers are written as
strings with 9 significant digits), so it can go straight into the canonical report. Norms and
cosines use ``math.fsum`` (exactly rounded sums), so they do not depend on BLAS or SIMD width.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import median

import numpy as np

from marketplace.errors import ValuationError


class Flag(enum.IntFlag):
    """Bitmask of flags, as the contract reads them."""

    NONE = 0
    INVALID = 1
    POISONER = 2
    FREE_RIDER = 4
    COPIER = 8


FLAG_WORDS = {
    Flag.INVALID: "invalid update",
    Flag.POISONER: "poisoner",
    Flag.FREE_RIDER: "free rider",
    Flag.COPIER: "copier",
}


def flag_words(flags: int) -> list[str]:
    """Each set bit of a payout leaf's flags in words (an unknown bit as ``bit N``)."""
    words = [w for bit, w in FLAG_WORDS.items() if flags & int(bit)]
    rest = flags & ~sum(int(b) for b in FLAG_WORDS)
    words += [f"bit {i}" for i in range(rest.bit_length()) if rest >> i & 1]
    return words


@dataclass(frozen=True)
class FlagConfig:
    """Thresholds of the detectors.

    Attributes
    ----------
    poison_k : float
        A trainer whose total is negative and below ``median - poison_k * MAD`` is a poisoner.
    poison_abs_ppm : int or None
        A total at or below ``-poison_abs_ppm`` (ppm of one utility unit; default 10,000 = one
        accuracy point) is a poisoner whatever the spread. None disables the absolute rule.
    free_rider_ratio : float
        An update whose norm is at most this fraction of the round's median norm is a free rider.
    copy_cosine : float
        Cosine similarity above which an update is a copy (of an earlier one, or of the previous
        global model change for free riding).
    twin_ratio, twin_share : float
        Update-based POISONER rule (:mod:`marketplace.valuation.update_flags`): an update whose
        nearest other update is closer than ``twin_ratio`` times the round's median pairwise
        distance is a twin; a trainer that is one in at least ``twin_share`` of its rounds is
        flagged.
    concentration_k, concentration_threshold, concentration_min_rounds
        The input-concentration rule: the ``k`` largest per-feature excess shares of first-layer
        energy, averaged over at least ``min_rounds`` rounds, summing to at least the threshold
        (None, the default, disables the rule). It is off because a flag costs the trainer its
        bond and stake: 0.19, chosen on the benchmark's own runs, catches the pixel backdoor
        there but false-flagged up to 2 of 7 honest non-IID trainers on other seeds
        (docs/benchmarks.md); ``BACKDOOR_RULE`` turns it on for experiments.
    subspace_share, subspace_window, subspace_threshold
        The input-subspace rule (pixel-pattern backdoor, :mod:`marketplace.valuation.
        update_flags`): the validation inputs' least-varying directions that together carry at
        most ``subspace_share`` of their variance; a trainer whose first-layer change puts a
        share of its energy in those directions whose log exceeds the round's median over
        trainers by at least ``subspace_threshold``, in each of ``subspace_window`` consecutive
        rounds, is flagged. 0.7 lies between the honest maximum (0.61) and the attackers'
        minimum (0.81) measured on digits (docs/benchmarks.md); None disables the rule.
    trigger_threshold, trigger_min_rounds, trigger_every, trigger_rows, trigger_steps, \
trigger_penalty
        Trigger reverse-engineering (:mod:`marketplace.valuation.trigger_flags`): every
        ``trigger_every``-th round, a Neural-Cleanse mask per class on each trainer's local model
        (``trigger_rows`` validation inputs, ``trigger_steps`` Adam steps, L1 weight
        ``trigger_penalty``); a trainer whose median smallest log-mask excess over the round's
        trainers is at most ``-trigger_threshold`` over at least ``trigger_min_rounds`` observed
        rounds is flagged. None (the default) disables it: on Dirichlet(0.5) digits no threshold
        separates backdoor attackers from honest trainers that hold many rows of one class
        (docs/benchmarks.md); ``TRIGGER_RULE`` turns it on for experiments.
    """

    poison_k: float = 3.0
    poison_abs_ppm: int | None = 10_000
    free_rider_ratio: float = 0.01
    copy_cosine: float = 0.9999
    twin_ratio: float = 0.25
    twin_share: float = 0.5
    concentration_k: int = 4
    concentration_threshold: float | None = None
    concentration_min_rounds: int = 5
    subspace_share: float = 0.02
    subspace_window: int = 3
    subspace_threshold: float | None = 0.7
    trigger_threshold: float | None = None
    trigger_min_rounds: int = 3
    trigger_every: int = 4
    trigger_rows: int = 40
    trigger_steps: int = 200
    trigger_penalty: float = 0.15


#: The experimental input-concentration (pixel backdoor) rule at the threshold the benchmark chose.
BACKDOOR_RULE = FlagConfig(concentration_threshold=0.19)

#: The experimental trigger reverse-engineering rule, at the threshold chosen on seeds 0-2
#: (docs/benchmarks.md, "Trigger reverse-engineering"); it does not meet the goal on held-out seeds.
TRIGGER_RULE = FlagConfig(trigger_threshold=0.75)


@dataclass(frozen=True, eq=False)
class UpdateView:
    """What the detectors need of one round's update.

    Attributes
    ----------
    account : str
        The trainer's address.
    delta : numpy.ndarray
        The update as one flat float64 vector (see :func:`flatten_delta`).
    commit_order : int
        Position of its on-chain commitment in the round (earlier is smaller).
    """

    account: str
    delta: np.ndarray
    commit_order: int


@dataclass(frozen=True)
class Finding:
    """One flag raised on one trainer, with its evidence."""

    account: str
    flag: Flag
    evidence: Mapping[str, object] = field(hash=False)


@dataclass(frozen=True)
class FlagRecord:
    """All flags of one trainer: the OR of the bits, and every finding's evidence."""

    flags: Flag
    evidence: tuple[Mapping[str, object], ...]


def flatten_delta(delta: Mapping[str, object]) -> np.ndarray:
    """A ``{name: tensor or array}`` update as one float64 vector, in sorted-name order."""
    parts = []
    for name in sorted(delta):
        value = delta[name]
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        parts.append(np.asarray(array, dtype=np.float64).ravel())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _num(x: float) -> str:
    return f"{x:.9g}"


def _norm(v: np.ndarray) -> float:
    return math.sqrt(math.fsum((v * v).tolist()))


def _cosine(a: np.ndarray, b: np.ndarray, na: float, nb: float) -> float | None:
    if na == 0.0 or nb == 0.0 or a.shape != b.shape:
        return None
    return math.fsum((a * b).tolist()) / (na * nb)


def invalid_findings(invalid: Mapping[str, str], *, round: int) -> list[Finding]:
    """INVALID for each ``{account: reason}`` the caller found (decrypt/digest/shape/NaN)."""
    return [
        Finding(a, Flag.INVALID, {"flag": "invalid", "round": round, "reason": str(invalid[a])})
        for a in sorted(invalid, key=str.lower)
    ]


def free_rider_findings(
    updates: Sequence[UpdateView],
    *,
    round: int,
    global_delta: np.ndarray | None = None,
    config: FlagConfig = FlagConfig(),
) -> list[Finding]:
    """FREE_RIDER: norm <= ratio * the round's median norm, or a replay of the last global change.

    ``global_delta`` is the previous round's global model change (``w_t - w_{t-1}``), if any.
    """
    if not updates:
        return []
    norms = {u.account: _norm(u.delta) for u in updates}
    med = median(norms.values())
    g_norm = _norm(global_delta) if global_delta is not None else 0.0
    out = []
    for u in sorted(updates, key=lambda u: u.account.lower()):
        norm = norms[u.account]
        if norm <= config.free_rider_ratio * med:
            out.append(
                Finding(
                    u.account,
                    Flag.FREE_RIDER,
                    {
                        "flag": "free_rider",
                        "round": round,
                        "rule": "norm",
                        "norm": _num(norm),
                        "median_norm": _num(med),
                        "ratio": _num(norm / med) if med else "0",
                    },
                )
            )
            continue
        if global_delta is not None:
            cos = _cosine(u.delta, global_delta, norm, g_norm)
            if cos is not None and cos > config.copy_cosine:
                out.append(
                    Finding(
                        u.account,
                        Flag.FREE_RIDER,
                        {
                            "flag": "free_rider",
                            "round": round,
                            "rule": "replays_global_delta",
                            "cosine": _num(cos),
                        },
                    )
                )
    return out


def copier_findings(
    updates: Sequence[UpdateView], *, round: int, config: FlagConfig = FlagConfig()
) -> list[Finding]:
    """COPIER: an update whose cosine with an earlier-committed one exceeds ``copy_cosine``.

    Updates are ordered by ``(commit_order, account)``; the first of a group of copies is the
    original and is not flagged. Zero updates are left to the free-rider rule.
    """
    ordered = sorted(updates, key=lambda u: (u.commit_order, u.account.lower()))
    norms = [_norm(u.delta) for u in ordered]
    out = []
    for j, later in enumerate(ordered):
        for i in range(j):
            cos = _cosine(ordered[i].delta, later.delta, norms[i], norms[j])
            if cos is not None and cos > config.copy_cosine:
                out.append(
                    Finding(
                        later.account,
                        Flag.COPIER,
                        {
                            "flag": "copier",
                            "round": round,
                            "copied": ordered[i].account,
                            "cosine": _num(cos),
                            "commit_order": later.commit_order,
                            "original_commit_order": ordered[i].commit_order,
                        },
                    )
                )
                break
    return out


def poisoner_findings(
    totals_ppm: Mapping[str, int], *, config: FlagConfig = FlagConfig()
) -> list[Finding]:
    """POISONER: a negative total below ``median - k*MAD`` or at most ``-poison_abs_ppm``.

    Median and MAD are exact fractions of the integer totals, so the decision is exact.
    """
    if not totals_ppm:
        return []
    values = [Fraction(v) for v in totals_ppm.values()]
    med = median(values)
    mad = median(abs(v - med) for v in values)
    cut = med - Fraction(config.poison_k) * mad
    out = []
    for account in sorted(totals_ppm, key=str.lower):
        v = totals_ppm[account]
        by_mad = mad > 0 and v < 0 and v < cut
        by_abs = config.poison_abs_ppm is not None and v <= -config.poison_abs_ppm
        if by_mad or by_abs:
            out.append(
                Finding(
                    account,
                    Flag.POISONER,
                    {
                        "flag": "poisoner",
                        "rule": "mad" if by_mad else "absolute",
                        "total_ppm": v,
                        "median_ppm": _num(float(med)),
                        "mad_ppm": _num(float(mad)),
                        "k": _num(config.poison_k),
                        "abs_threshold_ppm": config.poison_abs_ppm,
                    },
                )
            )
    return out


def merge_findings(findings: Iterable[Finding]) -> dict[str, FlagRecord]:
    """One record per flagged account (sorted), evidence in a canonical order."""
    by_account: dict[str, list[Finding]] = {}
    for f in findings:
        if f.flag == Flag.NONE:
            raise ValuationError(f"a finding on {f.account} carries no flag bit")
        by_account.setdefault(f.account, []).append(f)
    out = {}
    for account in sorted(by_account, key=str.lower):
        items = by_account[account]
        flags = Flag.NONE
        for f in items:
            flags |= f.flag
        evidence = sorted(
            (dict(f.evidence) for f in items),
            key=lambda e: (int(e.get("round", -1)), str(e.get("flag")), repr(sorted(e.items()))),  # type: ignore[call-overload]
        )
        out[account] = FlagRecord(flags, tuple(evidence))
    return out
