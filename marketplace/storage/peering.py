"""Keeping a task's Kubo daemons connected (Kubo's *peering*).

A plain ``swarm connect`` is forgotten once the other daemon goes away: after a restart on the same
ports neither side dials again, updates stop flowing, and peers on each side see the other's
updates as missing. Kubo's peering list fixes that: a peer on it is kept connected and redialled
with backoff whenever the connection drops.

:func:`add_peering` puts one peer on a daemon's (runtime) peering list; :class:`PeerKeeper` is a
small background thread a node runs beside its daemon that adds every peer it is connected to,
so the connections the task made (by config, bootstrap or pubsub discovery) survive restarts.
"""

from __future__ import annotations

import logging
import threading

import requests

from marketplace.errors import StoreUnreachableError
from marketplace.storage.kubo_rpc import normalize_api

log = logging.getLogger(__name__)

KEEP_EVERY_SECONDS = 15.0


def _post(api: str, path: str, params: dict[str, str] | None, timeout: float) -> requests.Response:
    _, base = normalize_api(api)
    try:
        return requests.post(f"{base}/api/v0/{path}", params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise StoreUnreachableError(
            f"IPFS daemon at {api} did not answer {path} ({type(exc).__name__}): is it running?"
        ) from None


def add_peering(api: str, peer_multiaddr: str, *, timeout: float = 10.0) -> None:
    """Keep the daemon at ``api`` connected to ``peer_multiaddr`` (``…/p2p/<peer id>``)."""
    resp = _post(api, "swarm/peering/add", {"arg": peer_multiaddr}, timeout)
    if resp.status_code != 200:
        log.warning("peering add %s on %s refused: %s", peer_multiaddr, api, resp.text.strip())


def connected_peers(api: str, *, timeout: float = 10.0) -> list[str]:
    """The daemon's connected peers as ``<addr>/p2p/<id>`` multiaddrs."""
    resp = _post(api, "swarm/peers", None, timeout)
    if resp.status_code != 200:
        return []
    peers = resp.json().get("Peers") or []
    return [f"{p['Addr']}/p2p/{p['Peer']}" for p in peers if p.get("Addr") and p.get("Peer")]


def peering_ids(api: str, *, timeout: float = 10.0) -> set[str]:
    """Peer ids on the daemon's peering list."""
    resp = _post(api, "swarm/peering/ls", None, timeout)
    if resp.status_code != 200:
        return set()
    return {str(p.get("ID")) for p in resp.json().get("Peers") or []}


class PeerKeeper:
    """Every ``every`` seconds, put each connected peer on the daemon's peering list."""

    def __init__(self, api: str, *, every: float = KEEP_EVERY_SECONDS) -> None:
        self.api = api
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubo-peer-keeper", daemon=True)
        self.kept: set[str] = set()

    def start(self) -> PeerKeeper:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def keep_once(self) -> int:
        """Add the currently connected peers not yet on the peering list; how many were added."""
        known = peering_ids(self.api)
        added = 0
        for addr in connected_peers(self.api):
            peer_id = addr.rsplit("/p2p/", 1)[1]
            if peer_id in known:  # (a restarted daemon forgets its list: re-added then)
                continue
            add_peering(self.api, addr)
            self.kept.add(peer_id)
            added += 1
        return added

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.keep_once()
            except StoreUnreachableError as exc:  # the daemon restarts: try again later
                log.warning("keeping Kubo peers connected: %s", exc)
            except (ValueError, KeyError) as exc:
                log.warning("keeping Kubo peers connected: unexpected answer (%s)", exc)
            self._stop.wait(self.every)
