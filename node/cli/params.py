"""Click parameter types for what people type: addresses, token amounts, task ids.

Each wraps a parser of :mod:`marketplace.units` (the library owns the rules: exact decimals,
``uint256`` range, EIP-55 checksums) and turns its refusal into a click ``BadParameter``, which
the root group prints as one line (or a JSON error under ``--json``), exit 1.
"""

from __future__ import annotations

from typing import Any

import click

from marketplace import units
from marketplace.errors import ConfigError


class _LibraryType(click.ParamType[Any]):
    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class AddressType(_LibraryType):
    """A 20-byte address; a mixed-case one must carry a valid EIP-55 checksum."""

    name = "address"

    def parse(self, text: str) -> str:
        return units.parse_address(text)


class AmountType(_LibraryType):
    """A token amount (``100``, ``0.5``, ``123wei``) → base units, exactly, within ``uint256``."""

    name = "amount"

    def parse(self, text: str) -> int:
        return units.parse_amount(text)


class TaskIdType(_LibraryType):
    """A task id: a whole number within ``uint256``."""

    name = "task_id"

    def parse(self, text: str) -> int:
        return units.parse_uint(text, what="task id")


ADDRESS = AddressType()
AMOUNT = AmountType()
TASK_ID = TaskIdType()
