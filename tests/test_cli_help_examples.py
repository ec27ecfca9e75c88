"""Every example a ``--help`` prints must work as printed (issue 10, F12).

Each ``\\b`` example block of every command is extracted from the help text. Every ``fedmarket``
invocation in it must parse (commands and options exist where they are written); the ``deploy``
command's examples are then run for real, in a shell, against the devnet.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from marketplace.chain.devnet import DevnetProcess
from node.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            yield from _commands(sub, (*path, name))


def _help(path: tuple[str, ...]) -> str:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd.help or ""


def _examples(text: str) -> list[str]:
    """The indented lines of each ``\\b`` block."""
    # A line ending in a backslash continues on the next, as in a shell.
    lines, out, inside = text.replace("\\\n", " ").splitlines(), [], False
    for line in lines:
        if line.strip() == "\b":
            inside = True
            continue
        if inside and not line.strip():
            inside = False
        elif inside and line.startswith("  ") and not line.strip().endswith(":"):
            out.append(line.strip())
    return out


def _invocations(example: str) -> list[list[str]]:
    """The ``fedmarket`` argument lists in one shell line (split at ``&&``, ``|`` and ``;``)."""
    out, current = [], []
    for token in [*shlex.split(example, posix=True), "&&"]:
        if token in ("&&", "|", ";", "||"):
            if current and current[0] == "fedmarket":
                out.append(current[1:])
            current = []
        else:
            current.append(token)
    return out


def _parses(args: list[str]) -> None:
    """Resolve ``args`` through the click tree without running anything."""
    ctx = cli.make_context("fedmarket", list(args), resilient_parsing=False)
    cmd: click.Command = cli
    rest = ctx.protected_args + ctx.args
    while isinstance(cmd, click.Group) and rest:
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name}"
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        cmd = sub
        rest = ctx.protected_args + ctx.args if isinstance(sub, click.Group) else []


EXAMPLES = sorted(
    {(" ".join(p), e) for p in _commands(cli) for e in _examples(_help(p)) if "fedmarket" in e}
)


@pytest.mark.parametrize(("command", "example"), EXAMPLES)
def test_every_fedmarket_example_in_the_help_parses(
    command: str, example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The files an example names (a model, a data set) stand in a folder of their own.
    monkeypatch.chdir(tmp_path)
    for token in shlex.split(example.replace("\\", " ")):
        if token.endswith((".safetensors", ".npz", ".json")) and "/" not in token:
            (tmp_path / token).write_bytes(b"")
    for args in _invocations(example.replace("$(", "'").replace(")", "'")):
        try:
            _parses(args)
        except click.UsageError as exc:
            pytest.fail(f"`{example}` (help of `{command or 'fedmarket'}`): {exc.format_message()}")


@pytest.mark.anvil
def test_deploy_help_examples_run_as_printed(anvil: DevnetProcess, tmp_path: Path) -> None:
    # Prepare: a shell where `fedmarket` is this worktree's CLI and `cast` the npm binary
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "fedmarket"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m node "$@"\n')
    shim.chmod(0o755)
    cast = REPO / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
    (bin_dir / "cast").symlink_to(cast)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "FEDMARKET_CHAIN_RPC": anvil.rpc_url,
        "ETH_RPC_URL": anvil.rpc_url,
        "FEDMARKET_HOME": str(tmp_path / "home"),
    }
    examples = _examples(_help(("deploy",)))
    assert any("taskCount()" in e for e in examples)
    # Execute / Assert
    outputs = []
    for example in examples:
        done = subprocess.run(
            ["bash", "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"`{example}` failed: {done.stderr[-2000:]}"
        outputs.append(done.stdout.strip())
    assert outputs[-1] == "0"  # a fresh market has no task
