"""The ``fedmarket`` command line: a thin layer over the ``marketplace`` library.

Every command prints a human table by default and one JSON document with ``--json``. Errors are
one line (``Error: …``, exit 1) naming the cause and the fix, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from web3 import Web3

from marketplace.chain.clients import Role
from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.devnet import dev_x25519_public, rpc_chain_id, start_devnet
from marketplace.chain.tx import send_eth
from marketplace.errors import ConfigError, FedMarketError
from node.context import DEFAULT_RPC, CliContext, format_amount, parse_amount

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
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def emit(as_json: bool, data: dict[str, Any], human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows.items():
        table.add_row(k, str(v))
    return table


@click.group(cls=FedMarketGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), envvar="FEDMARKET_HOME",
    default=Path.home() / ".fedmarket", show_default=True,
    help="Node directory: keystore, journal, devnet state.",
)  # fmt: skip
@click.option(
    "--chain-rpc", envvar="FEDMARKET_CHAIN_RPC", default=DEFAULT_RPC, show_default=True,
    help="JSON-RPC URL of the chain (or 'inprocess').",
)  # fmt: skip
@click.option(
    "--deployments", type=click.Path(file_okay=False, path_type=Path),
    envvar="FEDMARKET_DEPLOYMENTS", default=Path("deployments"), show_default=True,
    help="Folder of <chainId>.json deployment files.",
)  # fmt: skip
@click.option("--account", "account_name", help="Signing account address (keystore).")
@click.option(
    "--dev-account", type=int, default=None,
    help="Sign with devnet key N of the public test mnemonic (devnets only).",
)  # fmt: skip
@click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path),
    help="Read the keystore password from this file (else FEDMARKET_PASSWORD or a prompt).",
)  # fmt: skip
@click.option(
    "--ipfs-api", "ipfs_api", envvar="FEDMARKET_IPFS_API",
    help="Kubo RPC API (multiaddr or URL); default: the embedded store in HOME/store.",
)  # fmt: skip
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="fedmarket")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path,
    chain_rpc: str,
    deployments: Path,
    account_name: str | None,
    dev_account: int | None,
    password_file: Path | None,
    ipfs_api: str | None,
    verbose: int,
) -> None:
    """FedMarket: a decentralized marketplace for federated learning.

    \b
    Quick start on a local devnet:
      fedmarket devnet up
      fedmarket --dev-account 0 deploy
      fedmarket account new
      fedmarket --dev-account 0 faucet 1000 --to ADDRESS
      fedmarket register trainer --stake 100
      fedmarket status
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = CliContext(
        home=home,
        rpc_url=chain_rpc,
        deployments_dir=deployments,
        account_name=account_name,
        dev_account=dev_account,
        password_file=password_file,
        ipfs_api=ipfs_api,
    )


# --- devnet --------------------------------------------------------------------------------
@cli.group()
def devnet() -> None:
    """Start or stop a local devnet (Anvil or the Hardhat node) on 127.0.0.1."""


@devnet.command("up")
@click.option("--hardhat", is_flag=True, help="Run `npx hardhat node` instead of Anvil.")
@click.option("--port", type=int, default=8545, show_default=True)
@json_option
@pass_ctx
def devnet_up(c: CliContext, hardhat: bool, port: int, as_json: bool) -> None:
    """Start a devnet in the background; its state goes to HOME/devnet.json.

    \b
    Example:
      fedmarket devnet up && fedmarket --dev-account 0 deploy
    """
    state = c.read_devnet_state()
    if state and _alive(int(state["pid"])):  # type: ignore[call-overload]
        raise ConfigError(
            f"a devnet is already running at {state['rpc_url']} (pid {state['pid']}): "
            "stop it with `fedmarket devnet down`"
        )
    try:
        rpc_chain_id(f"http://127.0.0.1:{port}", timeout=1)
        raise ConfigError(
            f"port {port} on 127.0.0.1 already serves a chain: use --port or stop that node"
        )
    except OSError:
        pass
    c.home.mkdir(parents=True, exist_ok=True)
    kind = "hardhat" if hardhat else "anvil"
    node = start_devnet(kind, port=port, log_path=c.home / "devnet.log")
    state = {"kind": kind, "pid": node.pid, "rpc_url": node.rpc_url, "chain_id": node.chain_id}
    c.devnet_state_path.write_text(json.dumps(state))
    emit(as_json, state, lambda: console.print(
        f"{kind} running at [bold]{node.rpc_url}[/] (chain id {node.chain_id}, pid {node.pid}); "
        "stop it with `fedmarket devnet down`"
    ))  # fmt: skip


