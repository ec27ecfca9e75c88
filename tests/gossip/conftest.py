"""Gossip fixtures: three real Kubo daemons on 127.0.0.1 connected in a line, stopped after.

A missing Kubo binary is a setup error (run scripts/bootstrap), never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from marketplace.storage.kubo_daemon import KuboDaemon, connect_peers, start_kubo


def swarm_peers(daemon: KuboDaemon) -> set[str]:
    """Peer IDs ``daemon`` is connected to."""
    resp = requests.post(f"{daemon.api_url}/api/v0/swarm/peers", timeout=10)
    resp.raise_for_status()
    return {p["Peer"] for p in resp.json().get("Peers") or []}


@pytest.fixture(scope="session")
def kubo_line() -> Iterator[tuple[KuboDaemon, KuboDaemon, KuboDaemon]]:
    """Daemons A, B, C with A-B and B-C connected, A-C not: A reaches C only through B."""
    with start_kubo() as a, start_kubo() as b, start_kubo() as c:
        connect_peers(a, b)
        connect_peers(c, b)
        if c.peer_id in swarm_peers(a):
            pytest.fail("Kubo daemons A and C connected on their own: the line topology is broken")
        yield a, b, c
