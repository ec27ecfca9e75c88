"""DataSourcing's errors: a task's data request (offers, committee selection, winners' pay)."""

from __future__ import annotations

from typing import Any

from marketplace.chain.explain._words import Template, at, tok
from marketplace.units import format_amount
from marketplace.valuation.flags import flag_words

_SHOW = "see `fedmarket sourcing show --task TASK`"


def _flags(value: Any) -> str:
    """A payout leaf's flag bits in words (``poisoner, free rider``)."""
    return ", ".join(flag_words(int(value))) or "no flag"


TEMPLATES: dict[str, Template] = {
    "DataSourcingUnknownRequest": lambda a: (
        f"there is no data request {a[0]}: the task has none yet — its requester publishes one "
        "with `fedmarket task request TASK_ID`"
    ),
    "DataSourcingNotTaskRequester": lambda a: (
        f"{a[1]} is not the requester of task {a[0]}: publish its data request with the "
        "requester's account (`fedmarket --account ADDRESS …`)"
    ),
    "DataSourcingTaskAlreadySourced": lambda a: (
        f"task {a[0]} already has a data request: nothing to do; see "
        f"`fedmarket sourcing show --task {a[0]}`"
    ),
    "DataSourcingBadBudget": lambda a: (
        f"a procurement budget of {tok(a[0])} is zero or too large: run "
        "`fedmarket task request TASK_ID --budget N` with a positive N"
    ),
    "DataSourcingBadCommittee": lambda a: (
        "the request's committee is empty, above 16, repeats an address or has a quorum of 0 or "
        "above its size: run `fedmarket task request` again with 1 to 16 distinct --oracle and "
        "--quorum <= their number"
    ),
    "DataSourcingBadSchedule": lambda a: (
        "the request's deadlines do not increase from now, or its selection window is under "
        "300 s (the committee needs that long to fetch up to 64 offers): run `fedmarket task "
        "request` again with --window 300 or more and --claim-window above 0"
    ),
    "DataSourcingBondBelowMinimum": lambda a: (
        f"an offer bond of {tok(a[0])} is below the protocol minimum of {tok(a[1])} (one whole "
        "token): run `fedmarket task request` again with a larger --offer-bond, or leave it out"
    ),
    "DataSourcingFeeOnTransfer": lambda a: (
        f"the token delivered {tok(a[1])} of the {tok(a[0])} pulled (it charges a fee on "
        "transfers), so the escrow would not add up: publish the request in a token without "
        "transfer fees and try again"
    ),
    "DataSourcingNotTrainer": lambda a: (
        f"{a[1]} is not registered as a trainer, and only an account that could join request "
        f"{a[0]}'s task if it won may offer data: run `fedmarket register trainer --stake N` "
        "first (with the task's minimum stake)"
    ),
    "DataSourcingStakeTooLow": lambda a: (
        f"{a[1]} has {tok(a[2])} of stake free, request {a[0]}'s task needs {tok(a[3])} of its "
        "trainers, so it could not join if it won: run `fedmarket stake "
        f"{format_amount(max(0, int(a[3]) - int(a[2])))}` (or wait for a task to release its "
        "reservation), then offer again"
    ),
    "DataSourcingReputationTooLow": lambda a: (
        f"{a[1]} has a reputation of {int(a[2]) / 10_000:g}%, request {a[0]}'s task needs "
        f"{int(a[3]) / 10_000:g}% of its trainers, so it could not join if it won: pick another "
        "task from `fedmarket task list`"
    ),
    "DataSourcingOffersFull": lambda a: (
        f"request {a[0]} already holds its maximum of {a[1]} offers: no more can be committed; "
        f"{_SHOW}"
    ),
    "DataSourcingNoBondsToForfeit": lambda a: (
        f"request {a[0]} holds no bond of an unrevealed offer (every offer was revealed, or the "
        "bonds were forfeited already): nothing to do"
    ),
    "DataSourcingWrongTime": lambda a: (
        f"request {a[0]}: this step's window turns at {at(a[1])}: wait until then if it is "
        f"ahead; if it is past, the step is over ({_SHOW})"
    ),
    "DataSourcingNotOracle": lambda a: (
        f"{a[1]} is not on request {a[0]}'s committee: run it with a member's account "
        f"(`fedmarket --account ADDRESS …`; {_SHOW})"
    ),
    "DataSourcingSeatAlreadyAccepted": lambda a: (
        f"{a[1]} already accepted its seat on request {a[0]}: nothing to do; next is "
        "`fedmarket sourcing select --task TASK` once the reveals are in"
    ),
    "DataSourcingSeatNotAccepted": lambda a: (
        f"{a[1]} did not accept its seat on request {a[0]} before offers closed, so it cannot "
        f"select: nothing to do ({_SHOW})"
    ),
    "DataSourcingEmptyCommitment": lambda a: (
        "an offer or selection commitment is zero: a client bug; the transaction was not "
        "applied, report it"
    ),
    "DataSourcingAlreadyCommitted": lambda a: (
        f"{a[1]} already committed to request {a[0]}: nothing to do; reveal it with "
        "`fedmarket offer reveal --task TASK` (an oracle: `fedmarket sourcing reveal --task "
        "TASK`) when reveals open"
    ),
    "DataSourcingRevealMismatch": lambda a: (
        f"request {a[0]}: what {a[1]} reveals does not match its commitment (its saved offer "
        "was lost or edited): run the reveal from the same --home again, or report it"
    ),
    "DataSourcingAlreadyRevealed": lambda a: (
        f"{a[1]} already revealed to request {a[0]}: nothing to do; wait for the selection "
        f"({_SHOW})"
    ),
    "DataSourcingZeroSamples": lambda a: (
        "the offer declares 0 samples: run `fedmarket offer submit` again with non-empty --data"
    ),
    "DataSourcingSelectionOverBudget": lambda a: (
        f"the selection pays {tok(a[0])}, above the {tok(a[1])} budget: the selection is wrong "
        "(a bug, or a dishonest oracle): do not reveal it; report it"
    ),
    "DataSourcingNotSelected": lambda a: (
        f"request {a[0]} has no final selection (no quorum yet, or it was cancelled): wait for "
        f"the committee's reveals ({_SHOW})"
    ),
    "DataSourcingBadProof": lambda a: (
        f"request {a[0]}: the proof does not place {a[1]} in the final selection (not a winner, "
        f"or a stale selection): {_SHOW}; report it if it lists you as a winner"
    ),
    "DataSourcingAlreadyRegistered": lambda a: (
        f"{a[1]} is already registered as a winner of request {a[0]}: nothing to do; join the "
        "task with `fedmarket task join TASK_ID`"
    ),
    "DataSourcingRoundsNotCompleted": lambda a: (
        f"{a[1]} has not trained every round of request {a[0]}'s task, so its payment is not "
        "due: train with `fedmarket node run --task TASK` and claim after the last round"
    ),
    "DataSourcingNothingToClaim": lambda a: (
        f"{a[1]} has nothing to claim from request {a[0]} (not a registered winner, or paid "
        "already): register first with `fedmarket sourcing register --task TASK`"
    ),
    "DataSourcingPayoutNotFinal": lambda a: (
        f"task {a[1]}'s payout table is not final yet (scoring or its dispute window is still "
        f"open), so request {a[0]}'s data payments cannot be checked against it: wait, then "
        "claim with `fedmarket sourcing claim --task TASK`"
    ),
    "DataSourcingBadPayoutLeaf": lambda a: (
        f"the payout row {a[1]} sent for request {a[0]} is not in its task's final payout "
        "table: claim with `fedmarket sourcing claim --task TASK`, which reads your row from "
        "the committee's published report"
    ),
    "DataSourcingWinnerFlagged": lambda a: (
        f"{a[1]} was flagged by the committee ({_flags(a[2])}), so its data payment for "
        f"request {a[0]} is withheld and returns to the requester: nothing to do "
        "(`fedmarket sourcing show --task TASK` says why)"
    ),
    "DataSourcingNotCancellable": lambda a: (
        f"request {a[0]} cannot be cancelled now (its selection is final, a window is still "
        f"open, or it was cancelled): wait for its windows to end ({_SHOW})"
    ),
    "DataSourcingNothingToRefund": lambda a: (
        f"request {a[0]} has nothing to refund now (spent, refunded, or the claim window is "
        f"open): try again after its claim deadline ({_SHOW})"
    ),
}
