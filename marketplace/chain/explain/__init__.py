"""Contract errors in words, with the fix.

The contracts revert with custom errors (``ParticipantRegistryUnbondingNotReleased(account, at)``);
:func:`explain` turns the decoded name and arguments into one sentence a person can act on:
amounts in tokens, times as dates with "in 12 min", phases and roles by name, and what to do next.
The sentences live per contract in this package (:mod:`.task_market`, :mod:`.registry` — with the
token's and the OpenZeppelin libraries' errors —, :mod:`.data_sourcing`, :mod:`.model_market`,
:mod:`.model_versions`, :mod:`.efficacy_market`); every custom error in a deployable contract's
ABI has one (``tests/test_explain.py`` checks it against the packaged ABIs).

The convention a test checks: a sentence is one line, names the cause, then after ": " or "; "
the fix, which contains one of :data:`FIX_MARKERS` — a ``fedmarket`` command to run, "wait" for a
time or another party, "try again" after changing something, "nothing to do" when the goal is
already reached, or "report" for what no CLI command can cause (an internal invariant broke, a
hostile token or a hand-made call: :data:`._words.BUG`, the transaction was not applied). It
never shows a raw epoch or a wei amount. An error without an entry (say, one added to a contract
since) is shown by its name and formatted arguments (still one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marketplace.chain.explain import (
    data_sourcing,
    efficacy_market,
    model_market,
    model_versions,
    registry,
    task_market,
)
from marketplace.chain.explain._words import Template, phase, tok
from marketplace.chain.holds import StakeHold
from marketplace.units import describe_time

#: What the fix part of every sentence contains (one of them at least).
FIX_MARKERS = ("`fedmarket ", "wait", "try again", "nothing to do", "report")

TEMPLATES: dict[str, Template] = {
    **registry.TEMPLATES,
    **task_market.TEMPLATES,
    **data_sourcing.TEMPLATES,
    **model_market.TEMPLATES,
    **model_versions.TEMPLATES,
    **efficacy_market.TEMPLATES,
}


_HELD = {"ParticipantRegistryInsufficientStake"}


def explain(name: str | None, args: Sequence[Any], holds: Sequence[StakeHold] = ()) -> str | None:
    """One sentence for the custom error ``name`` with ``args``, or ``None`` if unknown.

    ``holds`` (from :func:`marketplace.chain.holds.stake_holds`) names the tasks holding the
    stake of a stake error: "… stake locked until 2026-12-09 14:00 UTC (in 7 d) by task 3"."""
    if name is None:
        return None
    template = TEMPLATES.get(name)
    if template is None:
        return None
    try:
        text = template(tuple(args))
    except (IndexError, TypeError, ValueError):
        return None
    if holds and name in _HELD:
        text += "; " + held_by(holds)
    return text


def held_by(holds: Sequence[StakeHold]) -> str:
    """The words naming the holding tasks: stake locked until DATE by task N (its phase)."""
    parts = [
        f"until {describe_time(h.until)} by task {h.task_id} ({h.phase})" if h.until
        else f"by task {h.task_id} ({h.phase})"
        for h in holds
    ]  # fmt: skip
    return "stake locked " + ", ".join(parts)


_AMOUNTS = {"budget", "paid", "refunded", "trainerBond", "disputeBond", "bondsHeld", "minStake",
            "leadingStake", "committeeStake", "oracleSlash"}  # fmt: skip
_TIMES = {"joinDeadline", "phaseDeadline", "claimsOpenAt", "claimDeadline", "stakeLockedUntil"}
_DURATIONS = {"roundDuration", "commitDuration", "revealDuration", "disputeDuration",
              "claimDuration"}  # fmt: skip


def humanize_task(fields: dict[str, Any], *, now: float | None = None) -> dict[str, str]:
    """A task's on-chain fields for people: the phase by name, amounts in tokens, times as dates
    with "in 12 min", durations in minutes (keys as the contract names them)."""
    from marketplace.units import relative

    out: dict[str, str] = {}
    for key, value in fields.items():
        if key == "phaseName":
            continue
        if key == "phase":
            out[key] = phase(value)
        elif key in _AMOUNTS:
            out[key] = tok(value)
        elif key in _TIMES:
            out[key] = "—" if int(value) == 0 else describe_time(int(value), now=now)
        elif key in _DURATIONS:
            out[key] = relative(int(value)).removeprefix("in ")
        else:
            out[key] = str(value)
    return out
