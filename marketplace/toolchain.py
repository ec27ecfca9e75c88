"""Where the project's external tools live (solc-js, Anvil, cast, Hardhat, Kubo).

``scripts/bootstrap`` installs them: npm packages into ``node_modules`` at the repository root and
the Kubo binary into the tools cache (``$FEDMARKET_TOOLS``, default ``~/.cache/fedmarket``), which
is shared by every clone so Kubo is built once per machine. Each path can be overridden by an
environment variable, for installs that keep their tools elsewhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from marketplace.errors import ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBO_VERSION = "v0.43.0"
SOLC_VERSION = "0.8.28"


def tools_dir() -> Path:
    """The per-machine tools cache (Kubo binary, Go module cache)."""
    return Path(os.environ.get("FEDMARKET_TOOLS", Path.home() / ".cache" / "fedmarket"))


def node_modules() -> Path:
    return Path(os.environ.get("FEDMARKET_NODE_MODULES", REPO_ROOT / "node_modules"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ToolchainError(f"{what} not found at {path}: run scripts/bootstrap")
    return path


def solcjs_path() -> Path:
    """solc-js's ``solc.js`` entry point (the npm ``solc`` package)."""
    return _require(node_modules() / "solc" / "solc.js", f"solc-js {SOLC_VERSION}")


def anvil_path() -> Path:
    env = os.environ.get("FEDMARKET_ANVIL")
    if env:
        return _require(Path(env), "anvil")
    return _require(node_modules() / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil", "anvil")


def cast_path() -> Path:
    env = os.environ.get("FEDMARKET_CAST")
    if env:
        return _require(Path(env), "cast")
    return _require(node_modules() / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast", "cast")


def hardhat_path() -> Path:
    return _require(node_modules() / "hardhat" / "internal" / "cli" / "bootstrap.js", "hardhat")


def kubo_path() -> Path:
    """The Kubo (``ipfs``) binary built by ``scripts/bootstrap`` from the Go module proxy."""
    env = os.environ.get("FEDMARKET_KUBO")
    if env:
        return _require(Path(env), "Kubo (ipfs)")
    built = tools_dir() / f"kubo-{KUBO_VERSION}" / "ipfs"
    if built.exists():
        return built
    on_path = shutil.which("ipfs")
    if on_path:
        return Path(on_path)
    return _require(built, f"Kubo {KUBO_VERSION} (ipfs)")


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError("node (Node.js) not found on PATH: install Node.js 18 or newer")
    return node
