"""The finalized valuation report, as trainers read it to claim.

Each oracle publishes the same canonical report bytes, sealed for the task's members with itself
as sender. A claimer reads the report of any oracle whose revealed root is the finalized root,
checks that the report's Merkle root is that root, and builds its proof from the report's payout
table in the task's own :class:`LeafDomain` (never the domain the report names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from web3 import Web3

from marketplace.chain.views import Outcome
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import (
    ContentNotFoundError,
    ContentUnavailableError,
    FedMarketError,
    StoreUnreachableError,
)
from marketplace.jsonlimits import shallow_json
from marketplace.valuation.merkle import LeafDomain, PayoutTree
from marketplace.valuation.payouts import PayoutEntry

REPORT_ROUND = 0  # envelope round for reports: they cover the whole task


def seal_report(session: Any, report_bytes: bytes) -> bytes:
    """Encrypt an oracle's canonical report for the task's trainers, oracles and requester."""
    members = session.members()
    recipients = members.recipients()
    requester_key = session.market.participant(members.requester).encryption_key
    if requester_key != bytes(32):
        recipients[members.requester] = requester_key
    ctx = EnvelopeContext(
        chain_id=session.chain_id, task_id=session.task_id, round=REPORT_ROUND,
        sender=session.identity.address,
    )  # fmt: skip
    return seal(report_bytes, recipients=recipients, context=ctx)


def final_report(session: Any) -> dict[str, Any]:
    """The report behind the task's finalized payout root, fetched, decrypted and checked."""
    return final_report_of(session.market, session.store, session.identity, session.task_id)


def final_report_of(market: Any, store: Any, identity: Any, task_id: int) -> dict[str, Any]:
    """:func:`final_report` without a task session (no task document needed): ``market`` a
    :class:`~marketplace.chain.Marketplace`, ``identity`` the member reading it."""
    root = bytes(market.task(task_id).payout_root)
    if root == bytes(32):
        raise FedMarketError(f"task {task_id} has no finalized payout root yet")
    chain_id = market.deployment.chain_id
    reveals = market.events(market.market, "ScoreRevealed", filters={"taskId": task_id})
    errors = []
    unavailable = True  # every failure so far was content not served (yet): retry, not fail
    for ev in reveals:
        if bytes(ev["args"]["root"]) != root:
            continue
        oracle = Web3.to_checksum_address(ev["args"]["oracle"])
        try:
            blob = store.get(str(ev["args"]["reportCid"]), max_size=64 << 20)
            plain = open_envelope(
                blob, recipient_address=identity.address,
                x25519_private=identity.x25519_private,
                expected_context=EnvelopeContext(
                    chain_id=chain_id, task_id=task_id, round=REPORT_ROUND,
                    sender=oracle,
                ),
            )  # fmt: skip
            report: dict[str, Any] = shallow_json(plain, max_depth=16)  # an oracle's
        except (FedMarketError, ValueError) as exc:
            errors.append(f"{oracle}: {exc}")
            unavailable &= isinstance(exc, ContentNotFoundError | StoreUnreachableError)
            continue
        if report.get("merkle_root", "").lower() != "0x" + root.hex():
            errors.append(f"{oracle}: report root differs from the finalized root")
            continue
        return report
    if errors and unavailable:
        raise ContentUnavailableError(
            f"task {task_id}: the finalized report is not available from any IPFS "
            f"provider yet ({'; '.join(errors)})"
        )
    raise FedMarketError(
        f"task {task_id}: no readable report for the finalized root"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


def entries_of(report: Mapping[str, Any]) -> list[PayoutEntry]:
    return [
        PayoutEntry(
            index=int(p["index"]),
            account=Web3.to_checksum_address(p["account"]),
            amount=int(p["amount"]),
            score_ppm=int(p["score_ppm"]),
            flags=int(p["flags"]),
        )
        for p in report["payouts"]
    ]


def claim_args(
    report: Mapping[str, Any], account: str, domain: LeafDomain
) -> tuple[PayoutEntry, list[bytes]] | None:
    """The payout entry of ``account`` and its Merkle proof in the task ``domain`` (the session's
    ``leaf_domain``), or ``None`` if it has no leaf."""
    entries = entries_of(report)
    tree = PayoutTree.build(entries, domain)
    account = Web3.to_checksum_address(account)
    for e in entries:
        if e.account == account:
            return e, [bytes.fromhex(p[2:]) for p in tree.proof(e.index)]
    return None


def sourcing_claim_args(session: Any) -> tuple[PayoutEntry | None, list[bytes]]:
    """What ``DataSourcing.claimPayment`` needs from the session's identity, found as
    ``fedmarket rewards claim`` finds it: its row of the task's final payout table and the row's
    proof; ``(None, [])`` when the task's scoring failed (no table: the contract pays a winner
    that trained the last round). A flagged row is returned as it is (the contract refuses it)."""
    if session.info().outcome in (Outcome.FAILED, Outcome.VALIDATION_MISMATCH):
        return None, []
    address = session.identity.address
    found = claim_args(final_report(session), address, session.leaf_domain)
    if found is None:
        raise FedMarketError(f"{address} has no row in task {session.task_id}'s payout table")
    return found
