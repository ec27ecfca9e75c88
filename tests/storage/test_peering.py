"""A restarted Kubo daemon is reconnected by its peers (peering), so content flows again."""

from __future__ import annotations

import time

import pytest

from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import connect_peers, start_kubo
from marketplace.storage.peering import PeerKeeper, connected_peers, peering_ids

pytestmark = [pytest.mark.kubo]


def _connected(api: str, peer_id: str) -> bool:
    return any(a.endswith(f"/p2p/{peer_id}") for a in connected_peers(api))


def _wait_connected(api: str, peer_id: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _connected(api, peer_id):
            return
        time.sleep(0.5)
    raise AssertionError(f"{api} did not reconnect to {peer_id} within {timeout:.0f}s")


def test_a_daemon_restarted_on_the_same_ports_is_reconnected_and_serves_again():
    with start_kubo() as a, start_kubo() as b:
        connect_peers(a, b)  # connects and puts b on a's peering list
        assert b.peer_id in peering_ids(a.api_multiaddr)
        api_before = b.api_multiaddr
        b.restart()
        assert b.api_multiaddr == api_before and b.running
        _wait_connected(a.api_multiaddr, b.peer_id)
        cid = KuboStore(b.api_multiaddr).put(b"after the restart")
        assert KuboStore(a.api_multiaddr).get(cid) == b"after the restart"


def test_the_peer_keeper_puts_connected_peers_on_the_peering_list():
    with start_kubo() as a, start_kubo() as b:
        connect_peers(b, a)  # only b knows a; a merely accepted the connection
        assert b.peer_id not in peering_ids(a.api_multiaddr)
        keeper = PeerKeeper(a.api_multiaddr)
        assert keeper.keep_once() >= 1
        assert b.peer_id in peering_ids(a.api_multiaddr)
