"""The typed chain views mirror the compiled contracts' ABI exactly: a struct field added, removed
or renamed in Solidity fails here (and the client refuses to decode it at run time)."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from marketplace.chain.compiler import compile_contracts
from marketplace.chain.views import (
    Participant,
    Phase,
    Role,
    StructView,
    TaskInfo,
    TaskParams,
    check_components,
    decode,
    snake,
)
from marketplace.errors import ChainError


def abi_function(contract: str, name: str) -> dict[str, Any]:
    (entry,) = [
        e
        for e in compile_contracts()[contract].abi
        if e.get("type") == "function" and e.get("name") == name
    ]
    return entry


def abi_enum_members(contract: str, enum: str) -> list[str] | None:
    """The enum's members as declared in the Solidity source (the ABI only says ``uint8``)."""
    import re

    from marketplace import toolchain

    root = toolchain.REPO_ROOT / "contracts"
    # The contract's own files only: other contracts may declare an enum of the same name.
    for path in (root / "interfaces" / f"I{contract}.sol", root / f"{contract}.sol"):
        if not path.exists():
            continue
        found = re.search(rf"enum {enum}\s*\{{([^}}]*)\}}", path.read_text())
        if found:
            return [m.strip() for m in found.group(1).split(",") if m.strip()]
    return None


CASES: list[tuple[type[StructView], str, str, str]] = [
    (TaskInfo, "TaskMarket", "task", "outputs"),
    (TaskParams, "TaskMarket", "createTask", "inputs"),
    (Participant, "ParticipantRegistry", "participant", "outputs"),
]


@pytest.mark.parametrize(("view", "contract", "function", "side"), CASES)
def test_each_view_has_exactly_the_abi_fields(view, contract, function, side):
    # Prepare
    entries = abi_function(contract, function)[side]
    components = entries[0]["components"] if entries[0]["type"] == "tuple" else entries
    # Execute / Assert: same names (snake_case), nothing missing, nothing extra
    assert sorted(snake(c["name"]) for c in components) == sorted(view.abi_fields())
    check_components(view, components)


def test_the_enums_match_the_solidity_declarations():
    assert [m.upper() for m in abi_enum_members("TaskMarket", "Phase") or []] == [
        p.name for p in Phase
    ]
    assert [m.upper() for m in abi_enum_members("ParticipantRegistry", "Role") or []] == [
        r.name for r in Role
    ]


def test_a_changed_abi_is_refused_with_the_difference_named():
    # Prepare: the real components with one field renamed, as a contract change would
    (output,) = abi_function("TaskMarket", "task")["outputs"]
    changed = [dict(c) for c in output["components"]]
    changed[3] = {**changed[3], "name": "roundNow"}
    values = [0] * len(changed)
    # Execute / Assert
    expected = r"ABI only: \['round_now'\].*view only: \['current_round'\]"
    with pytest.raises(ChainError, match=expected):
        decode(TaskInfo, changed, values, task_id=1)


def test_values_are_converted_by_abi_type():
    (output,) = abi_function("TaskMarket", "task")["outputs"]
    values = []
    for c in output["components"]:
        t = c["type"]
        values.append(
            "0x" + "ab" * 20 if t == "address" else b"\x01" * 32 if t == "bytes32"
            else True if t == "bool" else 1
        )  # fmt: skip
    info = decode(TaskInfo, output["components"], values, task_id=7)
    assert info.phase is Phase.TRAINING and info.task_id == 7
    assert info.requester == Web3.to_checksum_address("0x" + "ab" * 20)
    assert info.payout_root == b"\x01" * 32 and info.scoring_failed is True
    assert info.to_json()["phaseName"] == "training"