@devnet.command("down")
@json_option
@pass_ctx
def devnet_down(c: CliContext, as_json: bool) -> None:
    """Stop the devnet started by `fedmarket devnet up`."""
    state = c.read_devnet_state()
    if not state:
        raise ConfigError(f"no devnet recorded in {c.devnet_state_path}: nothing to stop")
    pid = int(state["pid"])  # type: ignore[call-overload]
    was_alive = _alive(pid)
    if was_alive:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            was_alive = False
    c.devnet_state_path.unlink(missing_ok=True)
    out = {"stopped": was_alive, "pid": pid, "rpc_url": state["rpc_url"]}
    emit(as_json, out, lambda: console.print(
        f"stopped {state['kind']} (pid {pid})" if was_alive else f"devnet pid {pid} was not running"
    ))  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- deploy --------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--token", help="Use this ERC-20 (e.g. a stablecoin) instead of deploying RewardToken."
)
@click.option("--unbonding-delay", type=int, default=7 * 24 * 3600, show_default=True,
              help="Seconds between unstake request and withdrawal.")  # fmt: skip
@click.option(
    "--arbiter", help="Dispute arbiter address (a multisig in production; default: deployer)."
)
@json_option
@pass_ctx
def deploy(
    c: CliContext, token: str | None, unbonding_delay: int, arbiter: str | None, as_json: bool
) -> None:
    """Deploy the marketplace contracts and write deployments/<chainId>.json.

    \b
    Example:
      fedmarket --dev-account 0 deploy
      cast call $(jq -r .contracts.TaskMarket.address deployments/31337.json) "taskCount()(uint256)"
    """
    signer = c.signer()
    dep = deploy_marketplace(
        c.w3, signer, token_address=token, unbonding_delay=unbonding_delay, arbiter=arbiter
    )
    path = write_deployment(dep, c.deployments_dir)
    out = {
        "chainId": dep.chain_id,
        "file": str(path),
        **{name: rec.address for name, rec in dep.contracts.items()},
    }
    emit(as_json, out, lambda: console.print(kv_table(f"Deployed on chain {dep.chain_id}", out)))


@cli.command()
@click.argument("amount")
@click.option("--to", "to", required=True, help="Recipient address.")
@click.option("--eth", default="1", show_default=True,
              help="Also send this much ETH for gas when the recipient holds less.")  # fmt: skip
@json_option
@pass_ctx
def faucet(c: CliContext, amount: str, to: str, eth: str, as_json: bool) -> None:
    """Devnet only: mint AMOUNT reward tokens to an address, and some ETH for gas.

    The signer must own the RewardToken (the deployer: `--dev-account 0` after
    `fedmarket --dev-account 0 deploy`).

    \b
    Example:
      fedmarket --dev-account 0 faucet 1000 --to 0xYourAddress
    """
    value = parse_amount(amount)
    eth_wei = parse_amount(eth)
    signer = c.signer()
    receipt = c.market.mint(signer, to, value)
    sent_eth = 0
    if eth_wei and c.w3.eth.get_balance(Web3.to_checksum_address(to)) < eth_wei:
        send_eth(c.w3, signer, to, eth_wei)
        sent_eth = eth_wei
    out = {"to": to, "amount": str(value), "eth": str(sent_eth),
           "tx": receipt["transactionHash"].hex()}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"minted {amount} to {to}" + (f" and sent {eth} ETH" if sent_eth else "")
    ))  # fmt: skip


