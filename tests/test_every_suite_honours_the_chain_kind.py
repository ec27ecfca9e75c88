"""Every suite starts its devnet by FEDMARKET_TEST_CHAIN (``start_devnet`` with the ``chain_kind``
fixture, or the ``anvil``/``module_chain`` fixtures), so ``FEDMARKET_TEST_CHAIN=hardhat`` runs it
on the Hardhat node; a direct ``start_anvil``/``start_hardhat_node`` call would pin one devnet.

The one exception says why: the Hardhat node's chain id is fixed (31337), and that test needs
another one."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PINNED = {"start_anvil", "start_hardhat_node"}
# (file, test) → why it must pin its devnet
EXCEPTIONS = {("test_cli.py", "test_dev_account_refused_off_devnet_chain_ids"): "chain id 10"}


def pinned_calls(path: Path) -> list[tuple[str, str]]:
    """(file, enclosing function) of each direct devnet start in ``path``."""
    found = []
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else None
                name = name or (node.func.id if isinstance(node.func, ast.Name) else "")
                if name in PINNED:
                    found.append((str(path.relative_to(TESTS)), fn.name))
    return found


def test_no_suite_pins_its_devnet():
    calls = {c for p in sorted(TESTS.rglob("*.py")) for c in pinned_calls(p)}
    assert calls == set(EXCEPTIONS)
