"""Fixtures of the contract suite: the marketplace deployed once per session on the real devnet
(Anvil, or ``npx hardhat node`` with ``FEDMARKET_TEST_CHAIN=hardhat``), funded actors, and an
``evm_snapshot``/``evm_revert`` around every test so tests are independent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chainkit import E18, Actors, Chain, Market
from eth_account import Account
from web3 import Web3

from marketplace.chain.compiler import compile_contracts
from marketplace.chain.devnet import DEV_PRIVATE_KEYS

UNBONDING_DELAY = 7 * 24 * 3600
STAKE = 100 * E18
MAX = 2**256 - 1


# --- every custom error asserted by a test that ran (not a grep of the sources) ----------------
_contract_items: set[str] = set()
_passed: set[str] = set()
_deselected = False


def _is_contract_test(nodeid: str) -> bool:
    return nodeid.replace("\\", "/").startswith("tests/contracts/")


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected
    _deselected = _deselected or any(_is_contract_test(i.nodeid) for i in items)


def pytest_collection_finish(session: pytest.Session) -> None:
    global _deselected
    _contract_items.update(i.nodeid for i in session.items if _is_contract_test(i.nodeid))
    # Only a run of every contract test file answers the coverage question (one file is partial).
    here = Path(__file__).resolve().parent
    files = {f"tests/contracts/{p.name}" for p in here.glob("test_*.py")}
    collected = {nodeid.split("::", 1)[0].replace("\\", "/") for nodeid in _contract_items}
    _deselected = _deselected or not files <= collected


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        _passed.add(report.nodeid)


def declared_errors() -> set[str]:
    """The custom errors the marketplace contracts declare (their own, by prefix)."""
    artifacts = compile_contracts()
    return {
        item["name"]
        for name in ("TaskMarket", "ParticipantRegistry")
        for item in artifacts[name].abi
        if item["type"] == "error" and item["name"].startswith(name)
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """When the whole contract suite ran and passed, each declared custom error must have been
    seen by ``expect_revert`` (a call that really reverted with it); otherwise the run fails."""
    if _deselected or not _contract_items or not _contract_items <= _passed:
        return  # a partial or failing run: the coverage question does not arise
    from chainkit import OBSERVED_REVERTS

    missing = sorted(declared_errors() - OBSERVED_REVERTS)
    if missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"FAILED: custom errors no test saw a call revert with: {missing}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def chain(w3: Web3) -> Chain:
    return Chain(w3, compile_contracts())


@pytest.fixture(scope="session")
def actors() -> Actors:
    keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
    return Actors(
        deployer=keys[0],
        arbiter=keys[1],
        requester=keys[2],
        oracles=keys[3:6],
        trainers=keys[6:14],
        outsiders=keys[14:20],
    )


@pytest.fixture(scope="session")
def mkt(chain: Chain, actors: Actors) -> Market:
    """Token, registry and market deployed; every actor funded and approved; oracles and
    trainers registered with ``STAKE`` each."""
    d = actors.deployer
    token = chain.deploy("RewardToken", d, "FedMarket Reward", "FMR", d.address)
    registry = chain.deploy("ParticipantRegistry", d, token.address, UNBONDING_DELAY, d.address)
    market = chain.deploy("TaskMarket", d, registry.address, actors.arbiter.address)
    chain.tx(registry.functions.setMarket(market.address, True), d)
    everyone = [
        actors.arbiter,
        actors.requester,
        *actors.oracles,
        *actors.trainers,
        *actors.outsiders,
    ]
    for who in everyone:
        chain.tx(token.functions.mint(who.address, 1_000_000 * E18), d)
        chain.tx(token.functions.approve(market.address, MAX), who)
        chain.tx(token.functions.approve(registry.address, MAX), who)
    for i, o in enumerate(actors.oracles):
        chain.tx(registry.functions.register(2, _key(f"oracle{i}"), STAKE), o)
    for i, t in enumerate(actors.trainers):
        chain.tx(registry.functions.register(1, _key(f"trainer{i}"), STAKE), t)
    return Market(chain, actors, token, registry, market)


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from the session's deployment and leaves no trace on the chain."""
    chain: Chain = request.getfixturevalue("chain")
    request.getfixturevalue("mkt")
    snap = chain.snapshot()
    yield
    chain.revert_to(snap)


def _key(label: str) -> bytes:
    return bytes(Web3.keccak(text=f"x25519 {label}"))
