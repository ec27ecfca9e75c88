"""``fedmarket demo``: the whole marketplace once, in one process or on real nodes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from node.cli.context import CliContext
from node.cli.output import console, emit, json_option


@click.command()
@click.option(
    "--devnet",
    is_flag=True,
    help="Start Anvil and a Kubo daemon (from scripts/bootstrap) for the run.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-output"), show_default=True,
              help="Where the plots and result.json go.")  # fmt: skip
@click.option("--rounds", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Then keep the chain and store up and serve the dashboard on them.",
)
@json_option
@click.pass_context
def demo(
    ctx: click.Context,
    devnet: bool,
    out: Path,
    rounds: int,
    seed: int,
    as_json: bool,
    dashboard: bool,
) -> None:
    """Run the whole marketplace once, in four acts: sourcing (10 data owners offer, the
    committee values and picks), training (the winners, a free rider and a poisoner among them),
    the audited sale with royalties, and a consent withdrawal unlearned as version 2.

    With no options everything runs in this process (py-evm chain, embedded store). The global
    --chain-rpc and --ipfs-api use real nodes; --devnet starts Anvil and Kubo and stops them after.

    \b
    Example:
      fedmarket demo
      fedmarket demo --devnet --json
    """
    from contextlib import ExitStack

    from node.demo.scenario import DemoConfig, run_demo
    from node.demo.summary import print_summary, write_plots

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
        from node.cli.dashboard_cli import demo_workdir, serve_demo

        run = run_demo(
            config=DemoConfig(rounds=rounds, seed=seed), chain_rpc=chain_rpc, store=store,
            progress=progress, workdir=demo_workdir(out) if dashboard else None,
        )  # fmt: skip
        result = run.to_json()
        result["plots"] = write_plots(result, out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        emit(as_json, result, lambda: print_summary(console, result))
        if dashboard:  # the chain (in-process or Anvil) and the store are still up here
            serve_demo(run, out)
