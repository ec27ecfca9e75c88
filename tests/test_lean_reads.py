"""``Marketplace`` reads views and logs over JSON-RPC without web3's per-read plumbing
(``marketplace.chain.lean``); every answer must equal web3's own, on a real Anvil.

One task is run through two rounds (direct commits, then a batch that posts a model, then a
model posted twice with different digests), so the views hold non-zero values and the logs
cover strings, arrays, bytes32, indexed and data addresses. Each read is done both ways: the
lean reader directly (it must answer, not hand over to web3) and web3's ``fn.call`` or
``get_logs``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from marketkit import Member, market_with
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from marketplace.chain.backend import connect
from marketplace.chain.batch_client import BatchCommits
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.devnet import DevnetProcess, dev_private_keys, free_port
from marketplace.chain.lean import MISSING
from marketplace.chain.tx import call
from marketplace.chain.views import TaskParams
from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import RpcUnreachableError, TransactionRevertedError
from marketplace.protocol.round_closer import close_round
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore

TOKEN = 10**18
WINDOW = 600
KEYS = [Account.from_key(k) for k in dev_private_keys(5)]
DEPLOYER, REQUESTER, ORACLE, T0, T1 = KEYS


@dataclass(frozen=True)
class World:
    market: Marketplace
    task_id: int


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _leaf(market: Marketplace, who: LocalAccount, task_id: int, round_: int) -> UpdateLeaf:
    payload = f"update {task_id} {round_} {who.address}"
    return sign_update_leaf(
        who, chain_id=market.deployment.chain_id, task_id=task_id, round=round_,
        cid=raw_cid(payload.encode()), digest=_digest(payload), num_samples=100 + round_,
        market_address=market.market.address,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(module_chain: DevnetProcess, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A two-round task on the module's own Anvil, run to its committing phase."""
    members = [
        Member.dev(1, REQUESTER, Role.REQUESTER, tokens=10_000 * TOKEN),
        Member.dev(2, ORACLE, Role.ORACLE, stake=100 * TOKEN, tokens=200 * TOKEN),
        Member.dev(3, T0, Role.TRAINER, stake=100 * TOKEN, tokens=200 * TOKEN),
        Member.dev(4, T1, Role.TRAINER, stake=100 * TOKEN, tokens=200 * TOKEN),
    ]
    market = market_with(connect(module_chain.rpc_url), DEPLOYER, members)
    params = TaskParams(
        budget=900 * TOKEN, model_spec_cid="bafy-spec", initial_model_cid=raw_cid(b"model 1"),
        initial_model_digest=_digest("model 1"), config_cid="bafy-config",
        validation_commitment=_digest("validation"), rounds=2, min_trainers=2, max_trainers=2,
        min_stake=10 * TOKEN, join_deadline=market.now() + WINDOW, oracles=(ORACLE.address,),
        trainer_bond=TOKEN, oracle_slash=10 * TOKEN, round_duration=WINDOW,
        commit_duration=WINDOW, reveal_duration=WINDOW,
    )  # fmt: skip
    task_id = market.create_task(REQUESTER, params)
    market.accept_seat(ORACLE, task_id)
    for t in (T0, T1):
        market.join(t, task_id)
    if market.task(task_id).phase != Phase.TRAINING:
        market.advance(REQUESTER, task_id)
    for t in (T0, T1):  # round 1: direct commits
        leaf = _leaf(market, t, task_id, 1)
        market.commit_update(t, task_id, 1, leaf.cid, leaf.digest, leaf.num_samples)
    market.advance(REQUESTER, task_id)  # every trainer committed: round 2
    batches = BatchCommits(market)
    store = EmbeddedStore(tmp_path_factory.mktemp("store"))
    close_round(  # round 2: one batch, posting the model that starts it
        batches, T0, [_leaf(market, t, task_id, 2) for t in (T0, T1)],
        join_order=batches.join_order(task_id), task_id=task_id, round_=2, publish=store.put,
        model_digest=_digest("model 2"), model_cid=raw_cid(b"model 2"),
    )  # fmt: skip
    market.post_model(T1, task_id, 2, raw_cid(b"other"), _digest("other"))  # a mismatch
    market.post_model(T0, task_id, 3, raw_cid(b"model 3"), _digest("model 3"))
    assert market.task(task_id).phase == Phase.COMMITTING
    return World(market, task_id)


