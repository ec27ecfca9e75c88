"""A whole secure-aggregation round in one process: real keys, real envelopes, chosen dropouts.

What the peers of a round exchange, in order, with the byte count and CPU time of each trainer —
the reference the benchmark measures and the tests check exactness against.

Example
-------
>>> out = run_round(inputs, keys, ctx=ctx, params=params, drop_before_masking={"0xab…"})
>>> np.allclose(out.total, sum of the survivors' clipped inputs, atol=n * 2**-16)
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.crypto.secagg import (
    MaskedInput,
    SecAggContext,
    SecAggParams,
    SecAggTrainer,
    committee_check,
    unmask_sum,
)
from marketplace.errors import ConfigError


@dataclass(frozen=True)
class RoundOutcome:
    """The unmasked sum, who survived, and each trainer's bytes sent and CPU seconds."""

    total: np.ndarray  # (d,) float64: sum of the survivors' clipped, encoded inputs
    survivors: tuple[str, ...]
    bytes_sent: Mapping[str, int]  # protocol bytes (share envelopes, masked input, unmask msg)
    committee_bytes: Mapping[str, int]  # the plaintext envelope sealed to the committee
    cpu_seconds: Mapping[str, float]  # per trainer, its own steps
    unmask_cpu_seconds: float  # one peer computing the sum
    committee_ok: Mapping[str, bool]  # binding and clip verified by the committee


def public_key(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def run_round(
    inputs: Mapping[str, np.ndarray],
    keys: Mapping[str, X25519PrivateKey],
    *,
    ctx: SecAggContext,
    params: SecAggParams,
    committee: Mapping[str, X25519PrivateKey],
    drop_before_masking: Collection[str] = (),
    drop_before_unmasking: Collection[str] = (),
) -> RoundOutcome:
    """Run one round among ``inputs``' trainers (addresses; ``keys`` their X25519 keys).

    Trainers in ``drop_before_masking`` share their seeds, then vanish; those in
    ``drop_before_unmasking`` also send their masked input, then vanish. The committee opens
    every survivor's sealed plaintext and checks binding and clip.
    """
    roster = {a: public_key(keys[a]) for a in inputs}
    gone_early = {a.lower() for a in drop_before_masking}
    gone_late = {a.lower() for a in drop_before_unmasking}
    clock: dict[str, float] = {}
    sent: dict[str, int] = {}

    def timed(who: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.process_time()
        out = fn(*args, **kwargs)
        clock[who.lower()] = clock.get(who.lower(), 0.0) + time.process_time() - start
        return out

    trainers = {
        a.lower(): timed(
            a,
            SecAggTrainer,
            address=a,
            x25519_private=keys[a],
            roster=roster,
            ctx=ctx,
            params=params,
        )
        for a in inputs
    }
    checksum = {a.lower(): a for a in inputs}
    env = {a: EnvelopeContext(ctx.chain_id, ctx.task_id, ctx.round, checksum[a]) for a in trainers}

    # step 1: shares, each bundle sealed to its one recipient
    for a, t in trainers.items():
        bundles = timed(a, t.share_bundles)
        for peer, bundle in bundles.items():
            blob = timed(
                a, seal, bundle, recipients={checksum[peer]: roster[checksum[peer]]}, context=env[a]
            )
            sent[a] = sent.get(a, 0) + len(blob)
            plain = timed(
                peer,
                open_envelope,
                blob,
                recipient_address=checksum[peer],
                x25519_private=keys[checksum[peer]],
                expected_context=env[a],
            )
            timed(peer, trainers[peer].receive_bundle, a, plain)

    # step 2: masked inputs; plaintexts sealed to the committee
    committee_keys = {addr: public_key(k) for addr, k in committee.items()}
    masked: dict[str, MaskedInput] = {}
    sealed: dict[str, bytes] = {}
    for a, t in trainers.items():
        if a in gone_early:
            continue
        m = timed(a, t.masked_input, inputs[checksum[a]])
        masked[a] = m
        sealed[a] = timed(a, seal, m.plaintext, recipients=committee_keys, context=env[a])
        sent[a] = sent.get(a, 0) + m.public.size()

    # step 3: the live trainers reveal what the sum needs
    survivors = sorted(masked)
    dropped = [a for a in trainers if a not in masked]
    responses = []
    for a, t in trainers.items():
        if a in gone_early or a in gone_late:
            continue
        msg = timed(a, t.unmask_response, survivors, dropped)
        sent[a] = sent.get(a, 0) + len(msg)
        responses.append(msg)
    if len(responses) < params.threshold:
        raise ConfigError(f"{len(responses)} trainers left to unmask, threshold {params.threshold}")
    start = time.process_time()
    total = unmask_sum(
        {a: masked[a].public for a in survivors},
        responses,
        roster=list(trainers),
        ctx=ctx,
        params=params,
    )
    unmask_cpu = time.process_time() - start

    # the committee opens the plaintexts and checks them against what the peers saw
    oracle, oracle_key = next(iter(committee.items()))
    ok = {}
    for a in survivors:
        plain = open_envelope(
            sealed[a], recipient_address=oracle, x25519_private=oracle_key, expected_context=env[a]
        )
        ok[a] = committee_check(
            ctx,
            a,
            masked=masked[a].public.masked_bytes(),
            plaintext=plain,
            binding=masked[a].public.binding,
            params=params,
        ).ok
    return RoundOutcome(
        total=total,
        survivors=tuple(survivors),
        bytes_sent=sent,
        committee_bytes={a: len(b) for a, b in sealed.items()},
        cpu_seconds=clock,
        unmask_cpu_seconds=unmask_cpu,
        committee_ok=ok,
    )
