"""Contract errors in words, with the fix.

The contracts revert with custom errors (``ParticipantRegistryUnbondingNotReleased(account, at)``);
:func:`explain` turns the decoded name and arguments into one sentence a person can act on:
amounts in tokens, times as dates with "in 12 min", and what to do next. An error without an entry
here is shown by its name and arguments (still one line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marketplace.chain.holds import StakeHold
from marketplace.chain.views import Phase
from marketplace.units import describe_time, format_amount


def _phase(value: Any) -> str:
    """The phase's name, from the one ``Phase`` enum that mirrors the contract."""
    try:
        return Phase(int(value)).name.lower()
    except (TypeError, ValueError):
        return str(value)


def _tok(value: Any) -> str:
    return f"{format_amount(int(value))} tokens"


_TEMPLATES: dict[str, Callable[[Sequence[Any]], str]] = {
    "ParticipantRegistryInsufficientStake": lambda a: (
        f"{a[0]} has {_tok(a[1])} of stake free, {_tok(a[2])} asked: the rest is reserved by "
        f"tasks it takes part in; use at most {format_amount(int(a[1]))} now, or wait until they "
        "release it (see `fedmarket status`)"
    ),
    "ParticipantRegistryUnbondingNotReleased": lambda a: (
        f"the unbonding stake of {a[0]} is released at {describe_time(int(a[1]))}: run "
        "`fedmarket withdraw` after that"
    ),
    "ParticipantRegistryAlreadyRegistered": lambda a: (
        f"{a[0]} is already registered: see `fedmarket status`; add stake with `fedmarket stake N`"
    ),
    "ParticipantRegistryNotRegistered": lambda a: (
        f"{a[0]} is not registered: run `fedmarket register ROLE --stake N` first"
    ),
    "ParticipantRegistryNothingToWithdraw": lambda a: (
        f"{a[0]} has nothing to withdraw: start unbonding with `fedmarket unstake N` first"
    ),
    "ParticipantRegistryZeroAmount": lambda a: "the amount must be more than 0",
    "TaskMarketUnknownTask": lambda a: f"there is no task {a[0]}: see `fedmarket task list`",
    "TaskMarketWrongPhase": lambda a: (
        f"task {a[0]} is in its {_phase(a[1])} phase, where this is not possible: see "
        f"`fedmarket task show {a[0]}`"
    ),
    "TaskMarketDeadlinePassed": lambda a: (
        f"task {a[0]}: the deadline passed at {describe_time(int(a[1]))}"
    ),
    "TaskMarketTooEarly": lambda a: (
        f"task {a[0]}: not before {describe_time(int(a[1]))}; try again then"
    ),
    "TaskMarketStakeTooLow": lambda a: (
        f"{a[0]} stakes {_tok(a[1])}, the task needs {_tok(a[2])}: run "
        f"`fedmarket stake {format_amount(max(0, int(a[2]) - int(a[1])))}`"
    ),
    "TaskMarketAlreadyJoined": lambda a: f"{a[1]} already joined task {a[0]}",
    "TaskMarketTaskFull": lambda a: f"task {a[0]} is full ({a[1]} trainers)",
    "TaskMarketNotJoined": lambda a: (
        f"{a[1]} has not joined task {a[0]}: run `fedmarket task join {a[0]}` while it is open"
    ),
    "TaskMarketAlreadyClaimed": lambda a: f"task {a[0]}: payout leaf {a[1]} is already claimed",
    "TaskMarketBudgetExceeded": lambda a: (
        f"task {a[0]}: this claim would pay {_tok(a[1])} of a {_tok(a[2])} budget — the payout "
        "table does not belong to this task (a stale journal or report?)"
    ),
    "TaskMarketNotRequester": lambda a: f"{a[1]} is not the requester of task {a[0]}",
    "TaskMarketNotCommitteeMember": lambda a: f"{a[1]} is not on task {a[0]}'s oracle committee",
    "ERC20InsufficientBalance": lambda a: (
        f"{a[0]} holds {_tok(a[1])}, needs {_tok(a[2])}: get tokens (on a devnet: "
        "`fedmarket --dev-account 0 faucet N --to ADDRESS`)"
    ),
    "ERC20InsufficientAllowance": lambda a: (
        f"allowance of {a[0]} is {_tok(a[1])}, needs {_tok(a[2])}"
    ),
}


_HELD = {"ParticipantRegistryInsufficientStake"}


def explain(name: str | None, args: Sequence[Any], holds: Sequence[StakeHold] = ()) -> str | None:
    """One sentence for the custom error ``name`` with ``args``, or ``None`` if unknown.

    ``holds`` (from :func:`marketplace.chain.holds.stake_holds`) names the tasks holding the
    stake of a stake error: "… stake locked until 2026-12-09 14:00 UTC (in 7 d) by task 3"."""
    if name is None:
        return None
    template = _TEMPLATES.get(name)
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
            out[key] = _phase(value)
        elif key in _AMOUNTS:
            out[key] = _tok(value)
        elif key in _TIMES:
            out[key] = "—" if int(value) == 0 else describe_time(int(value), now=now)
        elif key in _DURATIONS:
            out[key] = relative(int(value)).removeprefix("in ")
        else:
            out[key] = str(value)
    return out
