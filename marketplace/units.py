"""Amounts and addresses as people type them, parsed exactly.

Token amounts are decimal strings (``"100"``, ``"0.5"``) or base units (``"123wei"``); they are
converted with :class:`decimal.Decimal` at a precision that never rounds, must fit a ``uint256``,
and may not carry more decimals than the token has — nothing is rounded silently. Addresses must be
20-byte hex; a mixed-case address must carry a valid EIP-55 checksum (a typo in one is caught).
Every refusal is a one-line :class:`ConfigError` naming the value and the fix.
"""

from __future__ import annotations

import functools
import re
import time
from decimal import Decimal, InvalidOperation, localcontext

from eth_utils.address import is_checksum_address, to_checksum_address

from marketplace.errors import ConfigError

TOKEN_DECIMALS = 18
UINT256_MAX = 2**256 - 1
_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def parse_amount(text: str, decimals: int = TOKEN_DECIMALS, *, what: str = "amount") -> int:
    """``"1.5"`` tokens → base units; ``"123wei"`` → 123 base units (exact, ``uint256``)."""
    raw = str(text).strip()
    hint = "give tokens like 100 or 0.5, or base units like 123wei"
    try:
        if raw.endswith("wei"):
            digits = raw[:-3].strip()
            if not digits.isdigit():
                raise InvalidOperation
            value = int(digits)
        else:
            with localcontext() as ctx:
                ctx.prec = 200  # more digits than any uint256 has: nothing is rounded
                amount = Decimal(raw)
                if not amount.is_finite():
                    raise InvalidOperation
                scaled = amount.scaleb(decimals)
                if scaled != scaled.to_integral_value():
                    raise ConfigError(
                        f"invalid {what} {raw!r}: more than {decimals} decimals; "
                        f"round it to at most {decimals} decimals"
                    )
                value = int(scaled)
    except (InvalidOperation, ValueError):
        raise ConfigError(f"invalid {what} {raw!r}: {hint}") from None
    if value < 0:
        raise ConfigError(f"invalid {what} {raw!r}: must not be negative")
    if value > UINT256_MAX:
        raise ConfigError(
            f"invalid {what} {raw!r}: larger than any token amount a contract can hold "
            "(2^256 - 1 base units)"
        )
    return value


def format_amount(value: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Base units → a token amount without trailing zeros."""
    with localcontext() as ctx:
        ctx.prec = 200
        q = Decimal(int(value)).scaleb(-decimals)
        text = format(q.normalize(), "f")
    return text


@functools.lru_cache(maxsize=4096)
def checksum_address(address: str) -> str:
    """``address`` (any case, or 20 bytes) in its EIP-55 form; memoized: a peer checksums the
    same few dozen addresses on every message and read, a keccak each otherwise. Raises
    ``ValueError`` for what is not an address."""
    return str(to_checksum_address(address))


def parse_address(text: str, *, what: str = "address") -> str:
    """A checksummed address; refuses malformed hex and a mixed-case address whose EIP-55
    checksum is wrong (all-lower or all-upper hex carries no checksum and is accepted)."""
    raw = str(text).strip()
    if not _HEX_ADDRESS.match(raw):
        raise ConfigError(
            f"invalid {what} {raw!r}: expected 0x followed by 40 hex digits "
            "(e.g. 0x70997970C51812dc3A010C7d01b50e0d17dc79C8)"
        )
    body = raw[2:]
    mixed = body != body.lower() and body != body.upper()
    if mixed and not is_checksum_address(raw):
        raise ConfigError(
            f"invalid {what} {raw!r}: its EIP-55 checksum is wrong (a mistyped character?); "
            f"copy the address again, or give it in lower case to skip the checksum"
        )
    return str(to_checksum_address(raw))


def parse_uint(text: str | int, *, what: str, bits: int = 256) -> int:
    """A non-negative integer that fits ``uint<bits>``."""
    raw = str(text).strip()
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"invalid {what} {raw!r}: expected a whole number like 1") from None
    if value < 0 or value >= 1 << bits:
        raise ConfigError(f"invalid {what} {raw!r}: must be between 0 and 2^{bits} - 1")
    return value


def describe_time(epoch: int, *, now: float | None = None) -> str:
    """``2026-12-09 14:00 UTC (in 12 min)`` — a chain timestamp for people."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(epoch)))
    return f"{stamp} ({relative(int(epoch) - now)})"


def relative(seconds: float) -> str:
    """``in 12 min`` / ``3 h ago`` / ``now``."""
    s = abs(seconds)
    if s < 45:
        text = f"{s:.0f} s"
    elif s < 90 * 60:
        text = f"{s / 60:.0f} min"
    elif s < 48 * 3600:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} days"
    if s < 1:
        return "now"
    return f"in {text}" if seconds > 0 else f"{text} ago"
