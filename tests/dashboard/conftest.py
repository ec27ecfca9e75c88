"""Fixtures of the dashboard suite: a real devnet (Anvil, or the Hardhat node) with the
marketplace, Kubo for reports, and headless Debian chromium driven by selenium (installed by
scripts/bootstrap)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario import World, deploy_world

from marketplace.chain.backend import connect
from marketplace.chain.devnet import start_devnet
from marketplace.storage.kubo import KuboStore

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)  # fmt: skip


@pytest.fixture(scope="module")
def world(kubo, chain_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The marketplace on a fresh devnet of this module (Anvil, or the Hardhat node with
    FEDMARKET_TEST_CHAIN=hardhat), with the session's Kubo as store."""
    log_path = tmp_path_factory.mktemp("devnet") / f"{chain_kind}.log"
    with start_devnet(chain_kind, log_path=log_path) as node:
        store = KuboStore(kubo.api_multiaddr, timeout=10.0)
        yield deploy_world(connect(node.rpc_url), store)
        store.close()


def new_db(tmp_path: Path, name: str = "index.sqlite") -> Path:
    return tmp_path / name


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless chromium with a fresh profile; skips (a failure under
    FEDMARKET_REQUIRE_SERVICES=1) when scripts/bootstrap has not installed it."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("chromium/chromium-driver not installed: run scripts/bootstrap")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fedmarket-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
