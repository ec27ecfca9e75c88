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


STARTS = PINNED | {"start_devnet", "start_kubo"}


def starting_tests() -> set[str]:
    """``file::test`` of each test function that starts a devnet or a Kubo daemon itself."""
    found = set()
    for path in sorted(TESTS.rglob("test_*.py")):
        for fn in ast.parse(path.read_text()).body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")):
                continue
            for node in ast.walk(fn):
                call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                if call and node.func.id in STARTS:
                    found.add(f"{path.relative_to(TESTS.parent)}::{fn.name}")
    return found


def test_a_test_that_starts_a_service_is_not_in_the_unit_loop():
    """``-m unit`` is the loop with no services: a test that starts a devnet or a daemon itself
    must be marked for it (tests/conftest.py marks by fixture: ``chain_kind`` counts)."""
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--collect-only",
            "-m",
            "unit",
            "-p",
            "no:cacheprovider",
            str(TESTS),
        ],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    unit = {line.split("[")[0] for line in out.splitlines() if "::" in line}
    starting = starting_tests()
    assert starting, "the finder found no test that starts a service"
    assert unit & starting == set()
