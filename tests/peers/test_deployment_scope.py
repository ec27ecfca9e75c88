"""Local state belongs to one deployment: the issue's stale-journal bug, reproduced on real Anvil.

A devnet stopped, restarted on the same port and redeployed has the same chain id, the same
contract addresses and counts tasks from 1 again. The oracle of the old task 1 had journaled its
payout root; the new task 1's oracle, on the same home, must not commit that root — it scores the
new task afresh. A deployments file left over from the old chain is refused with a one-line error
naming the file and the fix.
"""

from __future__ import annotations

import pytest

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace, load_deployment, write_deployment
from marketplace.chain.devnet import free_port, start_devnet
from marketplace.errors import DeploymentNotFoundError
from marketplace.protocol.identity import Identity
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal
from node.peers.oracle import SCORE_STEP, OracleNode

from .test_protocol import TOKEN, drive, new_task, trainer_nodes

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]

STALE_ROOT = "ab" * 32


def _world(kind, rpc_port, kubo, tmp, splits):
    from marketplace.storage.kubo import KuboStore

    node = start_devnet(kind, port=rpc_port, log_path=tmp / f"{kind}-{rpc_port}-{id(tmp)}.log")
    w3 = connect(node.rpc_url)
    deployer = Identity.dev(0)
    dep = deploy_marketplace(w3, deployer.eth, unbonding_delay=60)
    market = Marketplace(w3, dep)
    requester = Identity.dev(1)
    trainers = [Identity.dev(i) for i in range(2, 6)]
    oracles = [Identity.dev(6)]
    market.mint(deployer.eth, requester.address, 10_000 * TOKEN)
    market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
    for p, role in [*((t, Role.TRAINER) for t in trainers), *((o, Role.ORACLE) for o in oracles)]:
        market.mint(deployer.eth, p.address, 1_000 * TOKEN)
        market.register(p.eth, role, p.x25519_public, 100 * TOKEN)
    world = {
        "market": market, "store": KuboStore(kubo.api_multiaddr), "requester": requester,
        "trainers": trainers, "oracles": oracles, "splits": splits, "tmp": tmp,
    }  # fmt: skip
    return node, world


def test_a_redeployed_devnet_task_of_the_same_id_is_scored_afresh_not_from_the_old_journal(
    kubo, chain_kind, tmp_path
):
    from marketplace.fl import load_dataset, split_dataset

    splits = split_dataset(load_dataset("digits"), seed=0)
    port = free_port()
    journal_path = tmp_path / "home" / "journal" / "oracle.sqlite"

    # The first devnet: task 1 exists; its oracle journaled a root (what it commits after scoring).
    node, world = _world(chain_kind, port, kubo, tmp_path, splits)
    try:
        old_market = world["market"].market.address
        old_tid = new_task(world, n_trainers=4)
        old = OracleNode(
            TaskSession.open(world["market"], world["store"], old_tid, world["oracles"][0]),
            Journal(journal_path),
        )
        old.journal.record_once(
            old_tid, 0, SCORE_STEP, {"root": STALE_ROOT, "report_cid": "bafyold", "salt": "00" * 32}
        )
        old_scope = old.session.scope
    finally:
        node.stop()

    # `devnet down` then `devnet up` on the same port: the old deployments file is now stale.
    node, world = _world(chain_kind, port, kubo, tmp_path, splits)
    try:
        assert world["market"].market.address == old_market  # same address: the collision
        tid = new_task(world, n_trainers=4)
        assert tid == old_tid
        oracle = OracleNode(
            TaskSession.open(world["market"], world["store"], tid, world["oracles"][0]),
            Journal(journal_path),
        )
        scope = oracle.session.scope
        assert scope is not None and old_scope is not None
        assert (scope.chain_id, scope.market, scope.task_id) == (
            old_scope.chain_id, old_scope.market, old_scope.task_id,
        )  # fmt: skip
        assert scope.key != old_scope.key
        assert oracle.journal.get(tid, 0, SCORE_STEP) is None  # the old root is not offered

        trainers = trainer_nodes(world, tid, n=4)
        nodes = [*trainers, oracle]
        info = drive(world, tid, nodes, until=lambda i: i.phase_enum >= Phase.REVEALING)
        assert info.phase_enum >= Phase.REVEALING
        recorded = oracle.journal.get(tid, 0, SCORE_STEP)
        assert recorded is not None and recorded["root"] != STALE_ROOT
        assert oracle.result is not None and recorded["root"] == oracle.result.root.hex()
    finally:
        node.stop()


def test_a_deployments_file_of_a_restarted_devnet_is_refused_naming_the_file_and_the_fix(
    chain_kind, tmp_path
):
    port = free_port()
    deployments = tmp_path / "deployments"
    with start_devnet(chain_kind, port=port, log_path=tmp_path / "a.log") as node:
        w3 = connect(node.rpc_url)
        write_deployment(deploy_marketplace(w3, Identity.dev(0).eth), deployments)
        assert load_deployment(deployments, w3.eth.chain_id, w3=w3).chain_id == w3.eth.chain_id
    with start_devnet(chain_kind, port=port, log_path=tmp_path / "b.log") as node:
        w3 = connect(node.rpc_url)
        with pytest.raises(DeploymentNotFoundError) as err:
            load_deployment(deployments, w3.eth.chain_id, w3=w3)
    message = str(err.value)
    assert "\n" not in message
    assert "stale deployments file" in message and str(deployments) in message
    assert "fedmarket deploy" in message


@pytest.mark.parametrize(
    "content",
    ['{"chainId": 31337, "contracts": []}', "[1, 2]", '{"chainId": 31337, "contracts": {}}',
     '{"chainId": 31337, "contracts": {"TaskMarket": {"address": "0x12", "abi": []}}}'],
)  # fmt: skip
def test_a_malformed_deployments_file_is_a_one_line_error(tmp_path, content):
    (tmp_path / "31337.json").write_text(content)
    with pytest.raises(DeploymentNotFoundError) as err:
        load_deployment(tmp_path, 31337)
    assert "\n" not in str(err.value) and "fedmarket deploy" in str(err.value)
