"""The oracle committee's side of a secure-aggregation round: open, check, recompute.

Each trainer's plaintext input is sealed to the committee alone (:mod:`.secagg_exchange`). An
oracle opens every committed one, checks it against the masked input and the on-chain digest
(binding) and against the task's clip (:func:`~marketplace.crypto.secagg.committee_check`), and
recomputes the aggregate the peers unmasked: the survivors — the committed inputs whose manifest
and masked vector match their on-chain digest, exactly the set every peer sums — contribute their
plaintexts' fixed-point values, summed as integers, so the result is bit for bit the peers' ring
sum whenever each survivor's plaintext is the one it masked (a survivor whose plaintext fails the
binding leaves the sum unknown to the committee: :attr:`CommitteeRound.reproducible` is false and
the round's model is the one posted on-chain).

:func:`committee_review` / :func:`flagged` keep the per-sender verdicts alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketplace.crypto.envelope import EnvelopeContext, open_envelope
from marketplace.crypto.secagg import CommitteeCheck, committee_check, decode_plaintext
from marketplace.errors import CryptoError, StorageError, StoreUnreachableError
from marketplace.protocol.secagg_exchange import fetch_survivor, round_context, round_params
from marketplace.protocol.session import ENVELOPE_OVERHEAD, CommittedUpdate, TaskSession


@dataclass(frozen=True)
class OpenedInput:
    """One committed input as the committee sees it."""

    sender: str
    survivor: bool  # its masked input is in the peers' sum
    check: CommitteeCheck | None  # None: the plaintext could not be opened
    vector: np.ndarray | None  # the decoded plaintext (float64, flat), when opened
    reason: str = ""  # why it is flagged ("" when check.ok)

    @property
    def ok(self) -> bool:
        return self.check is not None and self.check.ok


@dataclass(frozen=True)
class CommitteeRound:
    """Every committed input of one round, opened, and the peers' aggregate recomputed."""

    round: int
    committed: tuple[CommittedUpdate, ...]
    inputs: Mapping[str, OpenedInput]  # by sender
    survivors: tuple[str, ...]  # sorted: the inputs the peers summed
    mean: np.ndarray | None  # the survivors' mean (float64), when reproducible and not empty
    reproducible: bool  # every survivor's plaintext is bound to its masked input

    def invalid(self) -> dict[str, str]:
        """Sender -> reason, for every input the committee flags."""
        return {a: i.reason for a, i in self.inputs.items() if not i.ok}


def _open(session: TaskSession, c: CommittedUpdate) -> OpenedInput:
    params = round_params(session)
    ctx = round_context(session, c.round)
    try:
        manifest, public = fetch_survivor(session, c)
    except (CryptoError, StorageError) as exc:
        if isinstance(exc, StoreUnreachableError):
            raise  # our store is down: not the sender's fault
        return OpenedInput(c.sender, False, None, None, f"{type(exc).__name__}: {exc}")
    try:
        blob = session.store.get(
            manifest.sealed_cid, expected_sha256=bytes.fromhex(manifest.sealed_sha256),
            max_size=session.doc.max_update_bytes + ENVELOPE_OVERHEAD,
        )  # fmt: skip
        plain = open_envelope(
            blob, recipient_address=session.identity.address,
            x25519_private=session.identity.x25519_private,
            expected_context=EnvelopeContext(ctx.chain_id, ctx.task_id, c.round, c.sender),
        )  # fmt: skip
        check = committee_check(
            ctx, c.sender, masked=public.masked_bytes(), plaintext=plain,
            binding=c.digest.hex(), params=params,
        )  # fmt: skip
        vector = decode_plaintext(plain, params)
        if vector.shape[0] != manifest.dim:
            raise CryptoError(f"sealed plaintext has {vector.shape[0]} values, not {manifest.dim}")
    except (CryptoError, StorageError) as exc:
        if isinstance(exc, StoreUnreachableError):
            raise
        return OpenedInput(c.sender, True, None, None, f"{type(exc).__name__}: {exc}")
    reason = ""
    if not check.binding_ok:
        reason = "secagg binding: the sealed plaintext is not the one its on-chain digest binds"
    elif not check.within_clip:
        reason = (
            f"secagg clip: input norm {check.norm:.6g} above the task's clip {params.clip_norm}"
        )
    return OpenedInput(c.sender, True, check, vector, reason)


def committee_round(session: TaskSession, round_: int) -> CommitteeRound:
    """Open and check every committed input of ``round_`` with this oracle's key, and recompute
    the survivors' mean (see the module docstring). Raises only when our own store is
    unreachable; anything wrong with an input is its :attr:`OpenedInput.reason`."""
    params = round_params(session)
    committed = session.committed(round_)
    inputs = {c.sender: _open(session, c) for c in committed}
    survivors = tuple(sorted(a for a, i in inputs.items() if i.survivor))
    bound = [inputs[a] for a in survivors]
    vectors = [i.vector for i in bound if i.vector is not None and i.check and i.check.binding_ok]
    reproducible = len(vectors) == len(bound)
    mean = None
    if reproducible and vectors:
        scale = 2.0**params.frac_bits
        # The same integers the peers' ring sum holds (no wrap: SecAggParams.check), so the same
        # float64 after the same operations as unmask_sum and the division by the survivors.
        fixed = np.zeros(vectors[0].shape[0], dtype=np.int64)
        for v in vectors:
            fixed += np.round(v * scale).astype(np.int64)
        mean = (fixed.astype(np.float64) / scale) / len(vectors)
    return CommitteeRound(round_, committed, inputs, survivors, mean, reproducible)


def committee_review(session: TaskSession, round_: int) -> dict[str, CommitteeCheck | str]:
    """An oracle's check of every committed secure-aggregation input of ``round_``: open the
    plaintext sealed to the committee, check it against the masked input and the on-chain digest,
    and the clip. Returns sender -> check, or the reason the input could not be checked (a
    flaggable fault either way when not ``ok``)."""
    out: dict[str, CommitteeCheck | str] = {}
    for a, i in committee_round(session, round_).inputs.items():
        out[a] = i.check if i.check is not None else i.reason
    return out


def flagged(review: Mapping[str, Any]) -> list[str]:
    """The senders a :func:`committee_review` flags: a failed check, or an unreadable input."""
    return sorted(a for a, v in review.items() if not (isinstance(v, CommitteeCheck) and v.ok))
