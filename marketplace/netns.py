"""Several "machines" on one Linux host: network namespaces whose links delay and rate-limit
every packet, so benchmarks and tests pay a real network's cost instead of assuming it. Needs root
(``ip netns``, ``/dev/net/tun``); :func:`unavailable_reason` says why not.

Layout, for a run whose owner has pid P (``prefix`` = ``fmn`` + P in hex, so leftovers of a crashed
run are found by :func:`remove_stale` and nothing else is touched)::

    root namespace         <prefix>r  10.A.B.1 ─┐
    namespace <prefix>-0   eth0       10.A.B.2 ─┼─ link emulator (marketplace.linkemu)
    namespace <prefix>-1   eth0       10.A.B.3 ─┘

Every device is a TUN whose other end the link emulator holds: between any two machines (the root
namespace is one of them) a packet waits ``delay_ms`` one way (twice that round trip) and each
machine's up- and downlink carry at most ``rate_mbit``. (This is what ``tc qdisc … netem delay
D/2 rate R`` on both ends of a veth pair would do; this machine's kernel is built without
``sch_netem``, so the emulator does it in user space.) Inside a namespace, services bind
127.0.0.1 for their APIs (each namespace has its own loopback) and the namespace's address for
what peers must reach (a Kubo swarm); the root namespace's 10.A.B.1 is where peers reach services
there (the chain's RPC).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from marketplace import toolchain
from marketplace.errors import ToolchainError
from marketplace.processes import stop_process_group
from marketplace.storage.kubo_daemon import daemon_env, init_repo

log = logging.getLogger(__name__)

PREFIX = "fmn"  # every namespace and interface this module creates starts with it
KUBO_API_PORT = 5001  # inside each namespace, on its own 127.0.0.1
KUBO_SWARM_PORT = 4001  # inside each namespace, on its address 10.A.B.k
_TIMEOUT = 30.0


@dataclass(frozen=True)
class LinkShape:
    """What the network between two machines does to a packet: one-way ``delay_ms`` and a cap of
    ``rate_mbit`` on each machine's uplink and downlink (0 turns either off)."""

    delay_ms: float = 50.0
    rate_mbit: float = 10.0

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.rate_mbit < 0:
            raise ValueError(
                f"delay and rate must be ≥ 0, got {self.delay_ms} ms, {self.rate_mbit}"
            )


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``, no TUN), else None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns, /dev/net/tun): run as root"
    if shutil.which("ip") is None:
        return "`ip` not found: install iproute2"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing: the kernel needs CONFIG_TUN"
    return None


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if check and out.returncode != 0:
        raise ToolchainError(f"`{' '.join(argv)}` failed: {out.stderr.strip()}")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    """The owner pid encoded in a name this module made (``fmn<hex>…``), else None."""
    if not name.startswith(PREFIX):
        return None
    digits = ""
    for ch in name[len(PREFIX) :]:
        if ch not in "0123456789abcdef":
            break
        digits += ch
    return int(digits, 16) if digits else None


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line]


