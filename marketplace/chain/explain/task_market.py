"""TaskMarket's errors (and those of its libraries RoundBatch, CommitteeVote, TaskState)."""

from __future__ import annotations

from marketplace.chain.explain._words import BUG, Template, at, phase, role, short, span, tok
from marketplace.units import format_amount

_SHOW = "see `fedmarket task show {}`"
_NODE = "`fedmarket node run --task {}`"
_ORACLE = "`fedmarket oracle run --task {}`"

TEMPLATES: dict[str, Template] = {
    "TaskMarketUnknownTask": lambda a: f"there is no task {a[0]}: see `fedmarket task list`",
    "TaskMarketWrongPhase": lambda a: (
        f"task {a[0]} is in its {phase(a[1])} phase, where this is not possible: see "
        f"`fedmarket task show {a[0]}`"
    ),
    "TaskMarketDeadlinePassed": lambda a: (
        f"task {a[0]}: the deadline passed at {at(a[1])}, too late for this step: "
        f"{_SHOW.format(a[0])} (`fedmarket task advance {a[0]}` moves it on)"
    ),
    "TaskMarketTooEarly": lambda a: f"task {a[0]}: not before {at(a[1])}; try again then",
    "TaskMarketStakeTooLow": lambda a: (
        f"{a[0]} stakes {tok(a[1])}, the task needs {tok(a[2])}: run "
        f"`fedmarket stake {format_amount(max(0, int(a[2]) - int(a[1])))}`"
    ),
    "TaskMarketAlreadyJoined": lambda a: (
        f"{a[1]} already joined task {a[0]}: nothing to do; train with {_NODE.format(a[0])}"
    ),
    "TaskMarketTaskFull": lambda a: (
        f"task {a[0]} is full ({a[1]} trainers): pick another open task from `fedmarket task list`"
    ),
    "TaskMarketNotJoined": lambda a: (
        f"{a[1]} has not joined task {a[0]}: run `fedmarket task join {a[0]}` while it is open"
    ),
    "TaskMarketAlreadyClaimed": lambda a: (
        f"task {a[0]}: payout leaf {a[1]} is already claimed: nothing to do (see "
        f"`fedmarket rewards show --task {a[0]}`)"
    ),
    "TaskMarketBudgetExceeded": lambda a: (
        f"task {a[0]}: this claim would pay {tok(a[1])} of a {tok(a[2])} budget — the payout "
        "table does not belong to this task (a stale journal or report?); the transaction was "
        "not applied: report it"
    ),
    "TaskMarketNotRequester": lambda a: (
        f"{a[1]} is not the requester of task {a[0]}: run it with the requester's account "
        f"(`fedmarket --account ADDRESS …`; {_SHOW.format(a[0])})"
    ),
    "TaskMarketNotCommitteeMember": lambda a: (
        f"{a[1]} is not on task {a[0]}'s oracle committee: run it with a member's account "
        f"(`fedmarket --account ADDRESS …`; {_SHOW.format(a[0])})"
    ),
    "TaskMarketDurationTooLong": lambda a: (
        f"a duration of {span(a[0])} is above the protocol's cap of {span(a[1])}: run "
        "`fedmarket task create` again with a shorter --join-window/--round-duration/"
        "--phase-duration"
    ),
    "TaskMarketStakeBelowMinimum": lambda a: (
        f"a stake of {tok(a[0])} per seat or trainer is below the protocol minimum of "
        f"{tok(a[1])}: run `fedmarket task create` again with --min-stake/--oracle-slash of at "
        f"least {format_amount(int(a[1]))}"
    ),
    "TaskMarketBondBelowMinimum": lambda a: (
        f"a trainer bond of {tok(a[0])} is below the protocol minimum of {tok(a[1])} (one whole "
        "token of the task's token): run `fedmarket task create` again with a larger --bond"
    ),
    "TaskMarketSeatAlreadyAccepted": lambda a: (
        f"{a[1]} already accepted its seat on task {a[0]}: nothing to do; score it with "
        f"{_ORACLE.format(a[0])}"
    ),
    "TaskMarketInvalidSignature": lambda a: (
        f"task {a[0]}: the signature does not come from {a[1]} (a seat acceptance, or a "
        f"trainer's signed update leaf): sign with that account and try again, or report it"
    ),
    "TaskMarketSignatureExpired": lambda a: (
        f"a seat signature expired at {at(a[0])}: the oracle signs a new one with "
        "`fedmarket oracle sign-seat --task N` (or takes its seat with `fedmarket oracle accept "
        "--task N`) and the batch is sent again"
    ),
    "TaskMarketNoSignatures": lambda a: (
        f"no seat signature was given for task {a[0]}: pass the strings the oracles printed with "
        f"`fedmarket oracle sign-seat --task {a[0]}` to `fedmarket task seat {a[0]} SIG...`"
    ),
    "TaskMarketJoinRefused": lambda a: (
        f"task {a[0]}'s join gate refused {a[1]}: the task is sourced, only winners of its data "
        f"request may join — see `fedmarket sourcing show --task {a[0]}`"
    ),
    "TaskMarketRootStakeTooLow": lambda a: (
        f"task {a[0]}: root {short(a[1])} was revealed by {tok(a[2])} of committee stake, a "
        f"ruling needs {tok(a[3])}: pick a root with more support (see "
        f"`fedmarket task show {a[0]}`) and try again"
    ),
    "TaskMarketNothingToClaim": lambda a: (
        f"{a[1]} has nothing to claim in task {a[0]} (no fallback pay, deposit or stake held, "
        f"or it was taken already): see `fedmarket task show {a[0]}`"
    ),
    "TaskMarketZeroAddress": lambda a: (
        "an address given is zero: check the --oracle and token addresses and try again"
    ),
    "TaskMarketZeroHash": lambda a: (
        "a digest, commitment or root is zero: a client bug; the transaction was not applied, "
        "report it"
    ),
    "TaskMarketZeroBudget": lambda a: (
        "the budget must be more than 0: run `fedmarket task create --budget N` with N > 0"
    ),
    "TaskMarketAmountTooLarge": lambda a: (
        f"{tok(a[0])} does not fit the market's 128-bit accounting: try again with a smaller "
        "budget or stake"
    ),
    "TaskMarketInvalidRounds": lambda a: (
        f"{a[0]} rounds: a task has 1 to 1000; run `fedmarket task create --rounds N` with N "
        "in that range"
    ),
    "TaskMarketInvalidTrainerBounds": lambda a: (
        f"min {a[0]} / max {a[1]} trainers: need 1 <= --min-trainers <= --max-trainers; run "
        "`fedmarket task create` again"
    ),
    "TaskMarketInvalidReputation": lambda a: (
        f"a minimum reputation of {a[0]} ppm is above 1,000,000 ppm (100%): try again with a "
        "lower one"
    ),
    "TaskMarketZeroDuration": lambda a: (
        "a phase duration is 0: run `fedmarket task create` again with --round-duration and "
        "--phase-duration above 0"
    ),
    "TaskMarketDeadlineInPast": lambda a: (
        f"the join deadline {at(a[0])} is not in the future: run `fedmarket task create` again "
        "with a longer --join-window (or check the machine's clock)"
    ),
    "TaskMarketInvalidQuorum": lambda a: (
        f"a quorum of {int(a[0]) / 100:g}% of stake is not a strict majority (50% < quorum <= "
        "100%): try again with one in that range"
    ),
    "TaskMarketInvalidCommitteeSize": lambda a: (
        f"a committee of {a[0]} oracles: a task has 1 to 16; run `fedmarket task create` with "
        "1 to 16 --oracle"
    ),
    "TaskMarketDuplicateOracle": lambda a: (
        f"{a[0]} is named twice in the committee: run `fedmarket task create` with each "
        "--oracle once"
    ),
    "TaskMarketConflictOfInterest": lambda a: (
        f"{a[0]} would hold two roles in one task (requester, oracle, trainer): use another "
        "account for one of them (`fedmarket --account ADDRESS …`) and try again"
    ),
    "TaskMarketWrongRole": lambda a: (
        f"{a[0]} is not registered as {role(a[1])}: run `fedmarket register {role(a[1])} "
        "--stake N` with another account (an address has one role)"
    ),
    "TaskMarketReputationTooLow": lambda a: (
        f"{a[0]} has a reputation of {int(a[1]) / 10_000:g}%, the task needs "
        f"{int(a[2]) / 10_000:g}%: pick another task from `fedmarket task list`"
    ),
    "TaskMarketFeeOnTransfer": lambda a: (
        f"the token {a[0]} delivered {tok(a[2])} of {tok(a[1])} sent (a fee on transfer), which "
        "the market refuses: create the task with the deployment's reward token, or report it"
    ),
    "TaskMarketWrongRound": lambda a: (
        f"task {a[0]}: round {a[1]} is not the current round {a[2]}: the node catches up by "
        f"itself — restart {_NODE.format(a[0])}"
    ),
    "TaskMarketUpdateAlreadyCommitted": lambda a: (
        f"task {a[0]}: {a[2]} already committed its update for round {a[1]}: nothing to do; "
        f"wait for the next round ({_NODE.format(a[0])} resumes)"
    ),
    "TaskMarketZeroSamples": lambda a: (
        "an update claims 0 training samples: give the node non-empty --data and restart "
        "`fedmarket node run`"
    ),
    "TaskMarketInvalidModelRound": lambda a: (
        f"task {a[0]}: a model for round {a[1]} is outside 2..rounds+1: {BUG}"
    ),
    "TaskMarketRoundNotEnded": lambda a: (
        f"task {a[0]}: round {int(a[1]) - 1} has not ended, its model cannot be posted yet: "
        f"wait for the round's end ({_SHOW.format(a[0])})"
    ),
    "TaskMarketNoBond": lambda a: (
        f"{a[1]} has no bond in task {a[0]} (never joined, or took it back already): nothing "
        f"to do; see `fedmarket task show {a[0]}`"
    ),
    "TaskMarketScoreAlreadyCommitted": lambda a: (
        f"{a[1]} already committed its score for task {a[0]}: nothing to do; "
        f"{_ORACLE.format(a[0])} reveals it when the reveal phase opens"
    ),
    "TaskMarketNoCommitment": lambda a: (
        f"{a[1]} committed no score for task {a[0]}, so it has nothing to reveal: the commit "
        f"phase is over; see `fedmarket task show {a[0]}`"
    ),
    "TaskMarketAlreadyRevealed": lambda a: (
        f"{a[1]} already revealed its score for task {a[0]}: nothing to do; wait for the "
        "reveal phase to end"
    ),
    "TaskMarketCommitmentMismatch": lambda a: (
        f"task {a[0]}: what {a[1]} reveals does not hash to its commitment (the oracle's "
        f"journal was lost or edited): restart {_ORACLE.format(a[0])} from its home, or report it"
    ),
    "TaskMarketOracleNotSlashable": lambda a: (
        f"{a[1]} revealed task {a[0]}'s final root, so it cannot be slashed: nothing to do"
        " (report it if the slash came from `fedmarket oracle run`)"
    ),
    "TaskMarketOracleAlreadySlashed": lambda a: (
        f"{a[1]} was already slashed for task {a[0]}: nothing to do (see "
        f"`fedmarket task show {a[0]}`)"
    ),
    "TaskMarketNotParticipant": lambda a: (
        f"{a[1]} is neither on task {a[0]}'s committee nor a joined trainer, so it cannot "
        f"dispute it: run it with a participant's account ({_SHOW.format(a[0])})"
    ),
    "TaskMarketNotArbiter": lambda a: (
        f"{a[0]} is not the market's arbiter, only the arbiter resolves disputes: use the "
        "arbiter's account (see `fedmarket status`)"
    ),
    "TaskMarketRootNotRevealed": lambda a: (
        f"task {a[0]}: no oracle revealed root {short(a[1])}: pick a revealed root (see "
        f"`fedmarket task show {a[0]}`) and try again"
    ),
    "TaskMarketInvalidProof": lambda a: (
        f"task {a[0]}: the Merkle proof of payout leaf {a[1]} does not match the task's payout "
        f"root (a stale report?): run `fedmarket rewards claim --task {a[0]}` again, or report it"
    ),
    "TaskMarketRoundAlreadyBatched": lambda a: (
        f"task {a[0]}: round {a[1]} already has its batch of updates: nothing to do; wait for "
        f"the next round ({_NODE.format(a[0])} resumes)"
    ),
    "TaskMarketRoundHasDirectCommits": lambda a: (
        f"task {a[0]}: round {a[1]} already has {a[2]} direct commits, so it takes no batch: "
        f"nothing to do; wait for the next round ({_NODE.format(a[0])} resumes)"
    ),
    "TaskMarketInvalidBitmap": lambda a: (
        f"task {a[0]}: the batch's trainer bitmap ({a[1]} words) names a non-trainer or no one: "
        f"{BUG}"
    ),
    "TaskMarketLeafNotInBatch": lambda a: (
        f"task {a[0]}: {a[2]}'s round-{a[1]} leaf is not in the round's batch, so it cannot be "
        f"challenged: nothing to do ({_NODE.format(a[0])} checks batches itself)"
    ),
    "TaskMarketLeafGenuine": lambda a: (
        f"task {a[0]}: {a[2]}'s round-{a[1]} leaf is genuine (a member's signed leaf), the "
        f"batch is not forged: nothing to do (report it if {_NODE.format(a[0])} sent it)"
    ),
    "TaskMarketCloserNotSlashable": lambda a: (
        f"task {a[0]}: the closer {a[1]} of the forged batch has already settled (claimed or "
        "slashed): nothing is left to take; report the forgery"
    ),
    "TaskMarketLeafSettled": lambda a: (
        f"task {a[0]}: {a[2]}'s round-{a[1]} leaf was already settled: nothing to do (see "
        f"`fedmarket task show {a[0]}`)"
    ),
}
