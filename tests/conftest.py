"""Shared fixtures: real services started for the test session on 127.0.0.1, stopped after.

Services are never mocked here: a missing binary is a setup failure (run scripts/bootstrap), not a
skip. ``FEDMARKET_TEST_CHAIN=hardhat`` runs the chain suites against ``npx hardhat node`` instead of
Anvil.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from marketplace.chain.backend import connect
from marketplace.chain.devnet import DevnetProcess, start_devnet
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon, connect_peers, start_kubo

CHAIN_KIND = os.environ.get("FEDMARKET_TEST_CHAIN", "anvil")
TESTS = Path(__file__).resolve().parent

# Which service a fixture brings up (fixtures that depend on these are found through the
# fixture closure, so only the roots are listed).
SERVICE_OF_FIXTURE = {
    "anvil": "anvil",
    "chain_kind": "anvil",  # asked for by tests that start a devnet of their own
    "module_chain": "anvil",
    "kubo": "kubo",
    "kubo_pair": "kubo",
    "kubo_line": "kubo",
    "fresh_kubo": "kubo",
}
SERVICE_OF_DIRECTORY = {"contracts": "anvil", "integration": "integration"}
SERVICES = ("anvil", "kubo", "integration")
# Per-test timeouts (pytest-timeout, fixture set-up included) by the heaviest marker; a test may
# set its own with @pytest.mark.timeout(N). Generous bounds that only catch a hang.
TIMEOUTS = {"integration": 1800, "anvil": 600, "kubo": 600, "unit": 300}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by what it needs, so ``-m unit`` is a fast loop with no services:
    ``anvil`` (a devnet: Anvil, or the Hardhat node), ``kubo``, ``integration``, else ``unit``.
    Also give each test a timeout for its kind, unless it sets its own."""
    for item in items:
        needs = {m.name for m in item.iter_markers() if m.name in SERVICES}
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in SERVICE_OF_FIXTURE:
                needs.add(SERVICE_OF_FIXTURE[fixture])
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "kubo" in callspec.params.values():
            needs.add("kubo")  # a parametrized fixture choosing the Kubo store
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in SERVICE_OF_DIRECTORY:
            needs.add(SERVICE_OF_DIRECTORY[parts[0]])
        kinds = sorted(needs) or ["unit"]
        for kind in kinds:
            item.add_marker(getattr(pytest.mark, kind))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(max(TIMEOUTS[k] for k in kinds)))


@pytest.fixture(scope="session")
def chain_kind() -> str:
    """``anvil``, or ``hardhat`` with FEDMARKET_TEST_CHAIN=hardhat."""
    return CHAIN_KIND


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    """The session's devnet node (Anvil, or the Hardhat node with FEDMARKET_TEST_CHAIN=hardhat)."""
    log_path = tmp_path_factory.mktemp("devnet") / f"{CHAIN_KIND}.log"
    node = start_devnet(CHAIN_KIND, log_path=log_path)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def module_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    """A devnet of the test module's own (same kind as :func:`anvil`), for suites whose time
    travel and deployments must not leak into others'."""
    node = start_devnet(CHAIN_KIND, log_path=tmp_path_factory.mktemp("devnet") / "node.log")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def w3(anvil: DevnetProcess) -> Web3:
    return connect(anvil.rpc_url)


@pytest.fixture(scope="session")
def kubo() -> Iterator[KuboDaemon]:
    """One Kubo daemon for the session (pubsub on, no peers)."""
    with start_kubo() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def kubo_pair() -> Iterator[tuple[KuboDaemon, KuboDaemon]]:
    """Two Kubo daemons connected to each other by ``swarm connect``."""
    with start_kubo() as a, start_kubo() as b:
        connect_peers(a, b)
        yield a, b


@pytest.fixture
def kubo_store(kubo: KuboDaemon) -> Iterator[KuboStore]:
    """A client of the session daemon."""
    store = KuboStore(kubo.api_multiaddr, timeout=30.0)
    yield store
    store.close()


@pytest.fixture
def chain_snapshot(w3: Web3) -> Iterator[None]:
    """Revert every chain change the test makes (``evm_snapshot`` / ``evm_revert``)."""
    snap = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield
    w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With FEDMARKET_REQUIRE_SERVICES=1 (scripts/test, CI) a skipped test fails the run: every
    real service is installed there, so a skip means broken setup, not an optional test."""
    if os.environ.get("FEDMARKET_REQUIRE_SERVICES") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        if reporter:
            reporter.write_line(
                f"FAILED: {len(skipped)} test(s) skipped while FEDMARKET_REQUIRE_SERVICES=1"
            )
        session.exitstatus = 1
