"""``fedmarket register|stake|unstake|withdraw|status``: an account on the participant registry."""

from __future__ import annotations

from typing import Any

import click
from web3 import Web3

from marketplace.chain.clients import Role
from marketplace.chain.devnet import dev_x25519_public
from marketplace.errors import ConfigError
from marketplace.units import describe_time
from node.cli.context import CliContext, format_amount, parse_amount
from node.cli.output import choice, console, emit, json_option, kv_table, pass_ctx
from node.cli.params import ADDRESS


@click.command()
@click.argument("role", type=choice(r.name.lower() for r in Role if r is not Role.NONE))
@click.option(
    "--stake", "stake_amount", default="0", show_default=True, help="Tokens to stake now."
)
@click.option("--encryption-key", help="X25519 public key (0x + 64 hex); default: the keystore's.")
@json_option
@pass_ctx
def register(
    c: CliContext, role: str, stake_amount: str, encryption_key: str | None, as_json: bool
) -> None:
    """Register the account with a role and its X25519 key, optionally staking.

    \b
    Example:
      fedmarket --dev-account 2 register trainer --stake 100
    """
    signer = c.signer()
    key = _encryption_key(c, signer.address, encryption_key)
    amount = parse_amount(stake_amount)
    current = c.market.participant(signer.address)  # before any approve is sent
    if current.role != Role.NONE:
        raise ConfigError(
            f"{signer.address} is already registered as {current.role.name.lower()} with "
            f"{format_amount(current.stake)} staked: see `fedmarket status`; add stake with "
            "`fedmarket stake N`"
        )
    receipt = c.market.register(signer, Role.parse(role), key, amount)
    out = {"address": signer.address, "role": role, "stake": str(amount),
           "tx": receipt["transactionHash"].hex(), "gas": receipt["gasUsed"]}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"registered {signer.address} as {role} with stake {stake_amount}"
    ))  # fmt: skip


def _encryption_key(c: CliContext, address: str, explicit: str | None) -> bytes:
    if explicit:
        try:
            key = bytes.fromhex(explicit.removeprefix("0x"))
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError("--encryption-key must be 32 bytes in hex (0x + 64 hex digits)")
        return key
    if c.dev_account is not None:
        return dev_x25519_public(c.dev_account)
    from marketplace.crypto.keystore import list_accounts

    for files in list_accounts(c.keystore_dir):
        if files.address.lower() == address.lower():
            return bytes(files.x25519_public)
    raise ConfigError(f"no X25519 key for {address} in {c.keystore_dir}: pass --encryption-key")


@click.command()
@click.argument("amount")
@json_option
@pass_ctx
def stake(c: CliContext, amount: str, as_json: bool) -> None:
    """Add AMOUNT tokens to the account's stake (approves the registry if needed)."""
    signer = c.signer()
    value = parse_amount(amount)
    receipt = c.market.stake(signer, value)
    p = c.market.participant(signer.address)
    out = {"address": signer.address, "staked": str(value), "stake": str(p.stake),
           "tx": receipt["transactionHash"].hex()}  # fmt: skip
    emit(
        as_json,
        out,
        lambda: console.print(f"staked {amount}; stake now {format_amount(p.stake)}"),
    )


@click.command()
@click.argument("amount")
@json_option
@pass_ctx
def unstake(c: CliContext, amount: str, as_json: bool) -> None:
    """Request to unstake AMOUNT: it unbonds, then `fedmarket withdraw` after the delay."""
    signer = c.signer()
    value = parse_amount(amount)
    receipt = c.market.request_unstake(signer, value)
    p = c.market.participant(signer.address)
    out = {
        "address": signer.address,
        "unbonding": str(p.unbonding),
        "release_at": p.unbonding_release_at,
        "tx": receipt["transactionHash"].hex(),
    }
    when = describe_time(p.unbonding_release_at, now=c.market.now())
    emit(as_json, out, lambda: console.print(
        f"unbonding {format_amount(p.unbonding)}; `fedmarket withdraw` after {when}"
    ))  # fmt: skip


@click.command()
@json_option
@pass_ctx
def withdraw(c: CliContext, as_json: bool) -> None:
    """Withdraw unbonded stake once the unbonding delay has passed."""
    signer = c.signer()
    before = c.market.participant(signer.address).unbonding
    receipt = c.market.withdraw(signer)
    out = {
        "address": signer.address,
        "withdrawn": str(before),
        "tx": receipt["transactionHash"].hex(),
    }
    emit(as_json, out, lambda: console.print(f"withdrew {format_amount(before)}"))


@click.command()
@click.argument("address", type=ADDRESS, required=False)
@json_option
@pass_ctx
def status(c: CliContext, address: str | None, as_json: bool) -> None:
    """Show the chain, the contracts and an account's role, stake and reputation."""
    addr = address or c.signer().address
    w3 = c.w3
    p = c.market.participant(addr)
    out: dict[str, Any] = {
        "chainId": w3.eth.chain_id,
        "block": w3.eth.block_number,
        "contracts": {n: r.address for n, r in c.deployment.contracts.items()},
        "address": p.address,
        "eth": str(w3.eth.get_balance(Web3.to_checksum_address(p.address))),
        "tokens": str(c.market.balance_of(p.address)),
        "role": p.role.name.lower(),
        "stake": str(p.stake),
        "reserved": str(p.reserved),
        "unbonding": str(p.unbonding),
        "unbonding_release_at": p.unbonding_release_at,
        "queued": str(p.queued),
        "queued_release_at": p.queued_release_at,
        "reputation_ppm": p.reputation_ppm,
        "encryption_key": "0x" + p.encryption_key.hex(),
    }

    def human() -> None:
        rows = {k: v for k, v in out.items() if k != "contracts"}
        for k in ("tokens", "stake", "reserved", "unbonding", "queued"):
            rows[k] = format_amount(int(out[k]))
        rows["eth"] = format_amount(int(out["eth"]))
        now = c.market.now()
        for k in ("unbonding_release_at", "queued_release_at"):
            rows[k] = describe_time(int(out[k]), now=now) if out[k] else "-"
        console.print(kv_table(f"Account on chain {out['chainId']}", rows))
        console.print(kv_table("Contracts", out["contracts"]))

    emit(as_json, out, human)
