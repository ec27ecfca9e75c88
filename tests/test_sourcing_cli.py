"""`task request`, `offer submit` and `offer reveal` end to end on a real Anvil (embedded store):
the offer bond posted and returned, an unregistered account's offer refused in words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from web3 import Web3

from marketplace.fl import load_dataset, split_dataset
from marketplace.protocol.identity import Identity
from node.cli import cli


@pytest.fixture(scope="module")
def chain(module_chain):
    return module_chain  # the module's own devnet (FEDMARKET_TEST_CHAIN)


@pytest.fixture(scope="module")
def env(chain, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {
        "FEDMARKET_HOME": str(home),
        "FEDMARKET_CHAIN_RPC": chain.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(home / "deployments"),
    }


def reward_token(env, w3: Web3):
    """The deployment's token (the request's: `task request` escrows in it), from the
    deployments file `deploy` wrote."""
    (path,) = Path(env["FEDMARKET_DEPLOYMENTS"]).glob("*.json")
    rec = json.loads(path.read_text())["contracts"]["RewardToken"]
    return w3.eth.contract(address=rec["address"], abi=rec["abi"])


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
    out = run(env, "--dev-account", "1", "task", "request", task_id, "--budget", "150", *oracles,
              "--window", "120", ok=False)  # fmt: skip
    assert "too short" in out and "--window 300" in out  # the committee could not fetch 64 offers
    req = run(env, "--dev-account", "1", "task", "request", task_id, "--budget", "150", *oracles,
              "--window", "600", "--offer-bond", "2", "--json")  # fmt: skip
    assert req["budget"] == str(150 * 10**18) and req["offerBond"] == str(2 * 10**18)
    # the Sybil flood's first step: an account that is no trainer cannot offer (and pays no bond)
    out = run(env, "--dev-account", "8", "offer", "submit", "--task", task_id, "--data",
              str(data), "--ask", "1", ok=False)  # fmt: skip
    assert "DataSourcingNotTrainer" in out and "register trainer" in out
    # registered and staked, it may offer; it never reveals, so its bond goes to the requester
    run(env, "--dev-account", "0", "faucet", "500", "--to", Identity.dev(8).address)
    run(env, "--dev-account", "8", "register", "trainer", "--stake", "100")
    run(env, "--dev-account", "8", "offer", "submit", "--task", task_id, "--data", str(data),
        "--ask", "1")  # fmt: skip
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    token = reward_token(env, w3)
    before = token.functions.balanceOf(Identity.dev(2).address).call()
    sub = run(env, "--dev-account", "2", "offer", "submit", "--task", task_id, "--data", str(data),
              "--ask", "40", "--json")  # fmt: skip
    assert sub["requestId"] == req["requestId"] and sub["samples"] == 300
    assert sub["bond"] == str(2 * 10**18)
    assert token.functions.balanceOf(Identity.dev(2).address).call() == before - 2 * 10**18
    out = run(env, "--dev-account", "2", "offer", "reveal", "--task", task_id, ok=False)
    assert "DataSourcingWrongTime" in out and "Traceback" not in out
    for i in (5, 6):  # two of the three oracles accept their seats (the quorum is 2)
        run(env, "--dev-account", str(i), "sourcing", "accept", "--task", task_id)
    # two more owners: one clean, one with half its labels wrong and the highest ask
    rng = np.random.default_rng(0)
    for i, (rows, noisy) in {3: (slice(300, 600), False), 4: (slice(600, 900), True)}.items():
        y = train.y[rows].copy()
        if noisy:
            flip = rng.random(len(y)) < 0.5
            y[flip] = (y[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
        path = tmp_path / f"owner{i}.npz"
        np.savez(path, x=train.x[rows], y=y)
        run(env, "--dev-account", str(i), "offer", "submit", "--task", task_id, "--data",
            str(path), "--ask", "50" if not noisy else "60")  # fmt: skip

    def warp(seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])
        w3.provider.make_request("evm_mine", [])

    warp(601)
    rev = run(env, "--dev-account", "2", "offer", "reveal", "--task", task_id, "--json")
    assert rev == {"requestId": req["requestId"], "ask": str(40 * 10**18), "samples": 300,
                   "bondReturned": str(2 * 10**18)}  # fmt: skip
    assert token.functions.balanceOf(Identity.dev(2).address).call() == before
    for i in (3, 4):
        run(env, "--dev-account", str(i), "offer", "reveal", "--task", task_id)
    warp(600)
    requester = Identity.dev(1).address
    before_forfeit = token.functions.balanceOf(requester).call()
    out = run(env, "--dev-account", "1", "sourcing", "refund", "--task", task_id, "--json")
    assert out["bondsForfeited"] == str(2 * 10**18)  # dev 8's, the only offer not revealed
    assert token.functions.balanceOf(requester).call() == before_forfeit + 2 * 10**18
    reports = [
        run(env, "--dev-account", str(i), "sourcing", "select", "--task", task_id, "--json")
        for i in (5, 6)
    ]
    assert reports[0]["offers"] == reports[1]["offers"]  # both oracles agree to the bit
    won = {o["owner"] for o in reports[0]["offers"] if o["won"]}
    assert won == {Identity.dev(2).address, Identity.dev(3).address}
    warp(600)
    for i in (5, 6):
        run(env, "--dev-account", str(i), "sourcing", "reveal", "--task", task_id)
    for i in (2, 3):
        run(env, "--dev-account", str(i), "sourcing", "register", "--task", task_id)
    out = run(env, "--dev-account", "4", "sourcing", "register", "--task", task_id, ok=False)
    assert "not a winner" in out
    shown = run(env, "sourcing", "show", "--task", task_id, "--json")
    total = int(shown["selection"]["total"])
    assert len(shown["offers"]) == 3 and 90 * 10**18 <= total <= 150 * 10**18  # thresholds >= asks
    assert shown["offerBond"] == str(2 * 10**18) and shown["bondsHeld"] == "0"  # all revealed
    # `task show` carries the same section: every offer with its value, and the selection
    task_shown = run(env, "task", "show", task_id, "--json")
    assert task_shown["sourcing"] == shown
    by_owner = {o["owner"]: o for o in shown["offers"]}
    assert {by_owner[Identity.dev(i).address]["status"] for i in (2, 3)} == {"won"}
    assert by_owner[Identity.dev(4).address]["status"] == "lost"
    assert all("value_ppm" in o and o["samples"] == 300 for o in shown["offers"])
    text = run(env, "task", "show", task_id)
    assert "Data request" in text and "not selected" in text and "won, paid" in text
    run(env, "--dev-account", "1", "sourcing", "refund", "--task", task_id)
