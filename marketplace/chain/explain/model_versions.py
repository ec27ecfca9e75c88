"""ModelVersions' errors: a task's retention term, data withdrawals and unlearned versions."""

from __future__ import annotations

from marketplace.chain.explain._words import BUG, Template, at, named, short, tok

_REASONS = ("trained", "unlearned", "renewed")
_TERMS = {
    1: "the retention expiry is not in the future (give --retention-days > 0)",
    2: "the unlearning window is 0 or above 180 days (give --window-hours in that range)",
    3: "the quorum is 0 or above the committee's size (give --quorum in 1..committee size)",
    4: "the deposit is below the penalty for a missed deadline (raise --deposit or lower "
    "--penalty)",
}
_VERSIONS = "see `fedmarket data versions --task {}`"

TEMPLATES: dict[str, Template] = {
    "ModelVersionsUnknownTask": lambda a: (
        f"task {a[0]} has no retention terms registered: its requester runs "
        f"`fedmarket data register --task {a[0]}` first"
    ),
    "ModelVersionsAlreadyRegistered": lambda a: (
        f"task {a[0]}'s retention terms are already registered: nothing to do; "
        f"{_VERSIONS.format(a[0])}"
    ),
    "ModelVersionsNotRequester": lambda a: (
        f"{a[1]} is not the requester of task {a[0]}: run it with the requester's account "
        "(`fedmarket --account ADDRESS …`)"
    ),
    "ModelVersionsInvalidTerms": lambda a: (
        f"the retention terms are invalid: {_TERMS.get(int(a[0]), f'reason {a[0]}')}; run "
        "`fedmarket data register` again"
    ),
    "ModelVersionsNotProposer": lambda a: (
        f"{a[1]} may not propose versions of task {a[0]} (only its requester, committee or "
        f"trainers that did not withdraw): {_VERSIONS.format(a[0])}"
    ),
    "ModelVersionsNotCommittee": lambda a: (
        f"{a[1]} is not on task {a[0]}'s committee, only members attest versions: run it with "
        "a member's account (`fedmarket --account ADDRESS …`)"
    ),
    "ModelVersionsUnknownVersion": lambda a: (
        f"task {a[0]} has no version {a[1]}: {_VERSIONS.format(a[0])}"
    ),
    "ModelVersionsAlreadyAttested": lambda a: (
        f"{a[2]} already attested task {a[0]}'s version {a[1]}: nothing to do; wait for the "
        "rest of the quorum"
    ),
    "ModelVersionsInvalidLineage": lambda a: (
        f"task {a[0]}: a {named(a[1], _REASONS)} version with parent {a[2]} excluding "
        f"{a[3]} withdrawals does not follow the lineage: {BUG}"
    ),
    "ModelVersionsNotFinalModel": lambda a: (
        f"task {a[0]}: digest {short(a[1])} is not the task's final model {short(a[2])} (zero: "
        f"not posted yet): wait for the task to finish ({_VERSIONS.format(a[0])})"
    ),
    "ModelVersionsZeroDigest": lambda a: (
        "a model digest is zero: a client bug; the transaction was not applied, report it"
    ),
    "ModelVersionsNotTrainer": lambda a: (
        f"{a[1]} did not train in task {a[0]}, so it has no data there to withdraw: run "
        "`fedmarket data withdraw` with the trainer's account (`fedmarket --account ADDRESS …`)"
    ),
    "ModelVersionsAlreadyWithdrawn": lambda a: (
        f"{a[1]} already withdrew its data from task {a[0]}: nothing to do; "
        f"{_VERSIONS.format(a[0])}"
    ),
    "ModelVersionsNoWithdrawal": lambda a: (
        f"{a[1]} has no data withdrawal in task {a[0]}: withdraw first with "
        f"`fedmarket data withdraw --task {a[0]}`"
    ),
    "ModelVersionsDeadlineNotPassed": lambda a: (
        f"task {a[0]}: the unlearning deadline is {at(a[1])}; a penalty is due only after it: "
        "wait and try again then"
    ),
    "ModelVersionsDeadlineMet": lambda a: (
        f"task {a[0]}: withdrawal {a[1]} was unlearned in time, so no penalty is due: nothing "
        f"to do ({_VERSIONS.format(a[0])})"
    ),
    "ModelVersionsPenaltyPaid": lambda a: (
        f"task {a[0]}: the penalty of withdrawal {a[1]} was already paid: nothing to do"
        f" ({_VERSIONS.format(a[0])})"
    ),
    "ModelVersionsInvalidRenewal": lambda a: (
        f"task {a[0]}: a renewed expiry of {at(a[1])} is not after both now and the current "
        "expiry: try again with a later one"
    ),
    "ModelVersionsNoPendingRenewal": lambda a: (
        f"task {a[0]}: renewal {a[1]} is not the pending one (replaced or decided): "
        f"{_VERSIONS.format(a[0])} and try again"
    ),
    "ModelVersionsAlreadyApproved": lambda a: (
        f"{a[1]} already approved task {a[0]}'s pending renewal: nothing to do; wait for the "
        "other owners"
    ),
    "ModelVersionsFeeOnTransfer": lambda a: (
        f"the token {a[0]} delivered {tok(a[2])} of {tok(a[1])} sent (a fee on transfer), which "
        "the registry refuses: post the deposit in the deployment's reward token, or report it"
    ),
    "ModelVersionsDepositLocked": lambda a: (
        f"task {a[0]}'s deposit is locked until {at(a[1])} (the retention term, or an unlearning "
        "window after the last withdrawal): wait until then and try again"
    ),
    "ModelVersionsUnknownWithdrawal": lambda a: (
        f"task {a[0]}: an unlearning that forgets {a[1]} withdrawals names none recorded: "
        f"{_VERSIONS.format(a[0])}; report it if `fedmarket data unlearn` sent it"
    ),
    "ModelVersionsCalibrationCommitted": lambda a: (
        f"task {a[0]}: {a[3]} already committed its calibration update for round {a[2]} of the "
        f"unlearning of {a[1]} withdrawals: nothing to do; wait for the round to end"
    ),
}
