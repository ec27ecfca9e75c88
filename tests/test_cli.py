"""The first CLI commands, end to end on a real Anvil: deploy, accounts, register, stake, unstake,
withdraw, status — and the errors a user meets, each one line with the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from marketplace import toolchain
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, start_anvil
from node.cli.root import cli

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def chain(module_chain):
    """A devnet of this module's own, so time travel and deployments stay local to it."""
    return module_chain


@pytest.fixture(scope="module")
def env(chain, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    pw = home / "password.txt"
    pw.write_text(PASSWORD + "\n")
    return {
        "FEDMARKET_HOME": str(home),
        "FEDMARKET_CHAIN_RPC": chain.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(home / "deployments"),
        "FEDMARKET_PASSWORD_FILE": str(pw),
    }


def run(env, *args: str, ok: bool = True) -> dict | str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output
    assert result.exit_code == 1, result.output
    return result.output


@pytest.fixture(scope="module")
def deployed(env):
    return run(env, "--dev-account", "0", "deploy", "--unbonding-delay", "3600", "--json")


@pytest.fixture(scope="module")
def trainer(env, deployed, chain):
    """A keystore account, funded with devnet ETH and tokens."""
    acct = run(env, "account", "new", "--json")
    out = run(env, "--dev-account", "0", "faucet", "1000", "--to", acct["address"], "--json")
    assert out["eth"] == str(10**18)  # a fresh account gets gas money too
    return acct


def test_deploy_writes_a_deployments_file_cast_can_use(env, deployed, chain):
    path = Path(deployed["file"])
    data = json.loads(path.read_text())
    assert path.name == "31337.json"
    assert {"RewardToken", "ParticipantRegistry", "TaskMarket", "ModelVersions"} <= set(
        data["contracts"]
    )
    registry = data["contracts"]["ParticipantRegistry"]["address"]
    out = subprocess.run(
        [str(toolchain.cast_path()), "call", registry, "unbondingDelay()(uint64)",
         "--rpc-url", chain.rpc_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "3600"


def test_account_new_and_list(env, trainer):
    listed = run(env, "account", "list", "--json")
    assert [a["address"] for a in listed["accounts"]] == [trainer["address"]]
    assert len(bytes.fromhex(trainer["x25519_public"][2:])) == 32


def test_register_stake_unstake_withdraw_status(env, trainer, chain):
    reg = run(env, "register", "trainer", "--stake", "100", "--json")
    assert reg["role"] == "trainer" and reg["stake"] == str(100 * 10**18)
    run(env, "stake", "50", "--json")
    st = run(env, "status", "--json")
    assert st["role"] == "trainer"
    assert st["stake"] == str(150 * 10**18)
    assert st["encryption_key"] == trainer["x25519_public"]
    assert st["reputation_ppm"] == 500_000

    un = run(env, "unstake", "30", "--json")
    assert un["unbonding"] == str(30 * 10**18)
    shown = run(env, "status")  # the release time for people: a date and "in …"
    assert "UTC (in " in shown and str(un["release_at"]) not in shown
    early = run(env, "withdraw", ok=False)
    assert "ParticipantRegistryUnbondingNotReleased" in early
    assert early.count("\n") == 1

    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    w3.provider.make_request("evm_increaseTime", [3601])
    w3.provider.make_request("evm_mine", [])
    out = run(env, "withdraw", "--json")
    assert out["withdrawn"] == str(30 * 10**18)
    assert run(env, "status", "--json")["tokens"] == str((1000 - 150 + 30) * 10**18)


def test_register_twice_is_refused_before_any_transaction(env, deployed, chain):
    from web3 import Web3

    # Prepare: an account of its own, registered once (no earlier test needed)
    run(env, "--dev-account", "7", "register", "oracle")
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    address = w3.eth.account.from_key(DEV_PRIVATE_KEYS[7]).address
    nonce = w3.eth.get_transaction_count(address)
    # Execute
    out = run(env, "--dev-account", "7", "register", "oracle", ok=False)
    # Assert
    assert "already registered as oracle" in out and "fedmarket stake" in out
    assert w3.eth.get_transaction_count(address) == nonce  # no approve was sent


def test_wrong_password_is_one_line(env, trainer, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("not it")
    out = run({**env, "FEDMARKET_PASSWORD_FILE": str(bad)}, "status", ok=False)
    assert "wrong password" in out.lower()
    assert out.count("\n") == 1
    assert "Traceback" not in out


def test_insufficient_balance_says_how_to_get_tokens(env, trainer):
    out = run(env, "stake", "1000000", ok=False)
    assert "insufficient token balance" in out and "faucet" in out


def test_unreachable_rpc_is_one_line(env):
    out = run(
        {**env, "FEDMARKET_CHAIN_RPC": "http://127.0.0.1:1"}, "status", "0x" + "11" * 20, ok=False
    )
    assert "cannot reach the chain RPC at http://127.0.0.1:1" in out
    assert out.count("\n") == 1


def test_missing_deployment_says_to_deploy(env, tmp_path):
    out = run({**env, "FEDMARKET_DEPLOYMENTS": str(tmp_path)}, "status", "0x" + "11" * 20, ok=False)
    assert "fedmarket deploy" in out


@pytest.mark.anvil
def test_dev_account_refused_off_devnet_chain_ids(tmp_path):
    """Anvil on purpose, under any FEDMARKET_TEST_CHAIN: it is the devnet whose chain id can be
    set (the Hardhat node's is fixed to 31337 by hardhat.config.js)."""
    node = start_anvil(chain_id=10)
    try:
        out = CliRunner().invoke(
            cli, ["--chain-rpc", node.rpc_url, "--dev-account", "0", "deploy"],
            env={"FEDMARKET_HOME": str(tmp_path)},
        )  # fmt: skip
        assert out.exit_code == 1
        assert "refused on chain 10" in out.output
    finally:
        node.stop()


def test_bad_amount_is_rejected_before_any_transaction(env):
    out = run(env, "--dev-account", "1", "stake", "1.5.5", ok=False)
    assert "invalid amount" in out


def test_the_real_console_script_runs_as_a_subprocess(env):
    out = subprocess.run(
        [sys.executable, "-m", "node", "--help"], capture_output=True, text=True, check=True
    )
    assert "fedmarket" in out.stdout.lower()
    bad = subprocess.run(
        [sys.executable, "-m", "node", "--chain-rpc", "http://127.0.0.1:1", "status",
         "0x" + "11" * 20],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: cannot reach the chain RPC")
    assert "Traceback" not in bad.stderr
