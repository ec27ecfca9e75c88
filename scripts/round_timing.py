"""Round-time summaries shared by the benchmarks: steady state apart from start-up.

Flower's Ray backend starts its actors inside the first round, and our peers fetch, compile and
warm caches in theirs; a mean over all rounds (or a median over few) mixes that one-off cost into
the per-round figure. Every engine is therefore reported the same way: the first round alone,
and the median of rounds 2+ as the steady state that ratios are computed on.
"""

from __future__ import annotations

import statistics
from typing import Any


def summarize_rounds(durations: list[float]) -> dict[str, Any]:
    """First round, steady-state median (rounds 2+) and mean of a list of round durations."""
    if not durations:
        raise ValueError("no rounds were timed")
    steady = durations[1:] or durations
    return {
        "round_durations": durations,
        "first_round_sec": durations[0],
        "steady_sec_per_round": statistics.median(steady),
        "steady_rounds": len(steady),
        "mean_sec_per_round": statistics.mean(durations),
    }
