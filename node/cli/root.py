"""The ``fedmarket`` root group: global options, and every command group registered on it.

The CLI is a thin layer over the ``marketplace`` library and the peers in :mod:`node.peers`; each
command group lives in its own ``node/cli/*_cli.py`` module.

Every command prints a human table by default and one JSON document with ``--json``. Errors are
one line (``Error: …``, exit 1) naming the cause and the fix, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from node.cli.context import DEFAULT_RPC, CliContext
from node.cli.output import FedMarketGroup

# Each command is imported when it is used (FedMarketGroup.lazy_commands), so a command that
# trains nothing starts without torch and scikit-learn.
COMMANDS = {
    "devnet": "node.cli.devnet_cli:devnet",
    "deploy": "node.cli.chain_cli:deploy",
    "faucet": "node.cli.chain_cli:faucet",
    "account": "node.cli.account_cli:account",
    "register": "node.cli.registry_cli:register",
    "stake": "node.cli.registry_cli:stake",
    "unstake": "node.cli.registry_cli:unstake",
    "withdraw": "node.cli.registry_cli:withdraw",
    "status": "node.cli.registry_cli:status",
    "task": "node.cli.task_cli:task",
    "node": "node.cli.peer_cli:node_group",
    "oracle": "node.cli.peer_cli:oracle_group",
    "rewards": "node.cli.rewards_cli:rewards",
    "demo": "node.cli.demo_cli:demo",
    "dashboard": "node.cli.dashboard_cli:dashboard",
    "data": "node.cli.data_cli:data",
    "model": "node.cli.model_cli:model",
    "audit": "node.cli.model_cli:audit",
    "offer": "node.cli.sourcing_cli:offer",
    "sourcing": "node.cli.sourcing_cli:sourcing",
}


@click.group(
    cls=FedMarketGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
@click.option(
    "--account", "account_name", envvar="FEDMARKET_ACCOUNT",
    help="Signing account address (keystore).",
)  # fmt: skip
@click.option(
    "--dev-account", type=int, default=None, envvar="FEDMARKET_DEV_ACCOUNT",
    help="Sign with devnet key N of the public test mnemonic (devnets only).",
)  # fmt: skip
@click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path),
    envvar="FEDMARKET_PASSWORD_FILE",
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

    Examples sign with the devnet's public test keys (--dev-account N: 0 deploys, 1 requests,
    2-4 train and own data, 5-7 are oracles, 8 develops, 9-10 audit, 11 buys) and name the first
    task, listing and sale a fresh devnet makes, 1 (`model configure` names task 2: task 1 is
    configured at creation). The chain and Kubo addresses come from FEDMARKET_CHAIN_RPC and
    FEDMARKET_IPFS_API (else 127.0.0.1:8545 and the embedded store).

    \b
    Quick start on a local devnet, with an account of your own:
      fedmarket devnet up
      fedmarket --dev-account 0 deploy
      ME=$(fedmarket account new --json | jq -r .address)
      fedmarket --dev-account 0 faucet 1000 --to $ME
      fedmarket --account $ME register trainer --stake 100
      fedmarket --account $ME status
    """
    level = logging.WARNING - 10 * verbose
    # A library (opacus, at import) may have configured the root logger already, which makes
    # basicConfig a no-op: set the level and the format on the plain stderr handler either way.
    logging.basicConfig()
    root_logger = logging.getLogger()
    if verbose:  # otherwise the root's level is left as it is (WARNING unless a test set it)
        root_logger.setLevel(max(level, logging.DEBUG))
    stamped = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    for handler in root_logger.handlers:
        if type(handler) is logging.StreamHandler:  # not a test's capture handler
            handler.setFormatter(stamped)
    ctx.obj = CliContext(
        home=home,
        rpc_url=chain_rpc,
        deployments_dir=deployments,
        account_name=account_name,
        dev_account=dev_account,
        password_file=password_file,
        ipfs_api=ipfs_api,
    )


def walk(
    group: click.Command = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """``(path, command)`` for ``group`` and every command under it, importing the lazy ones
    (``group.commands`` alone lists only those already used)."""
    yield path, group
    if isinstance(group, click.Group):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            if sub is not None:
                yield from walk(sub, (*path, name))


def command_at(path: Sequence[str]) -> click.Command:
    """The command at ``path`` (``("task", "create")``), imported if it is lazy."""
    command: click.Command = cli
    for name in path:
        sub = command.get_command(click.Context(command), name) if isinstance(
            command, click.Group) else None  # fmt: skip
        if sub is None:
            raise KeyError(" ".join(path))
        command = sub
    return command


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fedmarket")


if __name__ == "__main__":  # pragma: no cover
    main()
