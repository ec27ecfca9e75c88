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


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def starts_a_service(path: Path, fn: ast.FunctionDef, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``fn`` calls a start function, itself or through a function of its module."""
    module = _functions(path)
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in STARTS:
                return True
            inner = module.get(name) if name not in seen else None
            if inner is not None and starts_a_service(path, inner, seen | {fn.name}):
                return True
    return False


def function_at(path: Path, line: int) -> ast.FunctionDef | None:
    """The module-level function whose definition (decorators included) starts at ``line``."""
    for fn in _functions(path).values():
        if line in (fn.lineno, *(d.lineno for d in fn.decorator_list)):
            return fn
    return None


def unit_loop(*options: str) -> str:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *options, "-m", "unit", "-p", "no:cacheprovider",
         str(TESTS)],
        cwd=TESTS.parent, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip


def test_a_test_that_starts_a_service_is_not_in_the_unit_loop():
    """``-m unit`` is the loop with no services: a test that starts a devnet or a daemon, itself
    or through a fixture of its own, must be marked for it (tests/conftest.py marks by the
    fixtures it knows: ``anvil``, ``module_chain``, ``chain_kind``, the Kubo ones)."""
    import re

    # The unit tests themselves ...
    tests = {
        (file, name)
        for file, name in re.findall(
            r"^(tests/[^:]+\.py)::(\w+)", unit_loop("--collect-only"), re.M
        )
    }
    # ... and the fixtures they use ("name -- tests/y.py:M"), by where they are defined
    per_test = unit_loop("--fixtures-per-test")
    fixtures = set(re.findall(r"^\S+ -- (tests/[^:\s]+\.py):(\d+)$", per_test, re.M))
    assert tests and fixtures, "nothing parsed"
    starting = []
    for file, name in sorted(tests):
        fn = _functions(TESTS.parent / file).get(name)
        if fn is not None and starts_a_service(TESTS.parent / file, fn):
            starting.append(f"{file}::{name}")
    for file, line in sorted(fixtures):
        fn = function_at(TESTS.parent / file, int(line))
        if fn is not None and starts_a_service(TESTS.parent / file, fn):
            starting.append(f"{file}:{line} (fixture {fn.name})")
    assert starting == []
