"""``fedmarket devnet up|down``: a local Anvil or Hardhat node on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
from urllib.parse import urlparse

import click

from marketplace.chain.devnet import rpc_chain_id, start_devnet
from marketplace.errors import ConfigError
from node.cli.context import CliContext
from node.cli.output import console, emit, json_option, pass_ctx


@click.group()
def devnet() -> None:
    """Start or stop a local devnet (Anvil or the Hardhat node) on 127.0.0.1."""


@devnet.command("up")
@click.option("--hardhat", is_flag=True, help="Run `npx hardhat node` instead of Anvil.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port on 127.0.0.1 (default: the port of --chain-rpc, i.e. 8545).")  # fmt: skip
@click.option("--block-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Mine a block every N seconds (Anvil), so the chain clock runs while "
                   "nobody sends transactions; 0: only on transactions.")  # fmt: skip
@json_option
@pass_ctx
def devnet_up(
    c: CliContext, hardhat: bool, port: int | None, block_time: float, as_json: bool
) -> None:
    """Start a devnet in the background; its state goes to HOME/devnet.json.

    Anvil mines a block every --block-time seconds, so phase deadlines and the dispute window
    pass in real time even when no node sends a transaction.

    \b
    Example:
      fedmarket devnet up && fedmarket --dev-account 0 deploy
    """
    if port is None:
        port = urlparse(c.rpc_url).port or 8545
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
    try:
        c.home.mkdir(parents=True, exist_ok=True)
        (c.home / "devnet.log").touch()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the node directory {c.home} ({exc.strerror}): pass a writable "
            "--home DIR (or set FEDMARKET_HOME)"
        ) from None
    kind = "hardhat" if hardhat else "anvil"
    extra = {"block_time": block_time} if kind == "anvil" and block_time else {}
    node = start_devnet(kind, port=port, log_path=c.home / "devnet.log", **extra)
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
