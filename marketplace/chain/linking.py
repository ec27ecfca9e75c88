"""Linking of external Solidity libraries into the contracts that call them.

``TaskMarket`` calls two external libraries (``TaskState``, ``CommitteeVote``) so that it stays
under the 24 KiB contract size limit. solc leaves a placeholder ``__$<34 hex>$__`` in the caller's
bytecode for each, where the hex is the start of ``keccak256("<source>:<name>")``; the library is
deployed first and its address written over the placeholder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from eth_utils.crypto import keccak

from marketplace.chain.compiler import ContractArtifact
from marketplace.errors import ChainError


def placeholder(artifact: ContractArtifact) -> str:
    """The 40-character placeholder solc writes for calls into library ``artifact``."""
    digest = keccak(text=f"{artifact.source}:{artifact.name}").hex()
    return f"__${digest[:34]}$__"


def needed_libraries(
    artifact: ContractArtifact, artifacts: Mapping[str, ContractArtifact]
) -> list[ContractArtifact]:
    """The libraries whose addresses ``artifact``'s creation code still needs, by name."""
    if "__$" not in artifact.bytecode:
        return []
    found = [a for a in artifacts.values() if placeholder(a) in artifact.bytecode]
    linked = artifact.bytecode
    for lib in found:
        linked = linked.replace(placeholder(lib), "0" * 40)
    if "__$" in linked:
        raise ChainError(f"{artifact.name} needs a library that is not among the artifacts")
    return sorted(found, key=lambda a: a.name)


def link(
    artifact: ContractArtifact,
    artifacts: Mapping[str, ContractArtifact],
    deploy_library: Callable[[ContractArtifact], str],
    deployed: dict[str, str] | None = None,
) -> str:
    """``artifact``'s creation code with every library linked.

    Each library it needs and that is not in ``deployed`` (name → address) is deployed with
    ``deploy_library`` (which returns the address) and recorded in ``deployed``.
    """
    deployed = {} if deployed is None else deployed
    code = artifact.bytecode
    for lib in needed_libraries(artifact, artifacts):
        if lib.name not in deployed:
            # A library may call another one: link it first (the libraries form no cycle).
            linked = replace(lib, bytecode=link(lib, artifacts, deploy_library, deployed))
            deployed[lib.name] = deploy_library(linked)
        code = code.replace(placeholder(lib), deployed[lib.name].lower().removeprefix("0x"))
    return code