def shape(value: Any) -> Any:
    """``value`` with the type of every container and leaf spelled out, keys in order: web3's
    ``AttributeDict`` compares by hash, so with ``==`` alone a list equals a tuple, ``bytes``
    equals ``HexBytes`` and ``True`` equals ``1``."""
    if isinstance(value, Mapping):
        return type(value).__name__, [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return type(value).__name__, [shape(v) for v in value]
    return type(value).__name__, value


def lean_call(market: Marketplace, fn: ContractFunction, block: int | str = "latest") -> Any:
    key = (fn.address, fn.fn_name, repr(fn.args), repr(fn.kwargs))
    return market._lean.call(fn, key, block)


def library_views(market: Marketplace, task_id: int) -> list[ContractFunction]:
    """Every view the library reads through ``Marketplace.call`` (clients.py, the batch and
    versions clients, the CLI), with arguments that make them answer something."""
    m, r, tok = market.market.functions, market.registry.functions, market.token.functions
    return [
        m.task(task_id),
        m.isTrainer(task_id, T0.address),
        m.isTrainer(task_id, REQUESTER.address),
        m.update(task_id, 1, T0.address),
        m.modelDigest(task_id, 2),
        m.modelDigest(task_id, 3),
        m.oracles(task_id),
        m.isClaimed(task_id, 0),
        m.commitmentOf(task_id, ORACLE.address),
        m.revealedRootOf(task_id, ORACLE.address),
        m.isOracleSlashed(task_id, ORACLE.address),
        m.hasAccepted(task_id, ORACLE.address),
        m.fallbackOf(task_id, T0.address),  # two outputs: web3 returns a list
        m.seatAcceptanceDigest(task_id, ORACLE.address, 10**10),
        m.MAX_ROUNDS(),
        m.MAX_COMMITTEE(),
        r.participant(T0.address),
        r.participant(REQUESTER.address),
        r.encryptionKeyOf(ORACLE.address),
        tok.balanceOf(T0.address),
        tok.allowance(T0.address, market.market.address),
        tok.name(),
        tok.nonces(T0.address),
    ]


def no_argument_views(contract: Contract) -> list[ContractFunction]:
    """The contract's views that take no argument (constants, owner, ``eip712Domain``...)."""
    return [
        getattr(contract.functions, e["name"])()
        for e in contract.abi
        if e.get("type") == "function"
        and e.get("stateMutability") in ("view", "pure")
        and not e.get("inputs")
    ]


def test_each_library_view_equals_web3s_call(world: World) -> None:
    market = world.market
    views = library_views(market, world.task_id)
    for contract in (market.market, market.registry, market.token):
        views += no_argument_views(contract)
    for fn in views:
        # Execute: the lean reader directly, then through Marketplace.call
        lean = lean_call(market, fn)
        via_market = market.call(fn)
        # Assert: the same value and types as web3's own call (a list is not a tuple)
        expected = fn.call()
        assert lean is not MISSING, fn
        assert shape(lean) == shape(expected) and shape(via_market) == shape(expected), fn
    # The typed views built on them are unchanged
    assert market.task(world.task_id).current_round == 2
    assert market.oracles(world.task_id) == (ORACLE.address,)
    assert market.fallback_of(world.task_id, T0.address) == tuple(
        market.market.functions.fallbackOf(world.task_id, T0.address).call()
    )


def test_struct_and_array_outputs_keep_web3s_shapes(world: World) -> None:
    market = world.market
    # A struct: one tuple, checksummed addresses inside
    info = lean_call(market, market.market.functions.task(world.task_id))
    assert isinstance(info, tuple) and info[0] == REQUESTER.address
    # An address[]: a list of checksummed addresses
    assert lean_call(market, market.market.functions.oracles(world.task_id)) == [ORACLE.address]
    # Several outputs with a string and a uint256[] among them: a list, the array a list
    domain = lean_call(market, market.token.functions.eip712Domain())
    assert isinstance(domain, list) and isinstance(domain[-1], list)


def test_a_view_at_a_pinned_block_reads_that_block(world: World) -> None:
    # Prepare: a block, then a transaction that changes the view
    market = world.market
    fn = market.token.functions.balanceOf(T1.address)
    before = int(market.w3.eth.block_number)
    market.mint(DEPLOYER, T1.address, 7 * TOKEN)
    # Execute / Assert: the pinned read is web3's at that block, not the latest
    assert lean_call(market, fn, before) == fn.call(None, before)
    assert lean_call(market, fn, before) + 7 * TOKEN == fn.call()
    with market.at_head():
        assert market.call(fn) == fn.call()


def test_the_head_is_the_nodes_block_number_and_moves_with_it(world: World) -> None:
    market = world.market
    # Execute / Assert: the raw read equals web3's, and a new block shows at once
    assert market.head() == market.w3.eth.block_number
    market.mint(DEPLOYER, T1.address, TOKEN)
    assert market.head() == market.w3.eth.block_number
    with market.at_head() as block:
        assert block == market.w3.eth.block_number


def test_a_reverted_view_raises_the_same_decoded_error(world: World) -> None:
    market = world.market
    fn = market.market.functions.task(world.task_id + 100)  # no such task
    # Execute: the lean reader hands a revert over to web3
    assert lean_call(market, fn) is MISSING
    with pytest.raises(TransactionRevertedError) as lean:
        market.call(fn)
    with pytest.raises(TransactionRevertedError) as web3:
        call(fn, decoder=market.decoder)
    # Assert: today's error, decoded to the contract's custom error
    assert lean.value.error_name == web3.value.error_name
    assert lean.value.error_name and lean.value.error_name.startswith("TaskMarket")
    assert lean.value.error_args == web3.value.error_args
    assert str(lean.value) == str(web3.value)


def test_an_unreachable_rpc_raises_rpc_unreachable_naming_the_cause(
    module_chain: DevnetProcess,
    world: World,
) -> None:
    # Prepare: a client whose node went away (nothing listens on the port any more)
    market = Marketplace(connect(module_chain.rpc_url), world.market.deployment)
    provider: Any = market.w3.provider
    provider.endpoint_uri = f"http://127.0.0.1:{free_port()}"
    provider.exception_retry_configuration = None  # fail at once (web3 retries otherwise)
    # Execute / Assert: the view's name and the connection error are in the message
    with pytest.raises(RpcUnreachableError) as lean:
        market.task(world.task_id)
    with pytest.raises(RpcUnreachableError) as web3:
        call(market.market.functions.task(world.task_id), decoder=market.decoder)
    assert "lost the chain RPC calling task" in str(lean.value)
    assert "Connection refused" in str(lean.value) or "ConnectionError" in str(lean.value)
    assert str(lean.value).split(":")[0] == str(web3.value).split(":")[0]


def events_of(contract: Contract) -> list[dict[str, Any]]:
    return [e for e in contract.abi if e.get("type") == "event"]


FILTERS = ("taskId", "trainer", "account", "owner", "oracle", "poster", "to")


def test_each_event_equals_web3s_get_logs(world: World) -> None:
    market = world.market
    head = int(market.w3.eth.block_number)
    start = market.deployment.block
    values = {
        "taskId": world.task_id, "trainer": T0.address, "account": T1.address,
        "owner": T0.address, "oracle": ORACLE.address, "poster": T0.address, "to": T0.address,
    }  # fmt: skip
    seen: set[str] = set()
    for contract in (market.market, market.registry, market.token):
        for abi in events_of(contract):
            name = abi["name"]
            indexed = {i["name"] for i in abi["inputs"] if i["indexed"]}
            choices: list[dict[str, Any] | None] = [None]
            choices += [{k: values[k]} for k in FILTERS if k in indexed]
            for filters in choices:
                # Execute
                lean = market._lean.logs(contract, name, filters, start, head)
                # Assert: web3's logs, equal field by field (args, hashes, numbers, address)
                expected = getattr(contract.events, name).get_logs(
                    from_block=start, to_block=head, argument_filters=filters
                )
                assert lean is not MISSING, (name, filters)
                assert shape(lean) == shape(expected), (name, filters)
                if filters is None and expected:
                    seen.add(name)
    # The flow emitted the events peers read (strings, arrays, bytes32, indexed addresses)
    assert {
        "TaskCreated", "TrainerJoined", "UpdateCommitted", "RoundCommitted", "ModelPosted",
        "ModelMismatchReported", "PhaseAdvanced", "SeatAccepted", "Registered", "Transfer",
    } <= seen  # fmt: skip


def test_incremental_events_equal_web3s_whole_range_and_odd_filters_fall_back(
    world: World,
) -> None:
    market = world.market
    task_id = world.task_id

    def web3_logs(event: str, filters: dict[str, Any] | None) -> list[Any]:
        return list(
            getattr(market.market.events, event).get_logs(
                from_block=market.deployment.block, to_block="latest", argument_filters=filters
            )
        )

    # Execute: a first scan, then one that only reads the new blocks
    of_task = {"taskId": task_id}
    first = market.events(market.market, "ModelPosted", filters=of_task)
    market.post_model(T1, task_id, 3, raw_cid(b"model 3"), _digest("model 3"))  # same: no log
    market.post_model(T1, task_id, 2, raw_cid(b"again"), _digest("again"))  # another mismatch
    mismatches = market.events(market.market, "ModelMismatchReported", filters=of_task)
    # Assert
    assert shape(list(first)) == shape(web3_logs("ModelPosted", of_task))
    assert shape(list(mismatches)) == shape(web3_logs("ModelMismatchReported", of_task))
    assert len(first) == 2 and len(mismatches) == 2
    # A filter on a data argument is web3's to apply: handed over, and the result is web3's
    by_round = {"round": 2}
    assert market._lean.logs(market.market, "UpdateCommitted", by_round, 0, 1) is MISSING
    by_market = list(market.events(market.market, "UpdateCommitted", filters=by_round))
    assert shape(by_market) == shape(web3_logs("UpdateCommitted", by_round))
