"""Kubo daemon control: loopback-only private daemons, peering, clean stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from marketplace.errors import ToolchainError
from marketplace.storage.kubo_daemon import KuboDaemon, start_kubo
from marketplace.toolchain import KUBO_VERSION


def test_daemon_listens_on_loopback_only_with_a_private_config(kubo: KuboDaemon) -> None:
    # Prepare
    config = json.loads((kubo.repo_dir / "config").read_text())
    # Execute
    ident = requests.post(f"{kubo.api_url}/api/v0/id", timeout=10).json()
    # Assert
    assert kubo.api_multiaddr.startswith("/ip4/127.0.0.1/tcp/")
    assert kubo.swarm_multiaddrs
    assert all(a.startswith("/ip4/127.0.0.1/") for a in kubo.swarm_multiaddrs)
    assert all(a.startswith("/ip4/127.0.0.1/") for a in ident["Addresses"])
    assert ident["ID"] == kubo.peer_id
    assert config["Bootstrap"] == []
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Pubsub"]["Enabled"] is True
    assert config["Addresses"]["Gateway"].startswith("/ip4/127.0.0.1/")


def test_connected_pair_see_each_other_as_peers(kubo_pair: tuple[KuboDaemon, KuboDaemon]) -> None:
    # Prepare
    a, b = kubo_pair
    # Execute
    peers = requests.post(f"{a.api_url}/api/v0/swarm/peers", timeout=10).json()["Peers"]
    # Assert
    assert b.peer_id in {p["Peer"] for p in peers}


@pytest.mark.kubo
def test_stop_ends_the_process_and_removes_the_temporary_repo() -> None:
    # Prepare
    daemon = start_kubo(pubsub=False)
    repo = daemon.repo_dir
    # Execute
    daemon.stop()
    daemon.stop()  # idempotent
    # Assert
    assert not daemon.running
    assert not repo.exists()


def test_an_existing_repo_is_never_reused(kubo: KuboDaemon, tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ToolchainError, match="already holds a Kubo repository"):
        start_kubo(repo_dir=kubo.repo_dir)


@pytest.mark.kubo
def test_given_repo_dir_is_kept_after_stop(tmp_path: Path) -> None:
    # Prepare
    repo = tmp_path / "repo"
    # Execute
    with start_kubo(repo_dir=repo, offline=True) as daemon:
        version = requests.post(f"{daemon.api_url}/api/v0/version", timeout=10).json()
    # Assert
    assert version["Version"] == KUBO_VERSION.removeprefix("v")
    assert (repo / "config").exists()
