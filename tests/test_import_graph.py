"""The layering, checked from the source: no import cycle among the project's modules, and the
library (``marketplace``) never imports the node application (``node``).

The graph is built from the AST, so it sees every import, including those inside functions. An
``from a.b import c`` counts as an import of the module ``a.b.c`` when that is a module of ours,
else of ``a.b``. A module's implicit import of its parent packages is not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("marketplace", "node")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in sorted((REPO / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".")
                    if not _is_package(path):
                        anchor = anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                # "import a.b.c" where a.b.c is a module; else the longest module prefix
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or ``None``."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        colour[module] = GREY
        stack.append(module)
        for dep in sorted(graph[module]):
            if colour[dep] == GREY:
                return [*stack[stack.index(dep) :], dep]
            if colour[dep] == WHITE and (cycle := visit(dep)):
                return cycle
        stack.pop()
        colour[module] = BLACK
        return None

    for module in sorted(graph):
        if colour[module] == WHITE and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_sees_the_known_edges():
    # Prepare / Execute
    graph = import_graph()
    # Assert: the builder is not vacuous (these imports exist in the tree)
    assert "node.peers.base" in graph["node.peers.trainer"]
    assert "marketplace.gossip.topics" in graph["marketplace.gossip.update_gossip"]
    assert "node.cli.sourcing_cli" in graph["node.cli.task_cli"]  # imported inside a function


def test_no_import_cycle_anywhere():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_project_import_names_a_module_of_this_tree():
    """A moved module leaves no stale import behind (an editable install of another checkout on
    sys.path could otherwise still satisfy it, and hide the break)."""
    modules = project_modules()
    stale = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                root = node.module.split(".")[0]
                if root in PACKAGES and node.module not in modules:
                    stale.append(f"{name}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    root = alias.name.split(".")[0]
                    if root in PACKAGES and alias.name not in modules:
                        stale.append(f"{name}: import {alias.name}")
    assert stale == []


def test_the_library_never_imports_the_node_application():
    graph = import_graph()
    upward = sorted(
        f"{module} → {dep}"
        for module, deps in graph.items()
        if module.startswith("marketplace")
        for dep in deps
        if dep == "node" or dep.startswith("node.")
    )
    assert upward == []


def test_no_two_modules_share_a_name():
    """Names say what they are: one module per basename (``__init__`` and the ``base`` of each
    family of implementations excepted)."""
    seen: dict[str, list[str]] = {}
    for name, path in project_modules().items():
        if path.stem in ("__init__", "__main__", "base"):
            continue
        seen.setdefault(path.stem, []).append(name)
    assert {stem: names for stem, names in seen.items() if len(names) > 1} == {}
