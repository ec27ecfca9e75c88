"""The dashboard on a task run by the real protocol: TrainerNode/OracleNode peers training with
PyTorch, encrypted updates and reports on Kubo, scoring by Shapley values, claims and a slash
(the protocol suite's helpers, tests/peers/test_protocol.py), checked in headless chromium
against the chain."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from test_dashboard_browser import cell, wait_for

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace
from marketplace.chain.devnet import DevnetProcess
from marketplace.fl import load_dataset, split_dataset
from marketplace.protocol.identity import Identity
from marketplace.storage.kubo import KuboStore
from node.dashboard.formatting import token
from node.dashboard.server import DashboardServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.peers.test_protocol import (
    TOKEN,
    commit_raw,
    drive,
    join_all,
    new_task,
    oracle_nodes,
    trainer_nodes,
)

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def proto(kubo, module_chain: DevnetProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The protocol suite's world: 4 trainers, 3 oracles, a requester, on the module's devnet."""
    with nullcontext(module_chain) as node:  # the module's devnet (FEDMARKET_TEST_CHAIN)
        w3 = connect(node.rpc_url)
        deployer = Identity.dev(0)
        market = Marketplace(w3, deploy_marketplace(w3, deployer.eth, unbonding_delay=60))
        requester = Identity.dev(1)
        trainers = [Identity.dev(i) for i in range(2, 6)]
        oracles = [Identity.dev(i) for i in range(6, 9)]
        market.mint(deployer.eth, requester.address, 10_000 * TOKEN)
        market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
        for p, role in [*((t, Role.TRAINER) for t in trainers),
                        *((o, Role.ORACLE) for o in oracles)]:  # fmt: skip
            market.mint(deployer.eth, p.address, 1_000 * TOKEN)
            market.register(p.eth, role, p.x25519_public, 100 * TOKEN)
        store = KuboStore(kubo.api_multiaddr)
        yield {
            "market": market, "store": store, "requester": requester, "trainers": trainers,
            "oracles": oracles, "splits": split_dataset(load_dataset("digits"), seed=0),
            "tmp": tmp_path_factory.mktemp("peers"),
        }  # fmt: skip
        store.close()


def test_a_protocol_task_on_screen_matches_the_chain(proto: Any, browser: Any, tmp_path: Path):
    market: Marketplace = proto["market"]
    task_id = new_task(proto, n_trainers=3)
    honest_a, honest_b, cheat = trainer_nodes(proto, task_id, n=3)
    join_all(proto, task_id, [honest_a, honest_b, cheat])
    commit_raw(proto, task_id, cheat.session.identity, b"\x00not an envelope" * 10)
    oracles = oracle_nodes(proto, task_id)
    peers = [honest_a, honest_b, *oracles]
    drive(proto, task_id, peers, until=lambda i: i.phase_enum == Phase.FINALIZED)
    # The honest trainers claim their leaves; the committee claims the cheat's (which slashes it).
    drive(proto, task_id, peers, until=lambda i: len(claimed_on_chain_market(market, task_id)) == 3)

    paid = claimed_on_chain_market(market, task_id)
    phase = market.task(task_id).phase_enum.name.lower()
    db = tmp_path / "index.sqlite"
    with DashboardServer(market.w3, market.deployment, db, store=proto["store"]) as server:
        browser.get(f"{server.url}/task/{task_id}")
        wait_for(
            "the page script", lambda: browser.execute_script("return document.body.dataset.ready")
        )
        assert browser.find_element(By.ID, "phase").text == phase
        for node in (honest_a, honest_b, cheat):
            assert cell(browser, "trainers", node.me, ".payout") == token(paid[node.me])
            assert cell(browser, "trainers", node.me, ".stake") == token(
                market.participant(node.me).stake
            )
            # Reports are sealed to the task's members: the dashboard (no key) cannot score.
            assert cell(browser, "trainers", node.me, ".score") == "sealed"
        assert paid[honest_a.me] > 0 and paid[cheat.me] == 0
        assert cell(browser, "trainers", cheat.me, ".flags") == "invalid update"
        assert cell(browser, "trainers", cheat.me, ".slashed") == token(10 * TOKEN)  # min stake
        assert 100 * TOKEN - market.participant(cheat.me).stake == 10 * TOKEN
        for o in proto["oracles"]:
            assert "encrypted" in cell(browser, "committee", o.address, ".report")
        note = browser.find_element(By.ID, "chart-note").text
        assert "sealed" in note


def claimed_on_chain_market(market: Marketplace, task_id: int) -> dict[str, int]:
    logs = market.market.events.Claimed().get_logs(
        from_block=market.deployment.block, argument_filters={"taskId": task_id}
    )
    return {str(e["args"]["account"]): int(e["args"]["amount"]) for e in logs}
