"""Start and stop private Kubo (``ipfs``) daemons on 127.0.0.1 for tests, the demo and benchmarks.

Each daemon gets a fresh repository (``ipfs init --profile=test``: loopback-only addresses, no
bootstrap peers, MDNS off) plus a few settings of ours: pubsub on, routing and providing off (peers
find each other only through an explicit ``swarm connect``), telemetry off. API, gateway and swarm
listen on port 0 unless a port is given, so two engineers' daemons never race for a port; the real
ports are read back from the repository's ``api`` file and from ``ipfs id``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import requests

from marketplace import toolchain
from marketplace.errors import StoreUnreachableError, ToolchainError
from marketplace.processes import stop_process_group

log = logging.getLogger(__name__)

_INIT_TIMEOUT = 60.0


def _multiaddr_to_url(multiaddr: str) -> str:
    """``/ip4/127.0.0.1/tcp/5001`` → ``http://127.0.0.1:5001``."""
    parts = multiaddr.strip().split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6") or parts[3] != "tcp":
        raise ToolchainError(
            f"cannot read Kubo API address {multiaddr!r}: expected /ip4/HOST/tcp/PORT"
        )
    host = f"[{parts[2]}]" if parts[1] == "ip6" else parts[2]
    return f"http://{host}:{parts[4]}"


