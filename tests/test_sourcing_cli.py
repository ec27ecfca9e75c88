"""`task request`, `offer submit` and `offer reveal` end to end on a real Anvil (embedded store)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from web3 import Web3

from marketplace.chain.devnet import start_anvil
from marketplace.fl import load_dataset, split_dataset
from marketplace.protocol.identity import Identity
from node.cli import cli


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    node = start_anvil(log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def env(chain, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {
        "FEDMARKET_HOME": str(home),
        "FEDMARKET_CHAIN_RPC": chain.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(home / "deployments"),
    }


def run(env, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output
    assert result.exit_code == 1, result.output
    return result.output


def test_request_offer_submit_and_reveal(env, chain, tmp_path) -> None:
    run(env, "--dev-account", "0", "deploy", "--json")
    for i in range(1, 8):
        run(env, "--dev-account", "0", "faucet", "500", "--to", Identity.dev(i).address)
    run(env, "--dev-account", "1", "register", "requester")
    for i in (2, 3, 4):
        run(env, "--dev-account", str(i), "register", "trainer", "--stake", "100")
    oracles = []
    for i in (5, 6, 7):
        run(env, "--dev-account", str(i), "register", "oracle", "--stake", "100")
        oracles += ["--oracle", Identity.dev(i).address]
    task = run(env, "--dev-account", "1", "task", "create", "--budget", "300", "--rounds", "1",
               "--min-trainers", "2", "--max-trainers", "2", *oracles, "--json")  # fmt: skip
    task_id = str(task["taskId"])
    # no request yet: a one-line error that says what to do
    data = tmp_path / "owner.npz"
    train = split_dataset(load_dataset("digits"), seed=0).train
    np.savez(data, x=train.x[:300], y=train.y[:300])
    out = run(env, "--dev-account", "2", "offer", "submit", "--task", task_id, "--data", str(data),
              "--ask", "40", ok=False)  # fmt: skip
    assert "has no data request" in out and "Traceback" not in out
    req = run(env, "--dev-account", "1", "task", "request", task_id, "--budget", "100", *oracles,
              "--window", "600", "--json")  # fmt: skip
    assert req["budget"] == str(100 * 10**18)
    sub = run(env, "--dev-account", "2", "offer", "submit", "--task", task_id, "--data", str(data),
              "--ask", "40", "--json")  # fmt: skip
    assert sub["requestId"] == req["requestId"] and sub["samples"] == 300
    out = run(env, "--dev-account", "2", "offer", "reveal", "--task", task_id, ok=False)
    assert "DataSourcingWrongTime" in out and "Traceback" not in out
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    w3.provider.make_request("evm_increaseTime", [601])
    w3.provider.make_request("evm_mine", [])
    rev = run(env, "--dev-account", "2", "offer", "reveal", "--task", task_id, "--json")
    assert rev == {"requestId": req["requestId"], "ask": str(40 * 10**18), "samples": 300}
