"""The README tells the truth: its commands exist and have help, its `cast` lines work on the
devnet, CI runs its test command, and its layout and environment variables are the code's."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from marketplace.chain.devnet import start_devnet
from node.cli.root import cli, command_at, walk

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


COMMANDS = [path for path, cmd in walk() if not isinstance(cmd, click.Group)]


def test_the_cli_has_the_commands_the_issues_ask_for():
    names = {" ".join(c) for c in COMMANDS}
    for expected in ("demo", "deploy", "devnet up", "devnet down", "account new", "account import",
                     "account list", "register", "stake", "unstake", "withdraw", "status",
                     "task create", "task list", "task show", "task join", "task advance",
                     "task cancel", "node run", "oracle run", "rewards show",
                     "rewards claim"):  # fmt: skip
        assert expected in names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) > 3
    cmd = command_at(command)
    assert (cmd.help or "").strip(), f"{' '.join(command)} has no docstring"
    # "task create" may appear as `fedmarket task create` or in a `task join ID` / `task …` row
    assert re.search(r"fedmarket[^`\n]*\b" + r"\s+".join(command) + r"\b", README) or re.search(
        r"`" + r"\s+".join(command) + r"\b", README
    ), f"`fedmarket {' '.join(command)}` is not in the README"


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].startswith("scripts/bootstrap && .venv/bin/fedmarket demo")
    assert first_block[1].startswith("scripts/test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in [line.strip() for line in ci.splitlines()]


def readme_block(after: str) -> str:
    """The first ```bash block after the line or heading ``after``."""
    return README.split(after, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]


def readme_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment the README's lines run in: this checkout's code, a private home and
    deployments folder, and a free port for the devnet (through FEDMARKET_CHAIN_RPC, which
    `devnet up` follows). The lines themselves are run exactly as written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")}
    env.update(
        PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="200",
        FEDMARKET_HOME=str(tmp_path / "home"),
        FEDMARKET_DEPLOYMENTS=str(tmp_path / "deployments"), **extra,
    )  # fmt: skip
    return env


@pytest.mark.anvil
@pytest.mark.kubo
@pytest.mark.slow
@pytest.mark.timeout(1800)  # every line is a fresh CLI process; the task itself waits out 60 s
def test_the_readme_devnet_walk_through_runs_to_claims_unattended(tmp_path, kubo):
    from marketplace.chain.backend import connect
    from marketplace.chain.clients import Marketplace, Phase
    from marketplace.chain.deploy import load_deployment
    from marketplace.chain.devnet import free_port

    script = readme_block("A task on a local devnet, start to claims")
    rpc = f"http://127.0.0.1:{free_port()}"
    env = readme_env(tmp_path, FEDMARKET_CHAIN_RPC=rpc, FEDMARKET_IPFS_API=kubo.api_multiaddr)
    body, last = script.rstrip().rsplit("\n", 1)
    assert last.strip() == ".venv/bin/fedmarket devnet down"
    try:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # Every node exited by itself; the table was printed; the chain says every trainer
        # claimed (the demo's honest trainers on digits: all paid) and the task is settled.
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        w3 = connect(rpc)
        market = Marketplace(w3, load_deployment(tmp_path / "deployments", w3.eth.chain_id, w3=w3))
        info = market.task(1)
        assert info.phase_enum in (Phase.FINALIZED, Phase.CLOSED)
        claimed = market.events(market.market, "Claimed", filters={"taskId": 1})
        assert len(claimed) == 3, proc.stdout[-3000:]
        assert sum(int(e["args"]["amount"]) for e in claimed) == 300 * 10**18
    finally:
        down = subprocess.run(
            ["bash", "-c", last], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stderr


def test_the_readme_cast_lines_run_against_the_devnet(chain_kind, tmp_path):
    """The section's lines as written (PATH for cast and the faucet line included), after a
    deploy, from the repository root."""
    script = readme_block("## Calling the contracts from any wallet")
    node = start_devnet(chain_kind)
    try:
        env = readme_env(tmp_path, FEDMARKET_CHAIN_RPC=node.rpc_url, RPC=node.rpc_url)
        deployed = subprocess.run(
            [".venv/bin/fedmarket", "--dev-account", "0", "deploy"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        env["PATH"] = os.environ["PATH"]  # no cast on it: the README's own line adds it
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split()
        assert "500000000000000000000" in lines  # balanceOf before staking
        assert "100000000000000000000" in lines  # stakeOf after register
        assert "500000" in lines  # reputationOf: a new participant starts at 0.5
    finally:
        node.stop()


def layout_block(text: str, heading: str) -> str:
    """The first fenced block after ``heading``: a layout tree."""
    return text.split(heading, 1)[1].split("```\n", 1)[1].split("```", 1)[0]


def test_both_layouts_name_every_package_and_design_every_module():
    design = (ROOT / "docs" / "design.md").read_text()
    trees = {
        "README.md": layout_block(README, "## Layout"),
        "docs/design.md": layout_block(design, "## Overview and layout"),
    }
    packages = sorted(
        f"{p.parent.name}/{p.name}/"
        for top in ("marketplace", "node")
        for p in (ROOT / top).iterdir()
        if (p / "__init__.py").exists()
    )
    missing = [
        f"{doc}: {pkg}"
        for doc, tree in trees.items()
        for pkg in packages
        if not re.search(rf"(^|\s){re.escape(pkg.split('/')[1])}/(\s|$)", tree, re.M)
    ]
    modules = sorted(p.name for p in (ROOT / "marketplace").glob("*.py") if p.name != "__init__.py")
    missing += [
        f"docs/design.md: marketplace/{m}"
        for m in modules
        if m not in trees["docs/design.md"].split()
    ]
    assert missing == []


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    read = {
        name
        for top in ("marketplace", "node", "scripts", "tests")
        for path in (ROOT / top).rglob("*")
        if path.is_file() and path.suffix in ("", ".py") and "__pycache__" not in path.parts
        for name in re.findall(r"FEDMARKET_[A-Z_]+[A-Z]", path.read_text(errors="ignore"))
    }
    assert "FEDMARKET_CHAIN_RPC" in read and "FEDMARKET_TOOLS" in read  # the scan sees them
    assert sorted(name for name in read if name not in README) == []
