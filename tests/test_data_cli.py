"""`fedmarket data …` on a real Anvil: register a task's retention terms, withdraw consent, list
versions and withdrawals — and the one-line errors of a withdrawal that is not allowed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Role, TaskParams
from marketplace.chain.deploy import load_deployment
from marketplace.protocol.identity import Identity
from node.cli import cli

TOKEN = 10**18
REQUESTER, TRAINERS, ORACLES, OUTSIDER = 1, (2, 3), (6, 7, 8), 9


@pytest.fixture(scope="module")
def env(module_chain, tmp_path_factory):
    node = module_chain  # the module's own devnet (FEDMARKET_TEST_CHAIN)
    home = tmp_path_factory.mktemp("home")
    env = {
        "FEDMARKET_HOME": str(home),
        "FEDMARKET_CHAIN_RPC": node.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(home / "deployments"),
    }
    run(env, "--dev-account", "0", "deploy", "--json")
    w3 = connect(node.rpc_url)
    market = Marketplace(w3, load_deployment(home / "deployments", w3.eth.chain_id))
    deployer = Identity.dev(0)
    for i, role in [(REQUESTER, Role.REQUESTER), *((t, Role.TRAINER) for t in TRAINERS),
                    *((o, Role.ORACLE) for o in ORACLES)]:  # fmt: skip
        who = Identity.dev(i)
        market.mint(deployer.eth, who.address, 1_000 * TOKEN)
        market.register(who.eth, role, who.x25519_public, 0 if i == REQUESTER else 10 * TOKEN)
    now = int(w3.eth.get_block("latest")["timestamp"])
    task = market.create_task(Identity.dev(REQUESTER).eth, TaskParams(
        budget=10 * TOKEN, model_spec_cid="bafy-spec", initial_model_cid="bafy-init",
        initial_model_digest=b"\x01" * 32, config_cid="bafy-config",
        validation_commitment=b"\x02" * 32, rounds=1, min_trainers=2, max_trainers=2,
        min_stake=TOKEN, join_deadline=now + 3600,
        oracles=tuple(Identity.dev(o).address for o in ORACLES),
    ))  # fmt: skip
    for o in ORACLES:  # consent: the committee takes its seats
        market.accept_seat(Identity.dev(o).eth, task)
    for t in TRAINERS:
        market.join(Identity.dev(t).eth, task)
    env["TASK"] = str(task)
    yield env


def run(env, *args: str, ok: bool = True) -> dict | str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output
    assert result.exit_code == 1, result.output
    return result.output


def test_register_withdraw_and_list(env) -> None:
    task = env["TASK"]
    dev = lambda i: ("--dev-account", str(i))  # noqa: E731
    out = run(env, *dev(OUTSIDER), "data", "withdraw", "--task", task, ok=False)
    assert out.startswith("Error:") and "ModelVersionsUnknownTask" in out
    assert len(out.strip().splitlines()) == 1

    reg = run(env, *dev(REQUESTER), "data", "register", "--task", task, "--retention-days", "30",
              "--quorum", "2", "--window-hours", "24", "--deposit", "10", "--penalty", "5",
              "--json")  # fmt: skip
    first = run(env, *dev(TRAINERS[0]), "data", "withdraw", "--task", task, "--json")
    again = run(env, *dev(TRAINERS[0]), "data", "withdraw", "--task", task, ok=False)
    outsider = run(env, *dev(OUTSIDER), "data", "withdraw", "--task", task, ok=False)
    listed = run(env, "data", "versions", "--task", task, "--json")
    human = run(env, "data", "versions", "--task", task)

    assert reg["unlearnWindow"] == 24 * 3600 and reg["deposit"] == str(10 * TOKEN)
    assert first["withdrawal"] == 1 and first["trainer"] == Identity.dev(TRAINERS[0]).address
    assert "ModelVersionsAlreadyWithdrawn" in again
    assert "ModelVersionsNotTrainer" in outsider
    assert listed["retentionExpiry"] == reg["retentionExpiry"]
    assert listed["withdrawals"][0]["deadline"] == first["deadline"]
    assert listed["withdrawals"][0]["honoured"] is False
    assert listed["versions"] == []
    assert "withdrawal 1 by" in human
