"""Local devnets: start and stop Anvil or ``npx hardhat node`` on a free 127.0.0.1 port.

Both serve the same 20 funded accounts of the well-known development mnemonic, so tests and the
demo use the same keys on either node. These keys are public: never use them outside a devnet.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account

from marketplace import toolchain
from marketplace.errors import ToolchainError
from marketplace.processes import stop_process_group

log = logging.getLogger(__name__)

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT = 20
DEVNET_CHAIN_ID = 31337


@cache
def dev_private_keys(count: int = DEV_ACCOUNT_COUNT) -> tuple[str, ...]:
    """The devnet's funded private keys (hex, 0x-prefixed), derived from :data:`DEV_MNEMONIC`."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        "0x" + Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(count)
    )


DEV_PRIVATE_KEYS: tuple[str, ...] = dev_private_keys()
#: Highest devnet account index a CLI may sign with (``anvil --accounts N`` funds the first N).
MAX_DEV_ACCOUNT = 99


@cache
def dev_private_key(index: int) -> str:
    """Devnet key ``index`` of :data:`DEV_MNEMONIC`, also past the 20 funded by default (a
    benchmark with more peers starts Anvil with ``accounts=``)."""
    if index < len(DEV_PRIVATE_KEYS):
        return DEV_PRIVATE_KEYS[index]
    Account.enable_unaudited_hdwallet_features()
    path = f"m/44'/60'/0'/0/{index}"
    key: bytes = Account.from_mnemonic(DEV_MNEMONIC, account_path=path).key
    return "0x" + key.hex()


def dev_x25519_private(index: int) -> X25519PrivateKey:
    """A deterministic X25519 key for devnet account ``index`` (as public as its Ethereum key)."""
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedmarket devnet x25519"
    ).derive(bytes.fromhex(dev_private_key(index)[2:]))
    return X25519PrivateKey.from_private_bytes(seed)


def dev_x25519_public(index: int) -> bytes:
    """The raw 32-byte public key of :func:`dev_x25519_private`."""
    return dev_x25519_private(index).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc_chain_id(rpc_url: str, *, timeout: float = 2.0) -> int:
    """``eth_chainId`` of the node at ``rpc_url``; raises ``OSError`` if it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    # Callers pass the http://127.0.0.1:<port> URL of a devnet node they started or probe.
    req = urllib.request.Request(  # noqa: S310 (http to our own node)
        rpc_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http to our own node)
        return int(json.loads(resp.read())["result"], 16)


@dataclass
class DevnetProcess:
    """A devnet node this process started; stop it with :meth:`stop` or a ``with`` block."""

    kind: str
    rpc_url: str
    chain_id: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the node and its children (the whole process group)."""
        if self._stopped:
            return
        self._stopped = True
        stop_process_group(self.process, timeout)

    def __enter__(self) -> DevnetProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _spawn(
    kind: str, argv: list[str], rpc_url: str, *, log_path: Path | None, cwd: Path, timeout: float
) -> DevnetProcess:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (child owns it)
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )
    node = DevnetProcess(kind=kind, rpc_url=rpc_url, chain_id=0, process=proc, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            hint = f" (see {log_path})" if log_path else ""
            raise ToolchainError(f"{kind} exited with code {proc.returncode} at start-up{hint}")
        try:
            node.chain_id = rpc_chain_id(rpc_url, timeout=1.0)
            log.info("%s up at %s (chain id %d, pid %d)", kind, rpc_url, node.chain_id, proc.pid)
            return node
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            time.sleep(0.1)
    node.stop()
    raise ToolchainError(f"{kind} did not answer at {rpc_url} within {timeout:.0f}s")


def start_anvil(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    chain_id: int = DEVNET_CHAIN_ID,
    accounts: int = DEV_ACCOUNT_COUNT,
    block_time: float | None = None,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> DevnetProcess:
    """Start Anvil on 127.0.0.1 (a free port unless given); returns once it answers JSON-RPC.

    Mines a block per transaction unless ``block_time`` is given. ``host`` is the address to
    listen on: 127.0.0.1 unless peers in other network namespaces must reach it (then the root
    namespace's address on the emulated network, :mod:`marketplace.netns`), never a public one.
    """
    port = port or free_port()
    argv = [
        str(toolchain.anvil_path()),
        "--host", host,
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--mnemonic", DEV_MNEMONIC,
    ]  # fmt: skip
    if block_time:
        argv += ["--block-time", str(block_time)]
    return _spawn(
        "anvil",
        argv,
        f"http://{host}:{port}",
        log_path=log_path,
        cwd=toolchain.REPO_ROOT,
        timeout=timeout,
    )


def start_hardhat_node(
    *, port: int | None = None, log_path: Path | None = None, timeout: float = 90.0
) -> DevnetProcess:
    """Start ``npx hardhat node`` (chain id 31337) on 127.0.0.1, using ``hardhat.config.js``."""
    port = port or free_port()
    argv = [
        toolchain.node_binary(),
        str(toolchain.hardhat_path()),
        "node",
        "--hostname", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    return _spawn(
        "hardhat node",
        argv,
        f"http://127.0.0.1:{port}",
        log_path=log_path,
        cwd=toolchain.REPO_ROOT,
        timeout=timeout,
    )


def start_devnet(kind: str = "anvil", **kwargs: object) -> DevnetProcess:
    """Start a devnet by name: ``anvil`` or ``hardhat``."""
    if kind == "anvil":
        return start_anvil(**kwargs)  # type: ignore[arg-type]
    if kind == "hardhat":
        return start_hardhat_node(**kwargs)  # type: ignore[arg-type]
    raise ToolchainError(f"unknown devnet {kind!r}: use 'anvil' or 'hardhat'")


def advance_chain_time(w3: Any, seconds: int) -> None:
    """Move a devnet's clock forward by ``seconds`` and mine a block (Anvil, Hardhat, py-evm)."""
    provider = w3.provider
    tester = getattr(provider, "ethereum_tester", None)
    if tester is not None:  # the in-process EVM has no evm_increaseTime
        now = int(w3.eth.get_block("latest")["timestamp"])
        tester.time_travel(now + seconds)
        tester.mine_blocks(1)
        return
    provider.make_request("evm_increaseTime", [seconds])
    provider.make_request("evm_mine", [])
