"""Every custom error of the marketplace contracts is asserted (by name) somewhere in this suite."""

from __future__ import annotations

import re
from pathlib import Path

from marketplace.chain.compiler import compile_contracts

HERE = Path(__file__).resolve().parent


def test_every_custom_error_is_asserted_by_a_test():
    # Prepare
    artifacts = compile_contracts()
    errors = {
        item["name"]
        for name in ("TaskMarket", "ParticipantRegistry")
        for item in artifacts[name].abi
        if item["type"] == "error" and item["name"].startswith(name)
    }
    sources = "\n".join(
        p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name
    )
    # Execute
    asserted = set(re.findall(r'"((?:TaskMarket|ParticipantRegistry)\w+)"', sources))
    # Assert
    assert len(errors) > 50
    assert sorted(errors - asserted) == []
