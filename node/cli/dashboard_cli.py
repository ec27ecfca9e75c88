"""``fedmarket dashboard``: serve the read-only dashboard for the configured chain and store.

Also the helper ``fedmarket demo --dashboard`` uses to keep the demo's chain and store up and
serve the dashboard on them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node.cli.context import CliContext
from node.cli.output import json_option

DEFAULT_PORT = 8550
PORT_ENV = "FEDMARKET_DASHBOARD_PORT"  # also read by `demo --dashboard`


def default_db(home: Path, chain_id: int, market: str) -> Path:
    """The index file of one deployment under the node's home."""
    return home / "dashboard" / f"{chain_id}-{market.lower()}.sqlite"


@click.command("dashboard")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar=PORT_ENV,
    help="Port on 127.0.0.1 (never another interface); also FEDMARKET_DASHBOARD_PORT.",
)
@click.option(
    "--reorg-depth",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Blocks kept re-indexable: a changed block hash rolls the index back.",
)
@click.option(
    "--confirmations",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Index only up to head minus this many blocks.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite index file [default: HOME/dashboard/<chain>-<market>.sqlite].",
)
@json_option
@click.pass_obj
def dashboard(
    c: CliContext,
    port: int,
    reorg_depth: int,
    confirmations: int,
    db: Path | None,
    as_json: bool,
) -> None:
    """Serve a live, read-only web dashboard of the marketplace on 127.0.0.1.

    It indexes the deployment's events and the committee's reports (from --ipfs-api or the
    embedded store) into SQLite, resumes from the last indexed block on restart, and refreshes
    open pages within a second of a new block. It holds no key.

    \b
    Example:
      fedmarket devnet up && fedmarket --dev-account 0 deploy
      fedmarket dashboard --port 8550
    """  # fmt: skip
    from marketplace.indexer import IndexerConfig
    from node.dashboard.server import DashboardServer

    deployment = c.deployment
    market = deployment.address("TaskMarket")
    path = db or default_db(c.home, deployment.chain_id, market)
    server = DashboardServer(
        c.w3, deployment, path, store=c.store, port=port,
        config=IndexerConfig(reorg_depth=reorg_depth, confirmations=confirmations),
    )  # fmt: skip

    def announce(url: str) -> None:
        # One JSON line once serving, so a script can wait for it and read the address.
        if as_json:
            click.echo(json.dumps({"url": url, "index": str(path)}), nl=True)
        else:
            click.echo(f"FedMarket dashboard on {url} (index {path}); Ctrl-C to stop")

    server.serve_forever(announce)


def demo_workdir(out: Path) -> Path:
    """A clean folder for the demo's store and journals that outlives the run (the dashboard
    reads the store after it); the demo's chain is new each run, so old journals must go."""
    import shutil

    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    return state


def serve_demo(result: Any, out: Path, *, port: int | None = None) -> None:
    """Serve the dashboard on a finished demo's chain and store until Ctrl-C.

    With the in-process chain this must run in the demo's process (the chain lives in it); the
    indexer then follows it on a thread, which is safe because the demo no longer sends.
    """
    import os

    from node.dashboard.server import DashboardServer

    port = port or int(os.environ.get(PORT_ENV, DEFAULT_PORT))
    market = result.market
    path = out / "dashboard.sqlite"
    path.unlink(missing_ok=True)  # a demo's chain is new each run
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    server = DashboardServer(
        market.w3, market.deployment, path, store=result.store, port=port, title="demo"
    )
    server.serve_forever(
        lambda url: click.echo(f"Dashboard on {url}/task/{result.task_id} (Ctrl-C to stop)")
    )