@dataclass
class KuboDaemon:
    """A Kubo daemon this process started; stop it with :meth:`stop` or a ``with`` block."""

    repo_dir: Path
    api_multiaddr: str
    peer_id: str
    swarm_multiaddrs: tuple[str, ...]
    process: subprocess.Popen[bytes]
    log_path: Path
    _owns_repo: bool = field(default=False, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def api_url(self) -> str:
        """The RPC base URL, e.g. ``http://127.0.0.1:PORT`` (RPC paths are under ``/api/v0``)."""
        return _multiaddr_to_url(self.api_multiaddr)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the daemon (SIGTERM to its process group, SIGKILL if it lingers); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        stop_process_group(self.process, timeout)
        if self._owns_repo:
            shutil.rmtree(self.repo_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the daemon abruptly (SIGKILL), as a crash would; used by failure tests."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15.0)

    def restart(self, timeout: float = _INIT_TIMEOUT) -> None:
        """Stop the daemon and start it again on the same repository, peer id and ports (the
        fault tests' "Kubo restarted mid-task"); returns once its API answers again."""
        config_path = self.repo_dir / "config"
        config = json.loads(config_path.read_text())
        config["Addresses"]["API"] = self.api_multiaddr
        if self.swarm_multiaddrs:
            config["Addresses"]["Swarm"] = [self.swarm_multiaddrs[0].split("/p2p/")[0]]
        config_path.write_text(json.dumps(config, indent=2))
        stop_process_group(self.process, 15.0)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [str(toolchain.kubo_path()), "daemon", "--migrate=false"],
                env=daemon_env(self.repo_dir), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        (self.repo_dir / "api").unlink(missing_ok=True)
        _wait_ready(self, timeout=timeout)

    def __enter__(self) -> KuboDaemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def daemon_env(repo_dir: Path) -> dict[str, str]:
    """The environment an ``ipfs`` command or daemon on the repository ``repo_dir`` runs in."""
    env = dict(os.environ)
    env["IPFS_PATH"] = str(repo_dir)
    env["IPFS_TELEMETRY"] = "off"  # never phone home from a test machine
    env.setdefault("GOLOG_LOG_LEVEL", "error")
    return env


def _configure(
    repo_dir: Path, *, api_port: int | None, swarm_host: str, swarm_port: int | None, pubsub: bool
) -> None:
    """Apply our settings to the fresh repo's config file (one edit, not many ``ipfs config``)."""
    config_path = repo_dir / "config"
    config = json.loads(config_path.read_text())
    addresses = config.setdefault("Addresses", {})
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api_port or 0}"
    addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Swarm"] = [f"/ip4/{swarm_host}/tcp/{swarm_port or 0}"]
    addresses["Announce"] = []
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Pubsub", {})["Enabled"] = pubsub
    # No DHT: these daemons talk only to peers connected explicitly, and bitswap needs no routing.
    config.setdefault("Routing", {})["Type"] = "none"
    config.setdefault("Provide", {})["Enabled"] = False
    config.setdefault("AutoConf", {})["Enabled"] = False
    config.setdefault("Swarm", {})["DisableNatPortMap"] = True
    plugins = config.get("Plugins") or {}
    plugins["Plugins"] = {
        **(plugins.get("Plugins") or {}),
        "telemetry": {"Config": {"Mode": "off"}},
    }
    config["Plugins"] = plugins
    config_path.write_text(json.dumps(config, indent=2))


def _post_json(url: str, *, timeout: float) -> dict[str, object]:
    resp = requests.post(url, timeout=timeout)
    resp.raise_for_status()
    result: dict[str, object] = resp.json()
    return result


def init_repo(
    repo_dir: Path,
    *,
    api_port: int | None = None,
    swarm_host: str = "127.0.0.1",
    swarm_port: int | None = None,
    pubsub: bool = True,
    timeout: float = _INIT_TIMEOUT,
) -> str:
    """Create a Kubo repository with our settings in the empty directory ``repo_dir``; returns
    its peer id. The API always listens on 127.0.0.1; the swarm on ``swarm_host``."""
    if (repo_dir / "config").exists():
        raise ToolchainError(f"{repo_dir} already holds a Kubo repository: pass an empty directory")
    repo_dir.mkdir(parents=True, exist_ok=True)
    init = subprocess.run(
        [str(toolchain.kubo_path()), "init", "--profile=test", "--empty-repo"],
        env=daemon_env(repo_dir), capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        raise ToolchainError(f"ipfs init failed in {repo_dir}: {init.stderr.decode().strip()}")
    _configure(
        repo_dir, api_port=api_port, swarm_host=swarm_host, swarm_port=swarm_port, pubsub=pubsub
    )
    return str(json.loads((repo_dir / "config").read_text())["Identity"]["PeerID"])


def start_kubo(
    *,
    repo_dir: Path | None = None,
    api_port: int | None = None,
    swarm_host: str = "127.0.0.1",
    swarm_port: int | None = None,
    pubsub: bool = True,
    offline: bool = False,
    timeout: float = _INIT_TIMEOUT,
) -> KuboDaemon:
    """Start a Kubo daemon with a fresh repository; returns once its RPC API answers.

    Parameters
    ----------
    repo_dir:
        Where to create the repository (must not hold one yet). A temporary directory, removed on
        :meth:`KuboDaemon.stop`, when omitted.
    api_port, swarm_port:
        Fixed TCP ports (API on 127.0.0.1, swarm on ``swarm_host``); free ports chosen by the OS
        when omitted.
    swarm_host:
        The address the swarm listens on: 127.0.0.1, or the root namespace's address when peers
        in other network namespaces must dial this daemon (:mod:`marketplace.netns`).
    pubsub:
        Enable the pubsub RPC (``Pubsub.Enabled``).
    offline:
        Run with ``--offline`` (no swarm at all).
    """
    binary = toolchain.kubo_path()
    owns_repo = repo_dir is None
    if repo_dir is None:
        repo_dir = Path(tempfile.mkdtemp(prefix="fedmarket-kubo-"))
    env = daemon_env(repo_dir)
    try:
        init_repo(
            repo_dir,
            api_port=api_port,
            swarm_host=swarm_host,
            swarm_port=swarm_port,
            pubsub=pubsub,
            timeout=timeout,
        )
    except BaseException:
        if owns_repo:  # a temporary repo we made: do not leave it behind
            shutil.rmtree(repo_dir, ignore_errors=True)
        raise

    log_path = repo_dir / "daemon.log"
    argv = [str(binary), "daemon", "--migrate=false"]
    if offline:
        argv.append("--offline")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    daemon = KuboDaemon(
        repo_dir=repo_dir, api_multiaddr="", peer_id="", swarm_multiaddrs=(), process=proc,
        log_path=log_path, _owns_repo=owns_repo,
    )  # fmt: skip
    try:
        _wait_ready(daemon, timeout=timeout)
    except BaseException:
        daemon.stop()
        raise
    log.info("kubo up at %s (peer %s, pid %d)", daemon.api_multiaddr, daemon.peer_id, proc.pid)
    return daemon


def _swarm_prefix(repo_dir: Path) -> str:
    """``/ip4/HOST/tcp/`` for the swarm address the repository's config listens on."""
    swarm = json.loads((repo_dir / "config").read_text())["Addresses"]["Swarm"][0]
    return "/".join(str(swarm).split("/")[:4]) + "/"


def _wait_ready(daemon: KuboDaemon, *, timeout: float) -> None:
    """Wait for the ``api`` file, then for ``/api/v0/id`` to answer; fill in the addresses."""
    api_file = daemon.repo_dir / "api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            tail = daemon.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ToolchainError(
                f"Kubo exited with code {daemon.process.returncode} at start-up: "
                f"{' | '.join(tail)} (log: {daemon.log_path})"
            )
        if api_file.exists():
            multiaddr = api_file.read_text().strip()
            if multiaddr:
                try:
                    ident = _post_json(_multiaddr_to_url(multiaddr) + "/api/v0/id", timeout=2.0)
                except (requests.RequestException, ValueError):
                    pass
                else:
                    daemon.api_multiaddr = multiaddr
                    daemon.peer_id = str(ident["ID"])
                    addrs = ident.get("Addresses") or []
                    assert isinstance(addrs, list)
                    daemon.swarm_multiaddrs = tuple(
                        str(a) for a in addrs if str(a).startswith(_swarm_prefix(daemon.repo_dir))
                    )
                    return
        time.sleep(0.05)
    raise ToolchainError(f"Kubo did not answer within {timeout:.0f}s (log: {daemon.log_path})")


def connect_peers(a: KuboDaemon, b: KuboDaemon, *, timeout: float = 10.0) -> None:
    """Connect daemon ``a`` to daemon ``b`` (``ipfs swarm connect``), so bitswap and pubsub flow."""
    if not b.swarm_multiaddrs:
        raise ToolchainError(f"Kubo peer {b.peer_id} has no swarm address (started offline?)")
    target = b.swarm_multiaddrs[0]
    if "/p2p/" not in target:
        target = f"{target}/p2p/{b.peer_id}"
    try:
        resp = requests.post(
            f"{a.api_url}/api/v0/swarm/connect", params={"arg": target}, timeout=timeout
        )
    except requests.RequestException as exc:
        raise StoreUnreachableError(
            f"Kubo API at {a.api_multiaddr} did not answer swarm/connect ({exc.__class__.__name__})"
        ) from exc
    if resp.status_code != 200:
        raise ToolchainError(f"swarm connect {a.peer_id} → {target} failed: {resp.text.strip()}")
    # Peering: Kubo keeps this connection up, reconnecting with backoff if either side restarts
    # (a plain swarm connect is dropped for good when the other daemon goes away).
    from marketplace.storage.peering import add_peering

    add_peering(a.api_multiaddr, target, timeout=timeout)
