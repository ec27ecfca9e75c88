"""ModelMarket's errors: validation submissions, audits, listings, sales and royalties."""

from __future__ import annotations

from marketplace.chain.explain._words import BUG, Template, at, named, phase, short, tok

_PRODUCT_ROLES = ("none", "developer", "auditor")
_SALE = ("none", "paid", "delivered", "refunded")
_REGISTER = {"developer": "`fedmarket model register`", "auditor": "`fedmarket audit register`"}


def _register(value: object) -> str:
    return _REGISTER.get(named(value, _PRODUCT_ROLES), "`fedmarket model register`")


TEMPLATES: dict[str, Template] = {
    "ModelMarketAlreadyRegistered": lambda a: (
        f"{a[0]} is already registered on the model market as {named(a[1], _PRODUCT_ROLES)}: "
        "nothing to do (an address has one role; use another account for the other)"
    ),
    "ModelMarketInvalidRegistration": lambda a: (
        "registering needs a role and a non-zero X25519 key: run `fedmarket model register` or "
        "`fedmarket audit register` (the keystore's key is used)"
    ),
    "ModelMarketNotRequester": lambda a: (
        f"{a[1]} is not the requester of task {a[0]}: run it with the requester's account "
        f"(`fedmarket --account ADDRESS …`; see `fedmarket task show {a[0]}`)"
    ),
    "ModelMarketAlreadyConfigured": lambda a: (
        f"task {a[0]} is already configured for validation submissions (K and M are fixed for "
        "good): nothing to do; submit with `fedmarket model submit`"
    ),
    "ModelMarketNotConfigured": lambda a: (
        f"task {a[0]} is not configured for validation submissions: its requester runs "
        f"`fedmarket model configure --task {a[0]}` first"
    ),
    "ModelMarketInvalidParams": lambda a: (
        "the product parameters are out of range (K 1..16, M 0..8, threshold 0..1, windows > "
        "0): run `fedmarket model configure` again with values in range"
    ),
    "ModelMarketWrongTaskPhase": lambda a: (
        f"task {a[0]} is in its {phase(a[1])} phase, where this is not possible (models are "
        f"submitted once it is finalized): see `fedmarket task show {a[0]}`"
    ),
    "ModelMarketSubmissionLimit": lambda a: (
        f"task {a[0]} already has its {a[1]} validation submissions (K): no more are taken; "
        "see `fedmarket model list`"
    ),
    "ModelMarketFinalModelFirst": lambda a: (
        f"task {a[0]}: the requester's final aggregate must be submission 1: the requester runs "
        f"`fedmarket model submit --task {a[0]} --final` first"
    ),
    "ModelMarketNoFinalModel": lambda a: (
        f"task {a[0]} has no final model digest posted yet: wait for its last round to end "
        f"(see `fedmarket task show {a[0]}`)"
    ),
    "ModelMarketWrongRole": lambda a: (
        f"{a[0]} is not registered on the model market as "
        f"{named(a[1], _PRODUCT_ROLES)}: run {_register(a[1])} first"
    ),
    "ModelMarketConflictOfInterest": lambda a: (
        f"{a[1]} already has a role in task {a[0]} (requester, trainer, oracle, developer or "
        "auditor): use another account (`fedmarket --account ADDRESS …`) and try again"
    ),
    "ModelMarketZeroHash": lambda a: (
        "a digest, root or key is zero: a client bug; the transaction was not applied, report it"
    ),
    "ModelMarketUnknownSubmission": lambda a: (
        f"task {a[0]} has no submission {a[1]}: see `fedmarket model list` and try again with "
        "an existing one"
    ),
    "ModelMarketNotCommitteeMember": lambda a: (
        f"{a[1]} is not on task {a[0]}'s oracle committee: run it with a member's account "
        f"(`fedmarket oracle run --task {a[0]}`)"
    ),
    "ModelMarketDeadlinePassed": lambda a: (
        f"the deadline passed at {at(a[0])}: too late for this step (unclaimed royalties go "
        "back to the requester with `fedmarket model sweep --listing ID`); see "
        "`fedmarket model list`"
    ),
    "ModelMarketTooEarly": lambda a: (
        f"not before {at(a[0])}: wait until then and run the same command again (`fedmarket "
        "model refund SALE_ID` for an undelivered sale, `fedmarket model sweep --listing ID` "
        "after the royalty window)"
    ),
    "ModelMarketAlreadyCommitted": lambda a: (
        f"{a[2]} already committed its evaluation of task {a[0]}'s submission {a[1]}: nothing "
        f"to do; `fedmarket oracle run --task {a[0]}` reveals it when the reveal window opens"
    ),
    "ModelMarketBadReveal": lambda a: (
        f"task {a[0]}: {a[2]}'s reveal for submission {a[1]} does not match its commitment (the "
        f"oracle's journal was lost or edited): restart `fedmarket oracle run --task {a[0]}` "
        "from its home, or report it"
    ),
    "ModelMarketNothingToSettle": lambda a: (
        f"task {a[0]}: {a[2]}'s evaluation of submission {a[1]} has nothing to settle (settled "
        "already, or it revealed in time): nothing to do"
        " (report it if `fedmarket oracle run` sent it)"
    ),
    "ModelMarketInvalidScore": lambda a: (
        f"a score of {a[0]} ppm is above 1,000,000 ppm (100%): {BUG}"
    ),
    "ModelMarketNotPassed": lambda a: (
        f"task {a[0]}'s submission {a[1]} did not pass the committee's evaluation (or is not "
        "evaluated yet): wait for the reveals, or submit a better model with "
        "`fedmarket model submit`"
    ),
    "ModelMarketNoBounty": lambda a: (
        f"task {a[0]} owes no bounty now (none set, paid already, or no submission passed and "
        "resolved yet): wait for the evaluations to resolve, then run "
        f"`fedmarket model claim-bounty --task {a[0]}`"
    ),
    "ModelMarketBadAttestation": lambda a: (
        f"the attestation's signature recovers {a[0]}, not a registered auditor: sign with an "
        "auditor's account (`fedmarket audit register` first) and try again"
    ),
    "ModelMarketAlreadyAttested": lambda a: (
        f"{a[2]} already attested task {a[0]}'s submission {a[1]}: nothing to do"
        " (see `fedmarket model list`)"
    ),
    "ModelMarketDigestMismatch": lambda a: (
        f"the attested digest {short(a[1])} is not the submission's {short(a[0])}: attest the "
        "model that was submitted — run `fedmarket audit attest` with its --package"
    ),
    "ModelMarketNotEnoughAttestations": lambda a: (
        f"{a[0]} approving and {a[1]} rejecting attestations, {a[2]} approvals needed: wait for "
        "the auditors (`fedmarket audit package` sends them the model)"
    ),
    "ModelMarketAlreadyApproved": lambda a: (
        f"task {a[0]} already has an approved submission: nothing to do; sell it with "
        f"`fedmarket model sell --task {a[0]}`"
    ),
    "ModelMarketNotApproved": lambda a: (
        f"task {a[0]}'s submission {a[1]} is not approved: wait for it to pass and for M audit "
        "attestations, then try again (see `fedmarket model list`)"
    ),
    "ModelMarketNoTotalScore": lambda a: (
        f"task {a[0]}: the committee has not fixed the total score of its final payout root: "
        f"wait for the oracles (`fedmarket oracle run --task {a[0]}`) and try again"
    ),
    "ModelMarketAlreadyVoted": lambda a: (
        f"{a[1]} already attested task {a[0]}'s total score: nothing to do; wait for the others"
    ),
    "ModelMarketInvalidListing": lambda a: (
        "the listing's parameters are out of range (shares above 100%, zero price, past "
        "expiry): run `fedmarket model sell` again with --requester-bps + --developer-bps + "
        "--auditor-bps <= 10000, --price > 0 and --days > 0"
    ),
    "ModelMarketUnknownListing": lambda a: (
        f"there is no listing {a[0]}: see `fedmarket model list`"
    ),
    "ModelMarketListingExpired": lambda a: (
        f"listing {a[0]} expired at {at(a[1])}: pick a live one from `fedmarket model list`"
    ),
    "ModelMarketVersionNotSellable": lambda a: (
        f"task {a[0]}'s model version {a[1]} cannot be sold (not the current attested version, "
        f"or its retention expired): see `fedmarket data versions --task {a[0]}`"
    ),
    "ModelMarketUnknownSale": lambda a: (
        f"there is no sale {a[0]}: see the buy's output or `fedmarket model show LISTING_ID`"
    ),
    "ModelMarketWrongSaleStatus": lambda a: (
        f"sale {a[0]} is {named(a[1], _SALE)}, where this is not possible (only a paid, "
        f"undelivered sale is delivered or refunded with `fedmarket model refund {a[0]}`): see "
        "`fedmarket model show LISTING_ID`"
    ),
    "ModelMarketNotKeyHolder": lambda a: (
        f"{a[0]} is not the listing's key holder: run `fedmarket model deliver` with the "
        "seller's account (`fedmarket --account ADDRESS …`)"
    ),
    "ModelMarketBadSealedKeyLength": lambda a: (
        f"the sealed key is {a[0]} bytes, at most {a[1]} are accepted: {BUG}"
    ),
    "ModelMarketNotBuyer": lambda a: (
        f"{a[0]} is not the sale's buyer, only the buyer is refunded: run "
        "`fedmarket --account BUYER model refund SALE_ID` with the buyer's account"
    ),
    "ModelMarketInvalidRoyaltyClaim": lambda a: (
        f"listing {a[0]}: royalty leaf {a[1]} does not verify (wrong proof, a flagged leaf, or "
        "more than the trainers' pool): claim with `fedmarket model claim --listing "
        f"{a[0]}`, which takes the leaf and proof from the published report, or report it"
    ),
    "ModelMarketNothingDue": lambda a: (
        "nothing is due to this account now (claimed already, or no delivered sale since): "
        "after the next sale run `fedmarket model claim --listing ID` (trainer) or "
        "`fedmarket model claim-share --listing ID` (requester, developer, auditor)"
    ),
    "ModelMarketNoWithdrawalToSettle": lambda a: (
        f"listing {a[0]}: {a[1]} withdrew no data that this listing must settle: nothing to do "
        "(see `fedmarket data versions --task TASK`)"
    ),
    "ModelMarketAlreadySwept": lambda a: (
        f"listing {a[0]}'s unclaimed royalties were already swept: nothing to do"
        " (see `fedmarket model show`)"
    ),
    "ModelMarketFeeOnTransfer": lambda a: (
        f"the market pulled {tok(a[0])} but received {tok(a[1])}: the token takes a fee on "
        "transfer, which the market refuses; use the deployment's reward token, or report it"
    ),
    "ModelMarketNotReclaimable": lambda a: (
        f"task {a[0]}'s product escrow cannot be reclaimed now (reclaimed already, no "
        "approval yet, or submissions unresolved): once a submission is approved or all K "
        f"failed, run `fedmarket model reclaim --task {a[0]}`"
    ),
}
