"""``bench_round.py --netns``: the same task with every trainer on a machine of its own.

Each trainer runs in a network namespace of its own (``marketplace.netns``) with its own Kubo
daemon (API on the namespace's 127.0.0.1, swarm on its address 10.A.B.k, peered with every other
daemon); the links between machines add ``delay_ms`` one way and cap each machine's up- and
downlink at ``rate_mbit`` (a userspace link emulator: this kernel has no ``sch_netem``). The root
namespace is one more machine on the same terms: it holds Anvil (listening on 10.A.B.1, so every
trainer's chain RPC is one emulated hop away), the requester's Kubo daemon (which also carries the
gossip wiretap) and this script, which watches the chain locally.

:class:`NetnsLab` is opened once per invocation (before the devnet, whose Anvil must listen on
:attr:`NetnsLab.host_address`); :meth:`NetnsLab.run` starts the daemons for ``n`` trainers, lets
``bench_round.run_ours`` place trainer ``k`` in namespace ``k``, and returns the figures.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from round_timing import summarize_rounds

from marketplace.netns import LinkShape, NamespacedKubo, Network, start_kubos, stop_kubos
from marketplace.storage.kubo_daemon import KuboDaemon, start_kubo

# Where trainer k runs: the command prefix that puts it there and the IPFS API it uses.
Placement = Callable[[int], tuple[list[str], str]]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class NetnsLab:
    network: Network
    kubo: KuboDaemon  # the requester's daemon, in the root namespace
    tmp: Path

    @property
    def host_address(self) -> str:
        return self.network.host_address

    @classmethod
    def open(cls, stack: ExitStack, count: int, shape: LinkShape, tmp: Path) -> NetnsLab:
        """``count`` namespaces and the requester's daemon, removed when ``stack`` closes (also
        on SIGTERM, turned into KeyboardInterrupt so every ``finally`` runs)."""
        signal.signal(signal.SIGTERM, _interrupt)
        network = stack.enter_context(Network(count, shape))
        kubo = stack.enter_context(start_kubo(swarm_host=network.host_address))
        return cls(network, kubo, tmp)

    def setup(self) -> dict[str, Any]:
        shape = self.network.shape
        return {
            "delay_ms": shape.delay_ms,
            "rate_mbit": shape.rate_mbit,
            "setup": (
                "a network namespace and a Kubo daemon per trainer; one-way delay_ms between any "
                "two machines, rate_mbit per machine and direction (userspace link emulator over "
                "TUN devices: the kernel has no sch_netem); Anvil, the requester's Kubo daemon and "
                "the gossip wiretap in the root namespace, also one link away"
            ),
        }

    @contextmanager
    def placement(self, n: int) -> Iterator[Placement]:
        """Kubo daemons in namespaces 0..n-1, peered with each other and the requester's."""
        namespaces = self.network.namespaces[:n]
        kubos = start_kubos(
            namespaces, self.tmp / f"netns-kubo-{n}", extra_peers=self.kubo.swarm_multiaddrs
        )
        try:
            yield lambda k: (namespaces[k].exec_argv([]), NamespacedKubo.api_multiaddr)
        finally:
            stop_kubos(kubos)

    def run(
        self, n: int, rounds: int, run_ours: Callable[[Placement], dict[str, Any]], local_sec: float
    ) -> dict[str, Any]:
        """Run the task with ``n`` trainers in namespaces; ``local_sec`` is the same run's steady
        round without namespaces, for the comparison."""
        with self.placement(n) as place:
            before = self.network.link_stats()
            ours = run_ours(place)
            after = self.network.link_stats()
        timing = summarize_rounds(ours["round_durations"])
        trainers = [ns.name for ns in self.network.namespaces[:n]]

        def per_round(names: list[str], key: str) -> float:
            return sum(after[m][key] - before[m][key] for m in names) / rounds

        return {
            "round_durations": ours["round_durations"],
            "first_round_sec": timing["first_round_sec"],
            "sec_per_round": timing["steady_sec_per_round"],
            "mean_sec_per_round": timing["mean_sec_per_round"],
            "startup_sec": ours["startup_sec"],
            "local_sec_per_round": local_sec,
            "slowdown": timing["steady_sec_per_round"] / local_sec,
            "extra_sec_per_round": timing["steady_sec_per_round"] - local_sec,
            "gossip_messages": ours["gossip_messages"],
            "gossip_bytes": ours["gossip_bytes"],
            # Everything on the wire (pubsub, bitswap, chain RPC, TCP/IP headers) over the whole
            # run, start-up included, divided by the rounds.
            "wire_bytes_sent_by_trainers_per_round": per_round(trainers, "sent_bytes"),
            "wire_packets_sent_by_trainers_per_round": per_round(trainers, "sent_packets"),
            "wire_bytes_sent_by_root_per_round": per_round(["root"], "sent_bytes"),
            "wire_packets_dropped": sum(
                after[m]["dropped"] - before[m]["dropped"] for m in [*trainers, "root"]
            ),
            "gas_per_trainer_round": ours["gas_per_trainer_round"],
            "gas": ours["gas"],
            "restarts": ours["restarts"],
            "restart_errors": ours["restart_errors"],
        }
