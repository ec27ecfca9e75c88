"""The CLI's shape: every fixed set of names it offers is the library's own constant, so a
name the help suggests is one the library accepts (issue 11: `--valuation loo` was offered as a
free string and refused by every oracle after the budget was escrowed); the shared helpers are
defined once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import click

from marketplace.chain.views import Role
from marketplace.fl.attacks import BEHAVIOURS
from marketplace.fl.gossip_averaging import MIXING_RULES
from marketplace.fl.partition import PARTITIONERS
from marketplace.fl.privacy import DP_MODES
from marketplace.fl.strategy import STRATEGIES
from marketplace.valuation.config import METHODS
from node.cli.root import walk

CLI = Path(__file__).resolve().parents[1] / "node" / "cli"

EXPECTED = {
    ("register", "role"): [r.name.lower() for r in Role if r is not Role.NONE],
    ("task create", "--aggregator"): list(STRATEGIES),
    ("task create", "--valuation"): list(METHODS),
    ("task create", "--dp"): ["none", *DP_MODES],
    ("node run", "--partition"): list(PARTITIONERS),
    ("node run", "--behaviour"): list(BEHAVIOURS),
    ("node average", "--partition"): list(PARTITIONERS),
    ("node average", "--mixing"): list(MIXING_RULES),
    ("data unlearn", "--partition"): list(PARTITIONERS),
}


def choices() -> Iterator[tuple[tuple[str, str], list]]:
    for path, cmd in walk():
        for param in cmd.params:
            if isinstance(param.type, click.Choice):
                yield (" ".join(path), param.opts[0]), list(param.type.choices)


def test_every_cli_choice_is_the_librarys_constant():
    # Every Choice in the command tree is listed here (a new one must say where its names
    # come from) and equals that constant.
    assert dict(choices()) == EXPECTED


def literal_choices(source: str) -> list[int]:
    """Lines of ``choice(...)``/``click.Choice(...)`` calls given only string literals."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        arg = node.args[0]
        if (
            name in ("choice", "Choice")
            and isinstance(arg, (ast.Tuple, ast.List))
            and all(isinstance(e, ast.Constant) for e in arg.elts)
        ):
            lines.append(node.lineno)
    return lines


def test_no_cli_choice_is_written_out_by_hand():
    # Prepare: the checker sees a hand-written list and accepts one built from a constant
    assert literal_choices('type=choice(("none", "dpsgd"))') == [1]
    assert literal_choices('type=choice(("none", *DP_MODES))') == []
    # Execute / Assert
    found = {
        str(path.relative_to(CLI.parents[1])): lines
        for path in sorted(CLI.glob("*.py"))
        if (lines := literal_choices(path.read_text()))
    }
    assert found == {}


def test_the_shared_helpers_are_defined_once_in_output():
    """``pass_ctx`` and the ``--json`` flag live in node/cli/output.py only (issue 11: they
    existed twice, and later groups copied them again)."""
    found = [
        f"{path.name}: {needle}"
        for path in sorted(CLI.glob("*.py"))
        if path.name != "output.py"
        for needle in ("make_pass_decorator", '"--json"')
        if needle in path.read_text()
    ]
    assert found == []
