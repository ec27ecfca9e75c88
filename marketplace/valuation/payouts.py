"""Turn per-trainer contribution totals into integer payouts that add up exactly.

Rules
-----
* **Eligible** trainers are those with a positive total and no flag. Zero or negative totals earn
  nothing; a flagged trainer earns nothing.
* **Participation floor** (``floor_ppm`` of the budget, default 0): every eligible trainer first
  gets ``floor = budget * floor_ppm // 10**6`` token units, capped at ``budget // eligible`` so
  the floors never exceed the budget.
* The **rest** is split in proportion to the totals with the largest-remainder method: each
  recipient gets ``rest * s_i // S``; the units left over go one each to the largest remainders
  ``rest * s_i % S``, ties broken by the lower address (as a 160-bit integer).
* **Flagged shares**: with ``flagged="redistribute"`` (default) flagged trainers are left out of
  the split, so ``sum(payouts) == budget`` whenever someone is eligible. With ``"refund"`` the
  flagged trainers' positive totals keep their place in the proportional split but their
  shares are withheld, so ``sum(payouts) == budget - withheld`` and the withheld part returns to
  the requester with whatever is unclaimed. If nobody is eligible, every payout is 0 and the
  whole budget is refunded.
* ``score_ppm`` (the leaf's ``uint32 scorePpm``, the sample that moves on-chain reputation) is an
  eligible trainer's total relative to the best eligible total, in ppm (round half to even): the
  top contributor scores 10**6, one contributing half as much 500,000, everyone else 0. Relative
  to the best rather than a share of the sum, so reputation does not sink merely because a task
  had many trainers.

Entries are sorted by address; ``index`` is the position in that order (the leaf's index).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from eth_utils.address import is_address, to_checksum_address

from marketplace.errors import ValuationError
from marketplace.valuation.flags import Flag
from marketplace.valuation.quantize import PPM, share_ppm

FlaggedPolicy = Literal["redistribute", "refund"]
UINT32_MAX = 2**32 - 1
UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class PayoutConfig:
    """Payout policy (see the module docstring)."""

    floor_ppm: int = 0
    flagged: FlaggedPolicy = "redistribute"

    def __post_init__(self) -> None:
        if not 0 <= self.floor_ppm <= PPM:
            raise ValuationError(f"floor_ppm must be within 0..{PPM}, got {self.floor_ppm}")
        if self.flagged not in ("redistribute", "refund"):
            raise ValuationError(
                f"flagged policy must be 'redistribute' or 'refund', got {self.flagged!r}"
            )


@dataclass(frozen=True)
class PayoutEntry:
    """One row of the payout table: ``(index, account, amount, scorePpm, flags)``.

    Its leaf adds the task's domain (``merkle.LeafDomain.leaf``).
    """

    index: int
    account: str
    amount: int
    score_ppm: int
    flags: int

    def claim_values(self) -> tuple[int, str, int, int, int]:
        """The row as a claim passes it: ``(index, account, amount, scorePpm, flags)``."""
        return (self.index, self.account, self.amount, self.score_ppm, self.flags)


@dataclass(frozen=True)
class PayoutTable:
    """Every trainer's payout; ``refund`` is what goes back to the requester."""

    budget: int
    entries: tuple[PayoutEntry, ...]

    @property
    def total(self) -> int:
        return sum(e.amount for e in self.entries)

    @property
    def refund(self) -> int:
        return self.budget - self.total

    def by_account(self) -> dict[str, PayoutEntry]:
        return {e.account: e for e in self.entries}


def normalize_account(account: str) -> str:
    """An address in checksum form; a clear error for anything else."""
    if not isinstance(account, str) or not is_address(account):
        raise ValuationError(f"{account!r} is not an Ethereum address: give 0x + 40 hex digits")
    return str(to_checksum_address(account))


def compute_payouts(
    budget: int,
    totals_ppm: Mapping[str, int],
    flags: Mapping[str, int] | None = None,
    *,
    config: PayoutConfig = PayoutConfig(),
) -> PayoutTable:
    """Split ``budget`` (integer token units) over ``totals_ppm`` (trainer -> summed value).

    Parameters
    ----------
    budget : int
        The task budget in the token's smallest unit.
    totals_ppm : mapping
        Every trainer to be listed (even with 0), with its total contribution in ppm.
    flags : mapping, optional
        Trainer -> :class:`Flag` bits; a flagged trainer is paid nothing.
    config : PayoutConfig
        Floor and flagged-share policy.
    """
    if not isinstance(budget, int) or not 0 <= budget <= UINT256_MAX:
        raise ValuationError(f"budget must be an integer within uint256, got {budget!r}")
    scores: dict[str, int] = {}
    for account, score in totals_ppm.items():
        key = normalize_account(account)
        if key in scores:
            raise ValuationError(f"trainer {key} is listed twice (addresses differ only in case)")
        scores[key] = int(score)
    bits = {normalize_account(a): int(Flag(int(f))) for a, f in (flags or {}).items()}
    unknown = set(bits) - set(scores)
    if unknown:
        raise ValuationError(f"flags given for trainers without a score: {sorted(unknown)}")
    order = sorted(scores, key=lambda a: int(a, 16))

    eligible = [a for a in order if scores[a] > 0 and not bits.get(a)]
    # With "refund", flagged positive totals stay in the split; their shares are withheld.
    refund = config.flagged == "refund"
    in_split = [a for a in order if scores[a] > 0 and (not bits.get(a) or refund)]
    amounts = dict.fromkeys(order, 0)
    if eligible:
        floor = min(budget * config.floor_ppm // PPM, budget // len(eligible))
        for a in eligible:
            amounts[a] += floor
        rest = budget - floor * len(eligible)
        for a, share in _largest_remainder(rest, {a: scores[a] for a in in_split}).items():
            if a in eligible:
                amounts[a] += share
    best = max((scores[a] for a in eligible), default=0)
    entries = []
    for i, a in enumerate(order):
        score = share_ppm(scores[a], best) if a in eligible else 0
        entries.append(PayoutEntry(i, a, amounts[a], min(score, UINT32_MAX), bits.get(a, 0)))
    return PayoutTable(budget=budget, entries=tuple(entries))


def _largest_remainder(amount: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``amount`` over positive integer ``weights`` exactly (Hamilton's method)."""
    total = sum(weights.values())
    if total <= 0:
        return {}
    shares = {a: amount * w // total for a, w in weights.items()}
    left = amount - sum(shares.values())
    by_remainder = sorted(weights, key=lambda a: (-(amount * weights[a] % total), int(a, 16)))
    for a in by_remainder[:left]:
        shares[a] += 1
    return shares
