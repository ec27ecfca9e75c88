"""``fedmarket account new|import|list``: the node's keystore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from marketplace.errors import ConfigError
from node.cli.context import CliContext
from node.cli.output import console, emit, json_option, kv_table, pass_ctx


@click.group()
def account() -> None:
    """Create, import and list keystore accounts (eth-account keystore + X25519 key)."""


@account.command("new")
@json_option
@pass_ctx
def account_new(c: CliContext, as_json: bool) -> None:
    """Create an account: an Ethereum key and an X25519 encryption key, both encrypted.

    \b
    Example:
      FEDMARKET_PASSWORD_FILE=pw.txt fedmarket account new
    """
    from marketplace.crypto.keystore import new_account

    files = new_account(c.keystore_dir, c.password(confirm=True, prompt="New keystore password"))
    out = _account_json(files)
    emit(as_json, out, lambda: console.print(kv_table("New account", out)))


@account.command("import")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the hex private key (else a prompt).")  # fmt: skip
@json_option
@pass_ctx
def account_import(c: CliContext, key_file: Path | None, as_json: bool) -> None:
    """Import an existing private key into the keystore (a new X25519 key is made for it)."""
    from marketplace.crypto.keystore import import_account

    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {key_file}: {exc.strerror}") from None
    else:
        key = click.prompt("Private key (hex)", hide_input=True)
    files = import_account(
        c.keystore_dir, key, c.password(confirm=True, prompt="New keystore password")
    )
    out = _account_json(files)
    emit(as_json, out, lambda: console.print(kv_table("Imported account", out)))


@account.command("list")
@json_option
@pass_ctx
def account_list(c: CliContext, as_json: bool) -> None:
    """List the keystore's accounts."""
    from marketplace.crypto.keystore import list_accounts

    rows = [_account_json(a) for a in list_accounts(c.keystore_dir)]

    def human() -> None:
        if not rows:
            console.print(
                f"no accounts in {c.keystore_dir}: create one with `fedmarket account new`"
            )
            return
        table = Table("address", "x25519 public key", "keystore")
        for r in rows:
            table.add_row(r["address"], r["x25519_public"], r["keystore"])
        console.print(table)

    emit(as_json, {"accounts": rows}, human)


def _account_json(files: Any) -> dict[str, str]:
    return {
        "address": files.address,
        "x25519_public": "0x" + files.x25519_public.hex(),
        "keystore": str(files.keystore_path),
    }
