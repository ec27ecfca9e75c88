"""Compiling the Solidity contracts offline with solc-js, through py-solc-x.

Every ``.sol`` file under ``contracts/`` is compiled with the settings in
``contracts/solc-settings.json`` (Hardhat reads the same file, so both builds give the same
bytecode). Imports are resolved here, not by the compiler: each source is given to solc under the
name Hardhat would give it (``contracts/X.sol``, ``@openzeppelin/contracts/...``), which keeps the
metadata, and therefore the bytecode, identical between the two builds.

py-solc-x needs a ``solc`` executable. Installing one downloads it, which these machines cannot do,
so :func:`solc_shim` writes a tiny script into ``cache/`` that answers ``--version`` like solc
0.8.28 and otherwise runs solc-js (``node node_modules/solc/solc.js --standard-json``), dropping
the ``>>>`` lines solc-js prints before its JSON.

Outputs are cached in ``artifacts/`` under a hash of the compiler input, so repeated calls cost a
file read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from marketplace import toolchain
from marketplace.errors import ToolchainError

log = logging.getLogger(__name__)

SOLC_LONG_VERSION = "0.8.28+commit.7893614a"
CONTRACTS_DIR = toolchain.REPO_ROOT / "contracts"
SETTINGS_FILE = CONTRACTS_DIR / "solc-settings.json"
ARTIFACTS_DIR = toolchain.REPO_ROOT / "artifacts"
CACHE_DIR = toolchain.REPO_ROOT / "cache"

# Only what the library needs; Hardhat asks for more, which does not change the bytecode.
_OUTPUT_SELECTION = {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}}
_IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^"';]*?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract.

    Attributes
    ----------
    name : str
        The contract's name (``TaskMarket``).
    abi : list of dict
        Its ABI.
    bytecode : str
        Creation code, ``0x``-prefixed hex (``0x`` alone for interfaces and abstract contracts).
    deployed_bytecode : str
        Runtime code, ``0x``-prefixed hex.
    source : str
        The source unit it comes from (``contracts/TaskMarket.sol``).
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    source: str


_memo: dict[str, dict[str, ContractArtifact]] = {}


def compile_contracts(*, force: bool = False) -> dict[str, ContractArtifact]:
    """Compile every contract under ``contracts/`` and return them by name.

    Parameters
    ----------
    force : bool
        Recompile even when a cached output for the same input exists.

    Raises
    ------
    ToolchainError
        Node.js or solc-js is missing, or the compiler reported an error (the first one is quoted).
    """
    standard_input = build_input()
    key = input_hash(standard_input)
    if not force and key in _memo:
        return _memo[key]
    cached = ARTIFACTS_DIR / f"solc-{key[:16]}.json"
    if not force and cached.exists():
        try:
            artifacts = _artifacts_from_json(json.loads(cached.read_text()))
            _memo[key] = artifacts
            return artifacts
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring corrupt compiler cache %s", cached)
    output = _run_solc(standard_input)
    artifacts = _artifacts_from_output(output)
    _write_atomic(cached, json.dumps({n: a.__dict__ for n, a in sorted(artifacts.items())}))
    _memo[key] = artifacts
    log.info("compiled %d contracts (cache %s)", len(artifacts), cached.name)
    return artifacts


def solc_settings() -> dict[str, Any]:
    """The pinned compiler settings shared with ``hardhat.config.js``."""
    try:
        settings: dict[str, Any] = json.loads(SETTINGS_FILE.read_text())
    except FileNotFoundError:
        raise ToolchainError(f"{SETTINGS_FILE} is missing: restore it from git") from None
    return settings


def build_input() -> dict[str, Any]:
    """The solc standard-JSON input: every contract source and what they import."""
    roots = sorted(
        p.relative_to(toolchain.REPO_ROOT).as_posix() for p in CONTRACTS_DIR.rglob("*.sol")
    )
    if not roots:
        raise ToolchainError(f"no .sol files under {CONTRACTS_DIR}")
    sources: dict[str, dict[str, str]] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        text = _read_source(name)
        sources[name] = {"content": text}
        pending.extend(_resolve_import(name, imp) for imp in _IMPORT_RE.findall(text))
    settings = solc_settings()
    settings["outputSelection"] = _OUTPUT_SELECTION
    return {
        "language": "Solidity",
        "sources": dict(sorted(sources.items())),
        "settings": settings,
    }


def input_hash(standard_input: Mapping[str, Any]) -> str:
    """sha256 of the compiler version and the canonical JSON input (the cache key)."""
    blob = json.dumps(standard_input, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(SOLC_LONG_VERSION.encode() + b"\0" + blob).hexdigest()


def solc_shim() -> Path:
    """Write (once) and return the ``solc`` stand-in that py-solc-x runs."""
    node = toolchain.node_binary()
    solcjs = toolchain.solcjs_path()
    script = f"""#!/bin/sh