def _links() -> list[str]:
    rows = json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")
    return [str(r["ifname"]) for r in rows]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process still inside namespace ``ns`` (only ever one of ours)."""
    for pid in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def remove_stale() -> list[str]:
    """Remove namespaces and interfaces left by runs whose owner process is gone (a crash, a
    SIGKILL): their processes are killed, then the namespaces and links deleted. Returns what
    was removed. Anything whose owner still runs is left alone."""
    removed = []
    for ns in _namespaces():
        pid = _owner_pid(ns)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            _kill_namespace_processes(ns)
            _run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    for link in _links():
        name = link.split("@")[0]
        pid = _owner_pid(name)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            _run(["ip", "link", "del", name], check=False)
            removed.append(name)
    if removed:
        log.warning("removed leftovers of crashed netns runs: %s", ", ".join(removed))
    return removed


def _free_subnet(seed: int) -> str:
    """``10.A.B`` with no address or route of this host in it."""
    taken = _run(["ip", "-4", "-o", "addr", "show"]).stdout + _run(["ip", "-4", "route"]).stdout
    for attempt in range(200):
        h = zlib.crc32(f"{seed}/{attempt}".encode())
        net = f"10.{100 + h % 150}.{(h >> 8) % 256}"
        if not re.search(rf"(?<![\d.]){re.escape(net)}\.", taken):
            return net
    raise ToolchainError("no free 10.x.y.0/24 subnet for the namespaces: remove stale routes")


@dataclass(frozen=True)
class Namespace:
    """One emulated machine: a network namespace with ``address`` on the emulated network."""

    name: str
    address: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec`` execs, so the pid is argv's)."""
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass
class Network:
    """``count`` namespaces and the root namespace joined by the link emulator. Use as a context
    manager (or call :meth:`close`): everything is removed on exit, error or Ctrl-C."""

    count: int
    shape: LinkShape = field(default_factory=LinkShape)
    prefix: str = ""
    subnet: str = ""
    namespaces: list[Namespace] = field(default_factory=list)
    _emulator: subprocess.Popen[str] | None = None

    @property
    def host_address(self) -> str:
        """The root namespace's address on the emulated network (10.A.B.1)."""
        return f"{self.subnet}.1"

    @property
    def root_link(self) -> str:
        return f"{self.prefix}r"

    def open(self) -> Network:
        """Create the namespaces, start the link emulator, address every device."""
        reason = unavailable_reason()
        if reason:
            raise ToolchainError(reason)
        if not 1 <= self.count <= 250:
            raise ValueError(f"namespace count must be 1..250, got {self.count}")
        remove_stale()
        self.prefix = self.prefix or f"{PREFIX}{os.getpid():x}"
        self.subnet = self.subnet or _free_subnet(os.getpid())
        try:
            devices = [f"{self.root_link}={self.host_address}"]
            for index in range(self.count):
                ns = Namespace(f"{self.prefix}-{index}", f"{self.subnet}.{index + 2}")
                _run(["ip", "netns", "add", ns.name])
                self.namespaces.append(ns)
                devices.append(f"{self.prefix}n{index}={ns.address}")
            self._start_emulator(devices)
            self._address(self.root_link, self.host_address, None)
            for index, ns in enumerate(self.namespaces):
                _run(["ip", "link", "set", f"{self.prefix}n{index}", "netns", ns.name])
                _run(["ip", "-n", ns.name, "link", "set", f"{self.prefix}n{index}", "name", "eth0"])
                _run(["ip", "-n", ns.name, "link", "set", "lo", "up"])
                self._address("eth0", ns.address, ns.name)
        except BaseException:
            self.close()
            raise
        log.info("%d namespaces on %s.0/24 (%s)", self.count, self.subnet, self.shape)
        return self

    def _start_emulator(self, devices: list[str]) -> None:
        argv = [sys.executable, "-m", "marketplace.linkemu"]
        argv += [
            "--delay-ms",
            f"{self.shape.delay_ms:g}",
            "--rate-mbit",
            f"{self.shape.rate_mbit:g}",
        ]
        self._emulator = subprocess.Popen(
            [*argv, *devices], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=toolchain.REPO_ROOT, start_new_session=True,
        )  # fmt: skip
        assert self._emulator.stdout is not None
        if self._emulator.stdout.readline().strip() != "ready":
            raise ToolchainError(f"the link emulator did not start (exit {self._emulator.poll()})")

    @staticmethod
    def _address(dev: str, address: str, ns: str | None) -> None:
        where = ["-n", ns] if ns else []
        _run(["ip", *where, "addr", "add", f"{address}/24", "dev", dev])
        _run(["ip", *where, "link", "set", dev, "up"])

    def link_stats(self) -> dict[str, dict[str, int]]:
        """Bytes and packets each machine sent and received so far, and packets dropped, keyed
        ``root`` or by namespace name (from the link emulator)."""
        emulator = self._emulator
        if emulator is None or emulator.stdin is None or emulator.stdout is None:
            raise ToolchainError("the network is not open")
        emulator.stdin.write("stats\n")
        emulator.stdin.flush()
        raw: dict[str, dict[str, int]] = json.loads(emulator.stdout.readline())
        names = {f"{self.prefix}n{i}": ns.name for i, ns in enumerate(self.namespaces)}
        names[self.root_link] = "root"
        return {names[dev]: row for dev, row in raw.items()}

    def close(self) -> None:
        """Kill what still runs in the namespaces, delete them, stop the emulator (its devices
        vanish with it); idempotent."""
        for ns in self.namespaces:
            _kill_namespace_processes(ns.name)
            _run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces = []
        if self._emulator is not None:
            if self._emulator.stdin is not None:
                with contextlib.suppress(OSError):
                    self._emulator.stdin.close()  # end of input: it exits
            try:
                self._emulator.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._emulator.kill()
                self._emulator.wait()
            if self._emulator.stdout is not None:
                self._emulator.stdout.close()
            self._emulator = None
        if self.root_link in _links():
            _run(["ip", "link", "del", self.root_link], check=False)

    def __enter__(self) -> Network:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class NamespacedKubo:
    """A Kubo daemon running inside a namespace: API on that namespace's 127.0.0.1:5001 (reach it
    only from inside, e.g. a node started with :meth:`Namespace.exec_argv`), swarm on the
    namespace's address, port 4001."""

    namespace: Namespace
    repo_dir: Path
    peer_id: str
    process: subprocess.Popen[bytes] | None = None

    api_multiaddr = f"/ip4/127.0.0.1/tcp/{KUBO_API_PORT}"

    @property
    def swarm_multiaddr(self) -> str:
        return f"/ip4/{self.namespace.address}/tcp/{KUBO_SWARM_PORT}/p2p/{self.peer_id}"

    @property
    def env(self) -> dict[str, str]:
        """The environment an ``ipfs`` command on this daemon runs in."""
        return daemon_env(self.repo_dir)

    def ipfs_argv(self, *args: str) -> list[str]:
        """``ipfs ARGS`` on this daemon, inside its namespace (run it with :attr:`env`)."""
        return self.namespace.exec_argv([str(toolchain.kubo_path()), *args])

    def ipfs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``ipfs`` CLI against this daemon, inside its namespace."""
        argv = self.ipfs_argv(*args)
        out = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=_TIMEOUT)
        if check and out.returncode != 0:
            raise ToolchainError(f"ipfs {' '.join(args)} in {self.namespace.name}: {out.stderr}")
        return out

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, 15.0)
            self.process = None


def start_kubos(
    namespaces: Sequence[Namespace], root: Path, *, extra_peers: Sequence[str] = ()
) -> list[NamespacedKubo]:
    """A Kubo daemon in each namespace (repositories under ``root``), every one connected to all
    the others and to ``extra_peers`` (``/ip4/…/p2p/<id>`` multiaddrs, e.g. a root-namespace daemon
    started with ``start_kubo(swarm_host=network.host_address)``), and kept so by Kubo's peering.
    Returns once every daemon sees every peer; stop them with :func:`stop_kubos`."""
    kubos = []
    for ns in namespaces:
        repo = root / ns.name
        peer_id = init_repo(
            repo, api_port=KUBO_API_PORT, swarm_host=ns.address, swarm_port=KUBO_SWARM_PORT
        )
        kubos.append(NamespacedKubo(ns, repo, peer_id))
    try:
        everyone = [k.swarm_multiaddr for k in kubos] + list(extra_peers)
        for k in kubos:
            others = [a for a in everyone if a != k.swarm_multiaddr]
            config_path = k.repo_dir / "config"
            config = json.loads(config_path.read_text())
            config["Peering"] = {
                "Peers": [
                    {"ID": a.split("/p2p/")[1], "Addrs": [a.split("/p2p/")[0]]} for a in others
                ]
            }
            config_path.write_text(json.dumps(config, indent=2))
            daemon = [str(toolchain.kubo_path()), "daemon", "--migrate=false"]
            with open(k.repo_dir / "daemon.log", "ab") as out:
                k.process = subprocess.Popen(
                    k.namespace.exec_argv(daemon), env=daemon_env(k.repo_dir),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        for k in kubos:
            _wait_api(k)
        for i, k in enumerate(kubos):  # peering redials with backoff; dial once now
            later = [a.swarm_multiaddr for a in kubos[i + 1 :]] + list(extra_peers)
            if later:
                k.ipfs("swarm", "connect", *later)
        for k in kubos:
            _wait_peers(k, len(everyone) - 1)
    except BaseException:
        stop_kubos(kubos)
        raise
    return kubos


def stop_kubos(kubos: Sequence[NamespacedKubo]) -> None:
    """Stop every daemon and remove its repository."""
    for k in kubos:
        k.stop()
        shutil.rmtree(k.repo_dir, ignore_errors=True)


def _wait_api(k: NamespacedKubo) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        assert k.process is not None
        if k.process.poll() is not None:
            tail = (k.repo_dir / "daemon.log").read_text(errors="replace").strip()[-300:]
            raise ToolchainError(f"Kubo in {k.namespace.name} exited at start-up: {tail}")
        if (k.repo_dir / "api").exists() and k.ipfs("id", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise ToolchainError(f"Kubo in {k.namespace.name} did not answer within 60 s")


def _wait_peers(k: NamespacedKubo, expected: int) -> None:
    deadline = time.monotonic() + 60.0
    peers: list[str] = []
    while time.monotonic() < deadline:
        peers = k.ipfs("swarm", "peers", check=False).stdout.split()
        if len(peers) >= expected:
            return
        time.sleep(0.3)
    raise ToolchainError(
        f"Kubo in {k.namespace.name} sees {len(peers)} of {expected} peers after 60 s"
    )
