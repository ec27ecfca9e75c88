"""Running the dashboard: the indexer on a thread and uvicorn on 127.0.0.1 only."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn
from web3 import Web3

from marketplace.chain.deploy import Deployment
from marketplace.chain.devnet import free_port
from marketplace.errors import ConfigError
from marketplace.indexer import Indexer, IndexerConfig
from marketplace.storage.base import ContentStore
from node.dashboard.app import create_app

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never anything else: the dashboard is for the machine it runs on


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class DashboardServer:
    """The indexer following the chain plus the web app serving its index.

    Use :meth:`start`/:meth:`stop` (or ``with``) to run it on background threads, or
    :meth:`serve_forever` to block the calling thread (the CLI).
    """

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        db_path: Path,
        *,
        store: ContentStore | None = None,
        config: IndexerConfig | None = None,
        port: int | None = None,
        title: str = "",
    ):
        self.indexer = Indexer(w3, deployment, db_path, store=store, config=config)
        self.port = port or free_port()
        self.app = create_app(Path(db_path), indexer=self.indexer, title=title)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, host=HOST, port=self.port, log_level="warning", lifespan="off", ws="none",
                timeout_graceful_shutdown=2,
            )
        )  # fmt: skip
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, *, timeout: float = 30.0) -> DashboardServer:
        """Index up to the head, then serve; returns once the server accepts connections."""
        self.indexer.sync()
        follower = threading.Thread(
            target=self.indexer.follow, args=(self._stop,), name="dashboard-indexer", daemon=True
        )
        web = threading.Thread(target=self._server.run, name="dashboard-web", daemon=True)
        self._threads = [follower, web]
        follower.start()
        web.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not web.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(
                    f"the dashboard could not listen on {self.url}: try another --port"
                )
            time.sleep(0.02)
        log.info("dashboard on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and indexing; waits for both threads."""
        self._stop.set()
        self.app.state.flags["stopping"] = True
        self._server.should_exit = True
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        self.indexer.close()

    def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM); ``ready(url)`` once it listens."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)
        self.start()
        if ready is not None:
            ready(self.url)
        try:
            while all(t.is_alive() for t in self._threads):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
