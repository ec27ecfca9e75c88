"""Committee consent and the fair failure paths, as a peer sees them.

The contract proposes a committee at creation and seats nobody until each member accepts
(``TaskMarket.acceptSeat``): :func:`accept_seat` is the oracle's step while a task is Forming.
:func:`may_slash` mirrors the contract's rule (dissent alone is never slashable: only a member
that did not reveal, or whose root the arbiter ruled against), so enforcement sends no
transaction doomed to revert. :func:`settle_cancelled` is a trainer's step after a task was
cancelled: its bond back before training, or its fallback pay when scoring failed.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.clients import Marketplace, Outcome, Phase
from marketplace.errors import TransactionRevertedError

__all__ = ["accept_seat", "may_slash", "settle_cancelled"]


def accept_seat(market: Marketplace, oracle: LocalAccount, task_id: int) -> tuple[bool, str]:
    """Take ``oracle``'s seat on a Forming task if it is proposed and has not yet accepted.

    Returns ``(acted, what)``: ``acted`` is false when there was nothing to do (the committee is
    formed, the seat is taken, or this account is not proposed) and ``what`` says why.
    """
    info = market.task(task_id)
    if info.phase_enum != Phase.FORMING:
        return False, "the committee is formed"
    if oracle.address not in market.oracles(task_id):
        return False, "not proposed for this committee"
    if market.has_accepted(task_id, oracle.address):
        return False, "waiting for the other oracles to accept their seats"
    try:
        market.accept_seat(oracle, task_id)
    except TransactionRevertedError as exc:
        if exc.error_name in ("TaskMarketSeatAlreadyAccepted", "TaskMarketWrongPhase"):
            return False, "waiting for the other oracles to accept their seats"
        raise
    return True, "accepted my committee seat"


def may_slash(market: Marketplace, task_id: int, oracle: str) -> bool:
    """Whether ``slashOracle(task_id, oracle)`` would be accepted now (the rule, not the clock)."""
    addr = Web3.to_checksum_address(oracle)
    if not market.has_accepted(task_id, addr) or market.is_oracle_slashed(task_id, addr):
        return False
    revealed = market.revealed_root_of(task_id, addr)
    if revealed == bytes(32):
        return True
    info = market.task(task_id)
    return bool(info.arbiter_ruled) and revealed != bytes(info.payout_root)


def settle_cancelled(market: Marketplace, trainer: LocalAccount, task_id: int) -> str:
    """A joined trainer's step on a cancelled task: the bond (and stake reservation) back when
    it was cancelled before scoring, the fallback pay by committed samples when scoring failed.
    """
    info = market.task(task_id)
    failed = int(info.outcome) in (Outcome.FAILED, Outcome.VALIDATION_MISMATCH)
    try:
        if failed:
            market.claim_fallback(trainer, task_id)
            return "claimed the fallback pay (scoring failed)"
        market.withdraw_bond(trainer, task_id)
        return "took the bond back"
    except TransactionRevertedError as exc:
        if exc.error_name in ("TaskMarketNoBond", "TaskMarketNothingToClaim"):
            return "already settled"
        raise