# --- accounts ------------------------------------------------------------------------------
@cli.group()
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


# --- registry ------------------------------------------------------------------------------
@cli.command()
@click.argument("role", type=click.Choice(["trainer", "oracle", "requester"]))
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
      fedmarket register trainer --stake 100
    """
    signer = c.signer()
    key = _encryption_key(c, signer.address, encryption_key)
    amount = parse_amount(stake_amount)
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


@cli.command()
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


@cli.command()
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
    emit(as_json, out, lambda: console.print(
        f"unbonding {format_amount(p.unbonding)}; "
        f"withdrawable after timestamp {p.unbonding_release_at}"
    ))  # fmt: skip


@cli.command()
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


@cli.command()
@click.argument("address", required=False)
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
        "eth": str(w3.eth.get_balance(p.address)),
        "tokens": str(c.market.balance_of(p.address)),
        "role": p.role.name.lower(),
        "stake": str(p.stake),
        "unbonding": str(p.unbonding),
        "unbonding_release_at": p.unbonding_release_at,
        "locked_until": p.locked_until,
        "reputation_ppm": p.reputation_ppm,
        "encryption_key": "0x" + p.encryption_key.hex(),
    }

    def human() -> None:
        rows = {k: v for k, v in out.items() if k != "contracts"}
        for k in ("tokens", "stake", "unbonding"):
            rows[k] = format_amount(int(out[k]))
        rows["eth"] = format_amount(int(out["eth"]))
        console.print(kv_table(f"Account on chain {out['chainId']}", rows))
        console.print(kv_table("Contracts", out["contracts"]))

    emit(as_json, out, human)


# --- demo ----------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--devnet",
    is_flag=True,
    help="Start Anvil and a Kubo daemon (from scripts/bootstrap) for the run.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-output"), show_default=True,
              help="Where the plots and result.json go.")  # fmt: skip
@click.option("--rounds", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@click.pass_context
def demo(
    ctx: click.Context, devnet: bool, out: Path, rounds: int, seed: int, as_json: bool
) -> None:
    """Run the whole marketplace once: 8 trainers (a free rider, a poisoner, a noisy one),
    3 oracles.

    With no options everything runs in this process (py-evm chain, embedded store). The global
    --chain-rpc and --ipfs-api use real nodes; --devnet starts Anvil and Kubo and stops them after.

    \b
    Example:
      fedmarket demo
      fedmarket demo --devnet --json
    """
    from contextlib import ExitStack

    from node.demo import DemoConfig, run_demo
    from node.demo_report import print_summary, write_plots

    c: CliContext = ctx.obj
    ipfs_api = c.ipfs_api
    # The demo's chain is in-process unless --chain-rpc (or FEDMARKET_CHAIN_RPC) names one.
    source = ctx.find_root().get_parameter_source("chain_rpc")
    chain_rpc = "inprocess" if source == click.core.ParameterSource.DEFAULT else c.rpc_url
    progress = (lambda msg: None) if as_json else (lambda msg: console.print(f"[dim]·[/] {msg}"))
    with ExitStack() as stack:
        store = None
        if devnet:
            from marketplace.chain.devnet import start_anvil
            from marketplace.storage.kubo_daemon import start_kubo

            node = stack.enter_context(start_anvil())
            chain_rpc = node.rpc_url
            daemon = stack.enter_context(start_kubo())
            ipfs_api = daemon.api_multiaddr
        if ipfs_api:
            from marketplace.storage.kubo import KuboStore

            store = KuboStore(ipfs_api)
        result = run_demo(
            config=DemoConfig(rounds=rounds, seed=seed), chain_rpc=chain_rpc, store=store,
            progress=progress,
        ).to_json()  # fmt: skip
    result["plots"] = write_plots(result, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    emit(as_json, result, lambda: print_summary(console, result))


def _register_task_commands() -> None:
    from node.task_cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_task_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fedmarket")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
