"""``--secure-aggregation`` and its parameters for ``fedmarket task create``."""

from __future__ import annotations

import click

from marketplace.crypto.secagg import SECAGG_AGGREGATORS, SecAggTerms
from marketplace.errors import ConfigError
from node.cli.output import F


def secagg_options(fn: F) -> F:
    """``--secure-aggregation``, ``--secagg-clip`` and ``--secagg-threshold``."""
    for option in reversed(
        (
            click.option(
                "--secure-aggregation", is_flag=True,
                help="Peers learn only each round's sum (pairwise masks, Shamir shares of the "
                     "seeds for dropouts); each update is sealed to the committee alone. Needs "
                     f"--aggregator {' or '.join(SECAGG_AGGREGATORS)} and at least 3 trainers.",
            ),
            click.option(
                "--secagg-clip", type=float, default=1.0, show_default=True,
                help="L2 norm each trainer's update is clipped to before masking (the committee "
                     "checks it and flags violators).",
            ),
            click.option(
                "--secagg-threshold", type=int, default=None,
                help="Live trainers needed to unmask a round (default: a majority of the "
                     "trainers, floor(n/2)+1; up to n minus this many may drop out mid-round).",
            ),
        )
    ):  # fmt: skip
        fn = option(fn)
    return fn


def secagg_terms(enabled: bool, clip: float, threshold: int | None) -> SecAggTerms | None:
    """The task's ``secagg`` term from the options (``None`` when off)."""
    if not enabled:
        if threshold is not None or clip != 1.0:
            raise ConfigError(
                "--secagg-clip and --secagg-threshold configure secure aggregation: add "
                "--secure-aggregation, or drop them"
            )
        return None
    return SecAggTerms(clip_norm=clip, threshold=threshold)
