"""Committee consent and the fair failure paths, as a peer sees them.

The contract proposes a committee at creation and seats nobody until each member accepts
(``TaskMarket.acceptSeat``): :func:`accept_seat` is the oracle's step while a task is Forming.
Or the oracle signs its consent off-chain (:func:`sign_seat`, no gas) and the requester seats
several oracles in one transaction (``TaskMarket.acceptSeatsFor``, :func:`seat_signed`).
:func:`may_slash` mirrors the contract's rule (dissent alone is never slashable: only a member
that did not reveal, or whose root the arbiter ruled against), so enforcement sends no
transaction doomed to revert. :func:`settle_cancelled` is a trainer's step after a task was
cancelled: its bond back before training, or its fallback pay when scoring failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from marketplace.chain.clients import Marketplace, Outcome, Phase, SeatSignature
from marketplace.errors import ConfigError, TransactionRevertedError

__all__ = ["accept_seat", "may_slash", "parse_seat_signature", "seat_signed", "settle_cancelled",
           "sign_seat"]  # fmt: skip


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


def _forming(market: Marketplace, task_id: int) -> None:
    if market.task(task_id).phase_enum != Phase.FORMING:
        raise ConfigError(
            f"task {task_id}'s committee is formed (no seat left to take): see "
            f"`fedmarket task show {task_id}`"
        )


def sign_seat(
    market: Marketplace, oracle: LocalAccount, task_id: int, valid_for: int
) -> SeatSignature:
    """``oracle``'s signed consent to its seat on ``task_id``, valid for ``valid_for`` seconds of
    chain time: checked first (the task is Forming, ``oracle`` is proposed and has not accepted)
    so that nobody carries a signature the market would refuse."""
    if valid_for <= 0:
        raise ConfigError(f"--valid-for must be a positive number of seconds, not {valid_for}")
    _forming(market, task_id)
    if oracle.address not in market.oracles(task_id):
        raise ConfigError(
            f"{oracle.address} is not proposed for task {task_id}'s committee: only the oracles "
            f"the requester named sign a seat (see `fedmarket task show {task_id}`)"
        )
    if market.has_accepted(task_id, oracle.address):
        raise ConfigError(
            f"{oracle.address} already took its seat on task {task_id}: nothing to sign"
        )
    return market.sign_seat(oracle, task_id, market.now() + valid_for)


def parse_seat_signature(text: str) -> SeatSignature:
    """A seat signature as ``fedmarket oracle sign-seat`` prints it
    (``TASK:ORACLE:DEADLINE:0xSIG``)."""
    try:
        return SeatSignature.from_text(text)
    except ValueError as exc:
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise ConfigError(
            f"malformed seat signature {shown!r}: {exc}; pass the string `fedmarket oracle "
            "sign-seat` printed"
        ) from None


def seat_signed(
    market: Marketplace, sender: LocalAccount, task_id: int, signatures: Sequence[SeatSignature]
) -> TxReceipt:
    """Seat every oracle of ``signatures`` on ``task_id`` in one transaction (all or nothing).

    What the chain would refuse for a reason visible here is refused first, with the fix and
    without gas: no signature, one for another task, an expired one, an oracle named twice.
    The signatures themselves are checked on-chain (``TaskMarketInvalidSignature``)."""
    if not signatures:
        raise ConfigError(
            f"no seat signature given: pass the strings the oracles printed with "
            f"`fedmarket oracle sign-seat --task {task_id}`"
        )
    now = market.now()
    seen: set[str] = set()
    for i, sig in enumerate(signatures, 1):
        if sig.task_id != task_id:
            raise ConfigError(
                f"seat signature {i} is for task {sig.task_id}, not task {task_id}: ask "
                f"{sig.oracle} to run `fedmarket oracle sign-seat --task {task_id}`"
            )
        if sig.deadline < now:
            raise ConfigError(
                f"seat signature {i} ({sig.oracle}) expired {now - sig.deadline} s ago: ask "
                f"it to sign again with `fedmarket oracle sign-seat --task {task_id}` (a longer "
                "--valid-for)"
            )
        if sig.oracle in seen:
            raise ConfigError(
                f"seat signature {i}: {sig.oracle} is named twice; pass its signature once"
            )
        seen.add(sig.oracle)
    _forming(market, task_id)
    return market.accept_seats_for(sender, task_id, signatures)


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
