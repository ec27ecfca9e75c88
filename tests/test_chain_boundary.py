"""The chain client does not leak, checked from the source: outside ``marketplace/chain/`` the
library and the node application call no raw contract function (``contract.functions.x``) and
read no clock of their own (``get_block("latest")``): they go through the typed clients
(``Marketplace``, ``ModelMarketClient``, ...) and ``.now()``.

Tests and scripts may still drive contracts directly (they test them)."""

from __future__ import annotations

import ast
from pathlib import Path

from test_import_graph import REPO, project_modules

CHAIN = REPO / "marketplace" / "chain"


def leaks(source: str) -> list[tuple[int, str]]:
    """(line, what) of every raw contract call and latest-block read in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "functions":
            found.append((node.lineno, ".functions"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_block"
            and any(isinstance(a, ast.Constant) and a.value == "latest" for a in node.args)
        ):
            found.append((node.lineno, 'get_block("latest")'))
    return sorted(found)


def outside_chain() -> list[Path]:
    return [p for p in project_modules().values() if CHAIN not in p.parents]


def test_the_checker_sees_both_leaks():
    source = 'x = m.market.functions.task(1).call()\nt = w3.eth.get_block("latest")["timestamp"]\n'
    assert leaks(source) == [(1, ".functions"), (2, 'get_block("latest")')]
    assert leaks("t = market.now()\nb = w3.eth.get_block(n)\n") == []


def test_no_raw_contract_call_or_clock_read_outside_the_chain_package():
    found = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in outside_chain()
        for line, what in leaks(path.read_text())
    ]
    assert found == [], "use the typed client (marketplace/chain/): " + "; ".join(found)
