"""EfficacyMarket's errors. No ``fedmarket`` command drives this contract yet (it is called by
its own scripts and tests), so the fixes name the cause and what to wait for or report."""

from __future__ import annotations

from marketplace.chain.explain._words import BUG, Template, at, role, tok

TEMPLATES: dict[str, Template] = {
    "EfficacyMarketInvalidParams": lambda a: (
        "the efficacy offer's parameters are out of range (zero price or cap, a committee of "
        "0 or above 16, a quorum above it, windows out of order): fix them and try again"
    ),
    "EfficacyMarketUnknownOffer": lambda a: (
        f"there is no efficacy offer {a[0]}: check the id and try again"
    ),
    "EfficacyMarketWrongRole": lambda a: (
        f"{a[0]} is not registered as {role(a[1])}: run `fedmarket register {role(a[1])}` with "
        "that account first"
    ),
    "EfficacyMarketConflictOfInterest": lambda a: (
        f"{a[0]} would hold two roles in one efficacy offer, or appears twice: use another "
        "account and try again"
    ),
    "EfficacyMarketOutsideWindow": lambda a: (
        f"this step is open from {at(a[0])} to {at(a[1])}: wait for the window if it is ahead; "
        "if it is past, the step is over"
    ),
    "EfficacyMarketFull": lambda a: (
        f"the efficacy offer already has its {a[0]} data owners: no more are taken; try again with "
        "another offer"
    ),
    "EfficacyMarketNotCommitteeMember": lambda a: (
        f"{a[0]} is not on the efficacy offer's committee: run it with a member's account and "
        "try again"
    ),
    "EfficacyMarketBadVote": lambda a: (
        f"{a[0]} committed twice, or revealed without, against or after its commitment: "
        "nothing was applied; report it if a tool of this project sent it"
    ),
    "EfficacyMarketNotFinal": lambda a: (
        f"efficacy offer {a[0]} has no root with a quorum yet: wait for the committee's "
        "reveals and try again"
    ),
    "EfficacyMarketInvalidClaim": lambda a: (
        f"efficacy offer {a[0]}: claim {a[1]} does not verify (wrong proof, claimed already, "
        "or above the price rule or the cap): check the payout report, or report it"
    ),
    "EfficacyMarketNotRefundable": lambda a: (
        f"efficacy offer {a[0]}'s refund is not due yet, or was taken: wait for its windows "
        "to end and try again"
    ),
    "EfficacyMarketFeeOnTransfer": lambda a: (
        f"the market pulled {tok(a[0])} but received {tok(a[1])}: the token takes a fee on "
        f"transfer, which the market refuses: {BUG}"
    ),
}