# Written by marketplace/chain/compiler.py: solc {SOLC_LONG_VERSION} via solc-js, for py-solc-x.
for arg in "$@"; do
  if [ "$arg" = "--version" ]; then
    echo "solc, the solidity compiler commandline interface"
    echo "Version: {SOLC_LONG_VERSION}.Emscripten.clang"
    exit 0
  fi
done
# Files, not pipes, on both ends: solc-js reads stdin with readFileSync (EAGAIN on a pipe) and
# exits before an asynchronous pipe write of more than 64 KiB has drained.
input=$(mktemp "${{TMPDIR:-/tmp}}/solc-input.XXXXXX") || exit 1
output=$(mktemp "${{TMPDIR:-/tmp}}/solc-output.XXXXXX") || exit 1
trap 'rm -f "$input" "$output"' EXIT
cat > "$input"
"{node}" "{solcjs}" --standard-json < "$input" > "$output"
status=$?
# solc-js may print ">>> Cannot retry compilation with SMT..." before the JSON.
grep -v '^>>>' "$output"
exit $status
"""
    shim = CACHE_DIR / f"solc-shim-{SOLC_LONG_VERSION}"
    if not shim.exists() or shim.read_text() != script:
        _write_atomic(shim, script)
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return shim


# --- internals ------------------------------------------------------------------------------


def _read_source(name: str) -> str:
    if name.startswith("@"):
        path = toolchain.node_modules() / name
        hint = "run scripts/bootstrap (npm ci)"
    else:
        path = toolchain.REPO_ROOT / name
        hint = "check the import path"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ToolchainError(f"Solidity source {name} not found at {path}: {hint}") from None


def _resolve_import(importer: str, target: str) -> str:
    """The source unit name of ``target`` imported from ``importer`` (Hardhat's naming)."""
    if not target.startswith("."):
        return target
    parts: list[str] = []
    for part in (PurePosixPath(importer).parent / target).parts:
        if part == "..":
            if not parts:
                raise ToolchainError(f"import {target!r} in {importer} escapes the project")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _run_solc(standard_input: dict[str, Any]) -> dict[str, Any]:
    import solcx
    from solcx.exceptions import SolcError

    shim = solc_shim()
    try:
        output: dict[str, Any] = solcx.compile_standard(standard_input, solc_binary=shim)
    except SolcError as exc:
        errors = getattr(exc, "error_dict", None) or []
        first = next((e for e in errors if e.get("severity") == "error"), None)
        if first:
            where = first.get("sourceLocation", {}).get("file", "?")
            raise ToolchainError(
                f"Solidity compilation failed in {where}: {first.get('message', '').strip()}"
            ) from None
        detail = (str(exc).strip().splitlines() or ["no output"])[0]
        raise ToolchainError(
            f"solc-js failed: {detail}; check Node.js and node_modules/solc"
        ) from None
    except (OSError, ValueError) as exc:
        raise ToolchainError(f"could not run solc-js via {shim}: {exc}") from None
    return output


def _artifacts_from_output(output: Mapping[str, Any]) -> dict[str, ContractArtifact]:
    artifacts: dict[str, ContractArtifact] = {}
    for source, contracts in output.get("contracts", {}).items():
        if not source.startswith("contracts/"):
            continue  # OpenZeppelin's contracts are compiled into ours, not deployed on their own
        for name, data in contracts.items():
            if name in artifacts:
                raise ToolchainError(
                    f"two contracts named {name} ({artifacts[name].source}, {source}): rename one"
                )
            evm = data.get("evm", {})
            artifacts[name] = ContractArtifact(
                name=name,
                abi=data["abi"],
                bytecode=_hex(evm.get("bytecode", {}).get("object", "")),
                deployed_bytecode=_hex(evm.get("deployedBytecode", {}).get("object", "")),
                source=source,
            )
    if not artifacts:
        raise ToolchainError("the compiler returned no contracts")
    return artifacts


def _artifacts_from_json(data: Mapping[str, Any]) -> dict[str, ContractArtifact]:
    return {name: ContractArtifact(**fields) for name, fields in data.items()}


def _hex(obj: str) -> str:
    return "0x" + obj


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
