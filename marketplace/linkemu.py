"""A userspace link emulator: delay and rate-limit every IPv4 packet between TUN devices.

This kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` is not set), so
:class:`marketplace.netns.Network` joins its namespaces through this process instead of a bridge
with ``tc netem``: each namespace's ``eth0`` (and the root namespace's ``fmn…r``) is a TUN device
whose other end is held here. A packet read from machine ``a``'s device and addressed to
machine ``b`` goes through ``a``'s uplink (``rate`` Mbit/s, then ``delay/2``) and ``b``'s
downlink (``rate``, then ``delay/2``) before it is written to ``b``'s device: ``delay`` one way
between any two machines, a rate cap per machine and direction, FIFO queues of at most
:data:`MAX_QUEUE_SEC` (beyond that a packet is dropped, as netem's queue limit would).

Run as ``python -m marketplace.linkemu --delay-ms 50 --rate-mbit 10 NAME=IP …`` (root). It prints
``ready`` once every device exists; a line ``stats`` on stdin answers one JSON line of bytes and
packets per device; end of stdin (the parent exited) stops it, and the devices vanish with it.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_QUEUE_SEC = 1.0  # a link's backlog beyond which packets are dropped (1.25 MB at 10 Mbit/s)


@dataclass
class Port:
    """One machine's device: its fd, address and the state of its two queues."""

    name: str
    fd: int
    up_free: float = 0.0  # when the uplink finishes sending what it holds
    down_free: float = 0.0
    sent_bytes: int = 0  # by the machine (read from its device)
    sent_packets: int = 0
    received_bytes: int = 0  # to the machine (written to its device)
    received_packets: int = 0
    dropped: int = 0


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (IPv4 packets, no header) and return its non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Emulator:
    def __init__(self, ports: dict[bytes, Port], *, delay_sec: float, rate_bps: float):
        self.ports = ports
        self.by_fd = {p.fd: p for p in ports.values()}
        self.half = delay_sec / 2
        self.rate = rate_bps
        self.queue: list[tuple[float, int, int, bytes]] = []
        self.seq = 0

    def _serialize(self, free: float, start: float, size: int) -> float:
        return max(start, free) + (size * 8 / self.rate if self.rate else 0.0)

    def accept(self, src: Port, packet: bytes, now: float) -> None:
        src.sent_bytes += len(packet)
        src.sent_packets += 1
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return  # IPv4 only (the tun devices carry no IPv6 addresses)
        dst = self.ports.get(packet[16:20])
        if dst is None:
            src.dropped += 1
            return
        up_done = self._serialize(src.up_free, now, len(packet))
        arrive = up_done + self.half
        down_done = self._serialize(dst.down_free, arrive, len(packet))
        if up_done - now > MAX_QUEUE_SEC or down_done - arrive > MAX_QUEUE_SEC:
            src.dropped += 1
            return
        src.up_free, dst.down_free = up_done, down_done
        self.seq += 1
        heapq.heappush(self.queue, (down_done + self.half, self.seq, dst.fd, packet))

    def deliver(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(self.queue)
            port = self.by_fd[fd]
            try:
                os.write(fd, packet)
            except (BlockingIOError, OSError):
                port.dropped += 1
                continue
            port.received_bytes += len(packet)
            port.received_packets += 1

    def stats(self) -> dict[str, dict[str, int]]:
        keys = ("sent_bytes", "sent_packets", "received_bytes", "received_packets", "dropped")
        return {p.name: {k: getattr(p, k) for k in keys} for p in self.ports.values()}

    def run(self, control: int) -> None:
        poller = select.epoll()
        for fd in self.by_fd:
            poller.register(fd, select.EPOLLIN)
        poller.register(control, select.EPOLLIN)
        pending = b""
        while True:
            now = time.monotonic()
            timeout = max(0.0, self.queue[0][0] - now) if self.queue else 1.0
            for fd, _ in poller.poll(timeout):
                if fd == control:
                    chunk = os.read(control, 4096)
                    if not chunk:
                        return  # the parent is gone
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if line.strip() == b"stats":
                            sys.stdout.write(json.dumps(self.stats()) + "\n")
                            sys.stdout.flush()
                    continue
                src = self.by_fd[fd]
                now = time.monotonic()
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    except OSError:  # its namespace was deleted: the device is gone
                        poller.unregister(fd)
                        break
                    self.accept(src, packet, now)
            self.deliver(time.monotonic())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--rate-mbit", type=float, required=True)
    parser.add_argument("devices", nargs="+", help="NAME=IPV4 per machine")
    args = parser.parse_args()
    ports = {}
    for spec in args.devices:
        name, ip = spec.split("=")
        ports[socket.inet_aton(ip)] = Port(name, open_tun(name))
    emulator = Emulator(ports, delay_sec=args.delay_ms / 1000, rate_bps=args.rate_mbit * 1e6)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    emulator.run(sys.stdin.fileno())


if __name__ == "__main__":
    main()
