"""The link emulator's schedule (``marketplace.linkemu``): when a packet is due at the other
machine, given one-way delay and rate, computed from a given clock (no devices, no waiting)."""

from __future__ import annotations

import socket

import pytest

from marketplace.linkemu import MAX_QUEUE_SEC, Emulator, Port

A, B = socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.3")


def ipv4_to(dst: bytes, size: int) -> bytes:
    """A minimal IPv4 packet of ``size`` bytes addressed to ``dst``."""
    header = bytes([0x45]) + bytes(15) + dst
    return header + bytes(size - len(header))


def emulator(delay_sec: float = 0.05, rate_bps: float = 10e6) -> Emulator:
    ports = {A: Port("a", fd=10), B: Port("b", fd=11)}
    return Emulator(ports, delay_sec=delay_sec, rate_bps=rate_bps)


def test_a_packet_waits_the_delay_and_its_transmission_on_both_links() -> None:
    emu = emulator()
    emu.accept(emu.ports[A], ipv4_to(B, 1250), now=100.0)
    due, _, fd, _ = emu.queue[0]
    # 1250 B at 10 Mbit/s = 1 ms on the sender's uplink and 1 ms on the receiver's downlink.
    assert due == pytest.approx(100.0 + 0.001 + 0.025 + 0.001 + 0.025)
    assert fd == 11


def test_back_to_back_packets_queue_behind_each_other() -> None:
    emu = emulator()
    for _ in range(3):
        emu.accept(emu.ports[A], ipv4_to(B, 1250), now=0.0)
    dues = sorted(entry[0] for entry in emu.queue)
    assert dues == pytest.approx([0.052, 0.053, 0.054])


def test_a_full_queue_drops_and_unknown_or_non_ipv4_packets_are_not_forwarded() -> None:
    emu = emulator(rate_bps=8e3)  # 1 kB/s: one 1500 B packet fills 1.5 s > MAX_QUEUE_SEC
    assert MAX_QUEUE_SEC < 1.5
    emu.accept(emu.ports[A], ipv4_to(B, 1500), now=0.0)
    emu.accept(emu.ports[A], ipv4_to(socket.inet_aton("10.0.0.9"), 100), now=0.0)
    emu.accept(emu.ports[A], bytes([0x60]) + bytes(59), now=0.0)  # IPv6
    assert emu.queue == []
    assert emu.ports[A].dropped == 2
    assert emu.ports[A].sent_packets == 3


def test_no_delay_and_no_rate_forward_at_once() -> None:
    emu = emulator(delay_sec=0.0, rate_bps=0.0)
    emu.accept(emu.ports[B], ipv4_to(A, 64), now=5.0)
    assert emu.queue[0][0] == 5.0
