"""What every command shares: the console, ``--json`` output, tables, option decorators and
parameter types.

A command prints one JSON document with ``--json`` (:func:`emit`) and a human table or line
otherwise; library errors become one-line ``Error: …`` messages in :class:`FedMarketGroup`.
"""

from __future__ import annotations

import json
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from marketplace.errors import FedMarketError
from node.cli.context import CliContext

F = TypeVar("F", bound=Callable[..., Any])

# Piped output gets a fixed width wide enough for the demo's table (rich assumes 80 otherwise).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
pass_ctx = click.make_pass_decorator(CliContext)


class FedMarketGroup(click.Group):
    """Turns library errors, bad parameter values and file-system refusals into one-line
    ``Error: …`` messages (exit 1); under ``--json``, into one JSON document
    ``{"error": {"type": …, "message": …}}`` on stdout (and the line on stderr), exit 1.

    ``lazy_commands`` maps a command name to ``"module:attribute"``, imported only when that
    command is used (or listed): `fedmarket task show` does not pay for torch and scikit-learn,
    which only the commands that train need."""

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            command = pkgutil.resolve_name(target)
            if not isinstance(command, click.Command):  # a wrong entry is a bug, said at once
                raise TypeError(f"{target} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        pending = (*getattr(ctx, "_protected_args", ()), *ctx.args)  # the subcommand line
        as_json = "--json" in pending
        try:
            return super().invoke(ctx)
        except FedMarketError as exc:
            fail(str(exc), type(exc).__name__, as_json)
        except click.BadParameter as exc:
            fail(exc.format_message(), "BadParameter", as_json)
        except PermissionError as exc:
            fail(
                f"permission denied on {exc.filename}: make it writable, or pass another "
                "--home DIR / --deployments DIR", "PermissionError", as_json,
            )  # fmt: skip
        except OSError as exc:
            if exc.filename is None:
                raise
            fail(f"{exc.strerror or exc} on {exc.filename}", type(exc).__name__, as_json)
        except click.UsageError as exc:
            # A bad option of a subcommand: one line naming it and where the choices are.
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see `{where} --help`)", "UsageError", as_json)
        except KeyboardInterrupt:
            fail("interrupted", "KeyboardInterrupt", as_json)


def fail(message: str, kind: str, as_json: bool) -> None:
    """Exit 1 with ``message`` as one line (and a JSON error document under ``--json``)."""
    line = " ".join(str(message).split())
    if as_json:
        click.echo(json.dumps({"error": {"type": kind, "message": line}}))
    raise click.ClickException(line)


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


def choice(values: Iterable[str] | str, *, before: Iterable[str] = ()) -> click.Choice[str]:
    """A case-sensitive :class:`click.Choice` of the library's own names (help lists them),
    after ``before``. ``values`` may name them as ``"module:ATTRIBUTE"``: then they are read
    when the option is first used, so a command without the option never imports that module
    (the training ones import torch)."""
    if isinstance(values, str):
        return LazyChoice(values, tuple(before))
    return click.Choice([*before, *values])


class LazyChoice(click.Choice[str]):
    """A :class:`click.Choice` of ``module:ATTRIBUTE``'s names, imported on first use."""

    def __init__(self, target: str, before: tuple[str, ...] = ()) -> None:
        self._target, self._before = target, before
        self._names: list[str] | None = None
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> list[str]:
        if self._names is None:
            self._names = [*self._before, *pkgutil.resolve_name(self._target)]
        return self._names

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ sets it; the names are lazy
        pass


# --- shared options ------------------------------------------------------------------------
def task_option(fn: F) -> F:
    """``--task ID`` (as ``task_id``)."""
    from node.cli.params import TASK_ID

    return click.option("--task", "task_id", type=TASK_ID, required=True, help="Task id.")(fn)


def poll_options(fn: F) -> F:
    """``--poll`` and ``--timeout`` of a peer's run loop."""
    fn = click.option(
        "--timeout", type=float, default=None, help="Give up after this many seconds of waiting."
    )(fn)
    return click.option(
        "--poll", type=float, default=1.0, show_default=True, help="Seconds between chain polls."
    )(fn)
