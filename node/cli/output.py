"""What every command shares: the console, ``--json`` output, tables, option decorators and
parameter types.

A command prints one JSON document with ``--json`` (:func:`emit`) and a human table or line
otherwise; library errors become one-line ``Error: …`` messages in :class:`FedMarketGroup`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from web3 import Web3

from marketplace.errors import ConfigError, FedMarketError
from node.cli.context import CliContext, parse_amount

F = TypeVar("F", bound=Callable[..., Any])

# Piped output gets a fixed width wide enough for the demo's table (rich assumes 80 otherwise).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
pass_ctx = click.make_pass_decorator(CliContext)


class FedMarketGroup(click.Group):
    """Turns library errors into one-line ``Error: …`` messages (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FedMarketError as exc:
            raise click.ClickException(str(exc)) from None
        except click.UsageError as exc:
            # A bad option of a subcommand: one line naming it and where the choices are.
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            one_line = click.ClickException(f"{exc.format_message()} (see `{where} --help`)")
            one_line.exit_code = exc.exit_code
            raise one_line from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None


def json_option(fn: F) -> F:
    """The ``--json`` flag (as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    """Print ``data`` as one JSON document, or call ``human`` to print it for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column key/value table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows.items():
        table.add_row(k, str(v))
    return table


def log_step(action: str, *, waiting: bool = False) -> None:
    """Print a peer's step as a dim progress line (waiting steps are not printed)."""
    if not waiting:
        console.print(f"[dim]·[/] {action}")


def choice(values: Iterable[str]) -> click.Choice[str]:
    """A case-sensitive :class:`click.Choice` of the library's own names (help lists them)."""
    return click.Choice(list(values))


class AddressParam(click.ParamType[str]):
    """An Ethereum address, returned checksummed."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and Web3.is_address(value):
            return str(Web3.to_checksum_address(value))
        self.fail(f"{value!r} is not an Ethereum address (0x + 40 hex digits)", param, ctx)


class AmountParam(click.ParamType[int]):
    """A token amount (``100``, ``0.5``, or base units ``123wei``), returned in base units."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_amount(str(value))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


ADDRESS = AddressParam()
AMOUNT = AmountParam()


# --- shared options ------------------------------------------------------------------------
def task_option(fn: F) -> F:
    """``--task ID`` (as ``task_id``)."""
    return click.option("--task", "task_id", type=int, required=True, help="Task id.")(fn)


def poll_options(fn: F) -> F:
    """``--poll`` and ``--timeout`` of a peer's run loop."""
    fn = click.option(
        "--timeout", type=float, default=None, help="Give up after this many seconds of waiting."
    )(fn)
    return click.option(
        "--poll", type=float, default=1.0, show_default=True, help="Seconds between chain polls."
    )(fn)
