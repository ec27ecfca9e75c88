"""The words the error sentences share: tokens, dates, phases, roles, and the fix of a bug."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marketplace.chain.views import Phase, Role
from marketplace.units import describe_time, format_amount, relative

Template = Callable[[Sequence[Any]], str]

#: What a sentence for an error no CLI command can cause says (an internal invariant broke, or
#: someone called the contract by hand or with a hostile token): nothing happened, report it.
BUG = "the transaction was not applied; this is a bug or an attack: report it with the transaction"


def tok(value: Any) -> str:
    """An amount in tokens: ``"12.5 tokens"``."""
    return f"{format_amount(int(value))} tokens"


def at(value: Any) -> str:
    """A chain timestamp as a date with "(in 12 min)"."""
    return describe_time(int(value))


def span(seconds: Any) -> str:
    """A duration: ``"40.0 d"``."""
    return relative(int(seconds)).removeprefix("in ")


def phase(value: Any) -> str:
    """The phase's name, from the one ``Phase`` enum that mirrors the contract."""
    try:
        return Phase(int(value)).name.lower()
    except (TypeError, ValueError):
        return str(value)


def role(value: Any) -> str:
    """A ``ParticipantRegistry.Role`` by name."""
    try:
        return Role(int(value)).name.lower()
    except (TypeError, ValueError):
        return str(value)


def named(value: Any, names: Sequence[str]) -> str:
    """An enum value of another contract by its name (``names`` in declaration order)."""
    try:
        return names[int(value)]
    except (IndexError, TypeError, ValueError):
        return str(value)


def short(digest: Any) -> str:
    """A bytes32 as ``0x1234abcd…``."""
    text = "0x" + digest.hex() if isinstance(digest, bytes) else str(digest)
    return text[:10] + "…"
