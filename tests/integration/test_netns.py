"""Peers on separate network namespaces (``marketplace.netns``): real Kubo daemons, one per
namespace, connect across the emulated links (50 ms, 10 Mbit/s) and a pubsub message crosses;
every namespace, device and process is gone afterwards, also after a crashed run.

Runs as root (CI does); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from marketplace import netns
from marketplace.netns import LinkShape, Network, start_kubos, stop_kubos
from marketplace.storage.kubo_daemon import start_kubo
from marketplace.storage.pubsub import PubsubClient, PubsubMessage, multibase_decode

REASON = netns.unavailable_reason()
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
    pytest.mark.timeout(300),
]
TOPIC = "fedmarket-netns-test"


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links of this host whose name starts with ``prefix``."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    names += [str(link["ifname"]) for link in links]
    return [n for n in names if n.startswith(prefix)]


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """A queue fed with ``proc``'s stdout lines by a reader thread."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return out


def test_pubsub_crosses_namespaces_and_everything_is_removed(tmp_path: Path) -> None:
    # Prepare: two namespaces + the root namespace, a Kubo daemon in each, peered across.
    payload = b"update announcement across the emulated network"
    (tmp_path / "payload").write_bytes(payload)
    with Network(2, LinkShape(delay_ms=50, rate_mbit=10)) as net:
        prefix = net.prefix
        assert len(leftovers(prefix)) == 3  # two namespaces and the root's device
        ns0, ns1 = net.namespaces
        root = start_kubo(swarm_host=net.host_address)
        kubos = start_kubos(net.namespaces, tmp_path / "kubo", extra_peers=root.swarm_multiaddrs)
        processes = [root.process, *(k.process for k in kubos)]
        try:
            assert {a.split("/")[2] for a in root.swarm_multiaddrs} == {net.host_address}
            peers = kubos[0].ipfs("swarm", "peers").stdout
            assert kubos[1].swarm_multiaddr in peers  # namespace to namespace, directly
            assert root.peer_id in peers
            wiretap = PubsubClient(root.api_multiaddr).subscribe(TOPIC)
            got_root: queue.Queue[PubsubMessage] = queue.Queue()
            threading.Thread(target=lambda: [got_root.put(m) for m in wiretap], daemon=True).start()
            sub = subprocess.Popen(
                kubos[1].ipfs_argv("pubsub", "sub", "--enc=json", TOPIC),
                env=kubos[1].env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            got_ns1 = lines_of(sub)
            before = net.link_stats()

            # Execute: publish from namespace 0 until both subscribers have it (the gossipsub
            # mesh forms within a heartbeat or two).
            seen_ns1: bytes | None = None
            seen_root: bytes | None = None
            for _ in range(30):
                kubos[0].ipfs("pubsub", "pub", TOPIC, str(tmp_path / "payload"))
                try:
                    while seen_ns1 is None:
                        seen_ns1 = multibase_decode(json.loads(got_ns1.get(timeout=1.0))["data"])
                    while seen_root is None:
                        seen_root = got_root.get(timeout=1.0).data
                    break
                except queue.Empty:
                    continue
            after = net.link_stats()
            sub.terminate()
            sub.wait(timeout=10)
            wiretap.close()
        finally:
            stop_kubos(kubos)
            root.stop()

        # Assert: the message crossed, through the emulator (ns0 -> ns1 and ns0 -> root).
        assert seen_ns1 == payload
        assert seen_root == payload
        assert after[ns0.name]["sent_packets"] > before[ns0.name]["sent_packets"]
        assert after[ns1.name]["received_packets"] > before[ns1.name]["received_packets"]
        assert after["root"]["received_packets"] > before["root"]["received_packets"]
        assert all(row["dropped"] == 0 for row in after.values())
    assert leftovers(prefix) == []
    assert all(p is None or p.poll() is not None for p in processes)


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    # Prepare: a run owned by a pid that is gone, its namespace still holding a process.
    dead = subprocess.Popen(["true"])
    dead.wait()
    net = Network(1, LinkShape(delay_ms=0, rate_mbit=0), prefix=f"{netns.PREFIX}{dead.pid:x}")
    net.open()
    ns = net.namespaces[0]
    orphan = subprocess.Popen(ns.exec_argv(["sleep", "300"]))
    # The crash: the owner vanishes without closing anything (its link emulator sees the end of
    # its input and exits, taking the devices with it; the namespace and its process remain).
    assert net._emulator is not None and net._emulator.stdin is not None
    net._emulator.stdin.close()
    net._emulator.wait(timeout=10)
    assert ns.name in leftovers(net.prefix)

    # Execute
    removed = netns.remove_stale()

    # Assert
    assert ns.name in removed
    assert orphan.wait(timeout=10) != 0  # killed
    assert leftovers(net.prefix) == []
