"""The contracts' ABIs and bytecode, built once into package data, so an installed wheel deploys.

``python -m marketplace.chain.build`` (run by ``scripts/bootstrap`` and by the wheel build, see
``setup.py``) compiles ``contracts/`` and writes :data:`PACKAGED` — every deployable contract's
ABI and bytecode, with the hash of the compiler input they came from. The file is build output:
git ignores it, the wheel ships it.

:func:`contract_artifacts` is what deploying reads: in a checkout whose contract sources still
hash to the packaged build, or in an installed package (no sources), the packaged artifacts; in a
checkout whose sources changed since, a fresh compile (cached by :mod:`.compiler`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marketplace.chain.compiler import (
    CONTRACTS_DIR,
    ContractArtifact,
    build_input,
    compile_contracts,
    input_hash,
)
from marketplace.errors import ToolchainError

log = logging.getLogger(__name__)

PACKAGED = Path(__file__).resolve().parent / "_build" / "contracts.json"
FORMAT = "fedmarket-contracts/1"


def build(path: Path = PACKAGED) -> Path:
    """Compile the contracts and write the packaged artifacts to ``path``; returns it."""
    standard_input = build_input()
    artifacts = compile_contracts()
    deployable = {n: a for n, a in sorted(artifacts.items()) if a.bytecode not in ("", "0x")}
    data = {
        "format": FORMAT,
        "input_hash": input_hash(standard_input),
        "contracts": {n: a.__dict__ for n, a in deployable.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)
    return path


def packaged_artifacts(path: Path = PACKAGED) -> tuple[str, dict[str, ContractArtifact]] | None:
    """``(input hash, artifacts)`` of the packaged build, or ``None`` when there is none."""
    try:
        data: Mapping[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise ToolchainError(
            f"{path} is corrupt: rebuild it with `python -m marketplace.chain.build`"
        ) from None
    if data.get("format") != FORMAT:
        raise ToolchainError(
            f"{path} has format {data.get('format')!r}, not {FORMAT}: rebuild it with "
            "`python -m marketplace.chain.build`"
        )
    contracts = {n: ContractArtifact(**a) for n, a in data["contracts"].items()}
    return str(data["input_hash"]), contracts


def contract_artifacts() -> dict[str, ContractArtifact]:
    """The artifacts to deploy: packaged unless a checkout's sources changed since the build."""
    packaged = packaged_artifacts()
    has_sources = CONTRACTS_DIR.is_dir() and any(CONTRACTS_DIR.rglob("*.sol"))
    if packaged is not None:
        built_from, artifacts = packaged
        if not has_sources or input_hash(build_input()) == built_from:
            return artifacts
        log.info("contract sources changed since %s was built: compiling", PACKAGED)
    elif not has_sources:
        raise ToolchainError(
            f"no contract artifacts in this installation ({PACKAGED} is missing) and no sources "
            "to compile: reinstall the fedmarket wheel, or deploy from a checkout"
        )
    return compile_contracts()


def main(argv: list[str] | None = None) -> int:
    """``python -m marketplace.chain.build [PATH]``."""
    args = sys.argv[1:] if argv is None else argv
    path = build(Path(args[0]) if args else PACKAGED)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
