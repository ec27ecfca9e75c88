"""Secure aggregation among peers (Bonawitz et al., 2017), pure and transport-free.

Peers learn the sum of the round's updates and nothing else about any one of them; the oracle
committee alone receives each plaintext (sealed to it), bound to the masked input by one digest.

One round, for a roster of trainers sorted by address, each with a registered X25519 key:

1. **Share.** Trainer ``i`` derives a pair seed ``s_ij`` with every other trainer ``j``
   (X25519(i, j) → HKDF-SHA256 bound to chain, task, round and the pair), draws a fresh self-mask
   seed ``b_i``, and Shamir-shares ``b_i`` and every ``s_ij`` (threshold ``t``, prime field
   ``2^521 - 1``) among the others: :meth:`SecAggTrainer.share_bundles`, one bundle per peer, to
   be sealed to that peer alone. Sharing pair seeds, not the X25519 key, keeps the registered key
   secret even when a dropout forces reconstruction.
2. **Masked input.** ``y_i = enc(x_i) + PRG(b_i) + sum_{j>i} PRG(s_ij) - sum_{j<i} PRG(s_ij)``
   over the ring ``Z_2^32`` (:meth:`SecAggTrainer.masked_input`), where ``enc`` clips ``x_i`` to
   L2 norm ``clip_norm`` and encodes it in fixed point (``frac_bits`` fractional bits). The
   plaintext (a salt and ``enc(x_i)``) goes, sealed, to the committee; the on-chain digest
   ``H(domain || context || sender || H(y_i) || H(plaintext))`` binds the two (peers see
   ``H(plaintext)``, salted, so they can check the digest against ``y_i``).
3. **Unmask.** With ``U1`` the trainers whose masked input arrived and ``D`` those who shared but
   sent none, every live trainer reveals its shares of ``b_i`` for ``i in U1`` and of ``s_ij``
   for ``i in U1, j in D`` (:meth:`SecAggTrainer.unmask_response`) — never ``b_j`` for ``j in D``,
   so a late ``y_j`` stays hidden. Any ``t`` responses let anyone compute the exact sum
   (:func:`unmask_sum`), so up to ``n - t`` trainers may drop out between step 1 and step 3.

Every seed is committed (sha256) with the masked input, so a wrong share is detected, not summed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from marketplace.errors import ConfigError, CryptoError

PRIME = 2**521 - 1  # Mersenne prime: field of the Shamir shares (secrets are 256-bit)
RING_BITS = 32
_DOMAIN = b"fedmarket/secagg/v1"
_SALT_BYTES = 16


# --- context and parameters ------------------------------------------------------------------
@dataclass(frozen=True)
class SecAggContext:
    """The round a secure aggregation belongs to; bound into every seed and digest."""

    chain_id: int
    task_id: int
    round: int

    def encode(self) -> bytes:
        return b"".join(v.to_bytes(32, "big") for v in (self.chain_id, self.task_id, self.round))


@dataclass(frozen=True)
class SecAggParams:
    """Clip norm, fixed-point precision and Shamir threshold of a task's secure aggregation.

    ``n · clip_norm · 2^frac_bits`` must stay below ``2^31`` so the ring sum cannot wrap.
    """

    clip_norm: float
    threshold: int
    frac_bits: int = 16

    def check(self, n: int) -> None:
        """Refuse a roster of ``n`` these parameters cannot serve."""
        if not self.clip_norm > 0 or not 0 < self.frac_bits < 31:
            raise ConfigError("secure aggregation needs clip_norm > 0 and 0 < frac_bits < 31")
        if not 2 <= self.threshold <= n - 1:
            raise ConfigError(
                f"Shamir threshold {self.threshold} must be in 2..{n - 1} for {n} trainers "
                "(a trainer's shares go to the other n - 1)"
            )
        if n * self.clip_norm * 2**self.frac_bits >= 2**31:
            raise ConfigError(
                f"{n} inputs of norm {self.clip_norm} at {self.frac_bits} fractional bits can "
                "overflow the 32-bit ring: lower frac_bits or clip_norm"
            )


def default_threshold(n: int) -> int:
    """``floor(n/2) + 1``: a majority, tolerating ``n - t`` dropouts (4 of 10)."""
    return n // 2 + 1


# --- fixed point -----------------------------------------------------------------------------
def clip_vector(x: np.ndarray, clip_norm: float) -> np.ndarray:
    """``x`` scaled to L2 norm at most ``clip_norm``."""
    v = np.asarray(x, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    return v * min(1.0, clip_norm / norm) if norm > 0 else v


def encode_fixed(x: np.ndarray, params: SecAggParams) -> np.ndarray:
    """Clip, then round to ``frac_bits`` fractional bits: int32 values (``|v| <= clip·2^f``)."""
    clipped = clip_vector(x, params.clip_norm)
    return np.round(clipped * 2.0**params.frac_bits).astype(np.int32)


def decode_fixed(ring_sum: np.ndarray, params: SecAggParams) -> np.ndarray:
    """A ring (uint32) sum back to float64 (two's complement, then ``/ 2^frac_bits``)."""
    signed = np.asarray(ring_sum, dtype=np.uint32).view(np.int32).astype(np.float64)
    out: np.ndarray = signed / 2.0**params.frac_bits
    return out


# --- seeds and the PRG -----------------------------------------------------------------------
def prg(seed: bytes, dim: int) -> np.ndarray:
    """``dim`` uint32 words of ChaCha20 keystream under the 32-byte ``seed`` (zero nonce: every
    seed is used for one mask only)."""
    if len(seed) != 32:
        raise CryptoError(f"a mask seed is 32 bytes, got {len(seed)}")
    encryptor = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    stream = encryptor.update(bytes(4 * dim))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def pair_seed(
    private: X25519PrivateKey, peer_public: bytes, ctx: SecAggContext, a: str, b: str
) -> bytes:
    """The seed trainers ``a`` and ``b`` share this round: HKDF-SHA256 of their X25519 secret,
    bound to the round and the (sorted) pair. Both ends derive the same 32 bytes."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise CryptoError(f"bad X25519 public key for secure aggregation: {exc}") from None
    lo, hi = sorted((a.lower(), b.lower()))
    info = b"|".join([_DOMAIN, b"pair", ctx.encode(), lo.encode(), hi.encode()])
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seed_commitment(seed: bytes, ctx: SecAggContext, label: str) -> str:
    """``sha256(domain | context | label | seed)``, hex: published so reconstruction is checked."""
    return hashlib.sha256(
        b"|".join([_DOMAIN, b"commit", ctx.encode(), label.encode(), seed])
    ).hexdigest()


# --- Shamir secret sharing over GF(PRIME) ------------------------------------------------------
@dataclass(frozen=True)
class Share:
    """The point ``(x, y)`` of a degree ``t - 1`` polynomial whose value at 0 is the secret."""

    x: int
    y: int


def split_secret(secret: bytes, xs: Sequence[int], threshold: int) -> list[Share]:
    """Shares of ``secret`` at the points ``xs`` (distinct, non-zero); any ``threshold`` of them
    recover it, fewer reveal nothing."""
    if not 1 <= threshold <= len(xs) or len(set(xs)) != len(xs) or 0 in xs:
        raise ConfigError("Shamir needs 1 <= threshold <= number of distinct non-zero points")
    coeffs = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    return [Share(x, _eval(coeffs, x)) for x in xs]


def _eval(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc


def _lagrange_at(points: Sequence[Share], at: int) -> int:
    total = 0
    for i, pi in enumerate(points):
        num, den = 1, 1
        for j, pj in enumerate(points):
            if i != j:
                num = num * (at - pj.x) % PRIME
                den = den * (pi.x - pj.x) % PRIME
        total = (total + pi.y * num * pow(den, -1, PRIME)) % PRIME
    return total


def recover_secret(shares: Iterable[Share], threshold: int, *, length: int = 32) -> bytes:
    """The secret from ``threshold`` shares; every further share must lie on the same polynomial
    (:class:`CryptoError` otherwise: someone sent a bad share)."""
    pts = sorted({s.x: s for s in shares}.values(), key=lambda s: s.x)
    if len(pts) < threshold:
        raise CryptoError(
            f"{len(pts)} distinct shares, need {threshold}: too many trainers dropped out"
        )
    base = pts[:threshold]
    for extra in pts[threshold:]:
        if _lagrange_at(base, extra.x) != extra.y:
            raise CryptoError(f"Shamir share at x={extra.x} is inconsistent with the others")
    value = _lagrange_at(base, 0)
    if value >= 1 << (8 * length):
        raise CryptoError("recovered Shamir secret is out of range: shares are corrupt")
    return value.to_bytes(length, "big")


# --- messages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicInput:
    """What every peer gets of a trainer's round: the masked vector, the digest of the sealed
    plaintext (salted, so it reveals nothing), the binding digest (on-chain) and the seed
    commitments."""

    sender: str
    masked: np.ndarray = field(repr=False)  # (d,) uint32
    plaintext_sha256: bytes = field(repr=False)
    binding: str  # hex sha256, the commit digest
    commitments: Mapping[str, str]  # "self" or peer address -> seed commitment

    def masked_bytes(self) -> bytes:
        return np.asarray(self.masked, dtype="<u4").tobytes()

    def size(self) -> int:
        """Bytes on the wire (vector, digests, commitments as JSON)."""
        meta = _canonical({"binding": self.binding, "commitments": dict(self.commitments)})
        return 4 * int(self.masked.shape[0]) + 32 + len(meta)


@dataclass(frozen=True)
class MaskedInput:
    """A trainer's step-2 output: the public part, and the plaintext to seal to the committee."""

    public: PublicInput
    plaintext: bytes = field(repr=False)  # salt | enc(x) as int32 little-endian


def binding_digest(ctx: SecAggContext, sender: str, masked: bytes, plaintext_sha256: bytes) -> str:
    """``H(domain | context | sender | H(masked) | H(plaintext))``: one digest for both forms."""
    return hashlib.sha256(
        b"|".join(
            [
                _DOMAIN,
                b"bind",
                ctx.encode(),
                sender.lower().encode(),
                hashlib.sha256(masked).digest(),
                plaintext_sha256,
            ]
        )
    ).hexdigest()


def _share_json(s: Share) -> list[object]:
    return [s.x, format(s.y, "x")]


def _share_from(v: object) -> Share:
    if not (
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and isinstance(v[1], str)
    ):
        raise CryptoError(f"malformed Shamir share {v!r}")
    try:
        y = int(v[1], 16)
    except ValueError:
        raise CryptoError(f"malformed Shamir share {v!r}") from None
    if not 0 < v[0] < 1 << 16 or not 0 <= y < PRIME:
        raise CryptoError(f"Shamir share out of range: {v!r}")
    return Share(v[0], y)


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- one trainer -----------------------------------------------------------------------------
class SecAggTrainer:
    """One trainer's side of a secure-aggregation round.

    Parameters
    ----------
    address : str
        This trainer (must be in ``roster``).
    x25519_private : X25519PrivateKey
        Its registered X25519 key.
    roster : mapping address -> X25519 public key (32 bytes)
        Every trainer of the round, this one included.
    ctx : SecAggContext
        Chain, task and round.
    params : SecAggParams
        Clip, precision, threshold.
    """

    def __init__(
        self,
        *,
        address: str,
        x25519_private: X25519PrivateKey,
        roster: Mapping[str, bytes],
        ctx: SecAggContext,
        params: SecAggParams,
    ) -> None:
        self.roster = {a.lower(): bytes(k) for a, k in roster.items()}
        self.address = address.lower()
        if self.address not in self.roster:
            raise ConfigError(f"{address} is not in the secure-aggregation roster")
        params.check(len(self.roster))
        self.order = sorted(self.roster)
        self.index = {a: i + 1 for i, a in enumerate(self.order)}  # Shamir x of each trainer
        self.ctx, self.params = ctx, params
        self.peers = [a for a in self.order if a != self.address]
        self._pair = {
            p: pair_seed(x25519_private, self.roster[p], ctx, self.address, p) for p in self.peers
        }
        self._self_seed = secrets.token_bytes(32)
        self._held: dict[str, dict[str, Share]] = {}  # owner -> label -> my share of its seed

    def commitments(self) -> dict[str, str]:
        """Commitments to this trainer's seeds (``"self"`` and one per peer)."""
        out = {"self": seed_commitment(self._self_seed, self.ctx, f"self:{self.address}")}
        for p, s in self._pair.items():
            out[p] = seed_commitment(s, self.ctx, _pair_label(self.address, p))
        return out

    # step 1
    def share_bundles(self) -> dict[str, bytes]:
        """One canonical-JSON bundle per peer: that peer's shares of this trainer's self seed and
        pair seeds. Seal each to its peer alone (``envelope.seal`` with one recipient)."""
        xs = [self.index[p] for p in self.peers]
        t = self.params.threshold
        per_secret = {"self": split_secret(self._self_seed, xs, t)}
        for p, s in self._pair.items():
            per_secret[p] = split_secret(s, xs, t)
        out = {}
        for k, p in enumerate(self.peers):
            body = {label: _share_json(shares[k]) for label, shares in per_secret.items()}
            out[p] = _canonical({"owner": self.address, "shares": body})
        return out

    def receive_bundle(self, owner: str, bundle: bytes) -> None:
        """Keep the shares ``owner`` sent this trainer (after opening its envelope)."""
        owner = owner.lower()
        try:
            data = json.loads(bundle)
        except ValueError:
            raise CryptoError(f"share bundle from {owner} is not JSON") from None
        if not isinstance(data, dict) or str(data.get("owner", "")).lower() != owner:
            raise CryptoError(f"share bundle from {owner} names another owner")
        body = data.get("shares")
        expected = {"self"} | {p for p in self.order if p != owner}
        if not isinstance(body, dict) or set(body) != expected:
            raise CryptoError(f"share bundle from {owner} does not cover exactly the roster")
        shares = {label: _share_from(v) for label, v in body.items()}
        if any(s.x != self.index[self.address] for s in shares.values()):
            raise CryptoError(f"share bundle from {owner} is addressed to another trainer")
        self._held[owner] = shares

    # step 2
    def masked_input(self, update: np.ndarray) -> MaskedInput:
        """Clip and encode ``update`` (flat float vector), mask it, and bind it to its plaintext."""
        fixed = encode_fixed(update, self.params)
        d = fixed.shape[0]
        y = fixed.view(np.uint32).copy()
        y += prg(self._self_seed, d)
        for p, s in self._pair.items():
            if self.address < p:
                y += prg(s, d)
            else:
                y -= prg(s, d)
        plaintext = secrets.token_bytes(_SALT_BYTES) + fixed.astype("<i4").tobytes()
        digest = hashlib.sha256(plaintext).digest()
        public = PublicInput(
            sender=self.address,
            masked=y,
            plaintext_sha256=digest,
            binding=binding_digest(self.ctx, self.address, y.astype("<u4").tobytes(), digest),
            commitments=self.commitments(),
        )
        return MaskedInput(public=public, plaintext=plaintext)

    # step 3
    def unmask_response(self, survivors: Iterable[str], dropped: Iterable[str]) -> bytes:
        """This trainer's public unmasking message: its shares of ``b_i`` for each survivor
        (own included: it reveals its seed directly) and of ``s_ij`` for survivor ``i`` and
        dropped ``j``. Refuses a ``dropped`` set that overlaps ``survivors``."""
        u1 = {a.lower() for a in survivors}
        dset = {a.lower() for a in dropped}
        if u1 & dset or not u1 <= set(self.order) or not dset <= set(self.order):
            raise CryptoError("survivors and dropped trainers must be disjoint roster members")
        selfs: dict[str, list[object]] = {}
        pairs: dict[str, list[object]] = {}
        for i in sorted(u1):
            if i == self.address:
                continue
            held = self._held.get(i)
            if held is None:
                raise CryptoError(f"no shares from {i}: it cannot count as a survivor")
            selfs[i] = _share_json(held["self"])
            for j in sorted(dset):
                if j != self.address:
                    pairs[_pair_label(i, j) + f"@{i}"] = _share_json(held[j])
        own = {}
        if self.address in u1:
            own["self"] = self._self_seed.hex()
            own.update({_pair_label(self.address, j): self._pair[j].hex() for j in sorted(dset)})
        return _canonical({"from": self.address, "self": selfs, "pairs": pairs, "own": own})


def _pair_label(a: str, b: str) -> str:
    lo, hi = sorted((a.lower(), b.lower()))
    return f"pair:{lo}:{hi}"


# --- anyone: the sum -------------------------------------------------------------------------
def unmask_sum(
    masked: Mapping[str, PublicInput],
    responses: Sequence[bytes],
    *,
    roster: Sequence[str],
    ctx: SecAggContext,
    params: SecAggParams,
) -> np.ndarray:
    """The exact sum (float64, ``(d,)``) of the survivors' encoded inputs.

    ``masked``: survivor -> its masked input (binding checked); ``responses``: the unmasking
    messages of the live trainers (at least ``threshold`` of them); ``roster``: every trainer of
    step 1. Dropped = roster minus survivors. Each reconstructed seed is checked against the
    owner's commitment.
    """
    order = sorted(a.lower() for a in roster)
    params.check(len(order))
    index = {a: i + 1 for i, a in enumerate(order)}
    u1 = sorted(a.lower() for a in masked)
    dropped = [a for a in order if a not in set(u1)]
    if not set(u1) <= set(order):
        raise CryptoError("a masked input comes from outside the roster")
    inputs = {m.sender.lower(): m for m in masked.values()}
    for a, m in inputs.items():
        if binding_digest(ctx, a, m.masked_bytes(), m.plaintext_sha256) != m.binding:
            raise CryptoError(f"masked input of {a} does not match its binding digest")
    self_shares: dict[str, list[Share]] = {a: [] for a in u1}
    pair_shares: dict[tuple[str, str], list[Share]] = {}
    known_self: dict[str, bytes] = {}
    known_pair: dict[tuple[str, str], bytes] = {}
    for raw in responses:
        try:
            msg = json.loads(raw)
            sender = str(msg["from"]).lower()
            selfs, pairs, own = dict(msg["self"]), dict(msg["pairs"]), dict(msg["own"])
        except (ValueError, KeyError, TypeError):
            raise CryptoError("malformed unmasking response") from None
        if sender not in index:
            raise CryptoError(f"unmasking response from {sender}, not in the roster")
        for i, v in selfs.items():
            if i in self_shares:
                share = _share_from(v)
                if share.x != index[sender]:
                    raise CryptoError(f"{sender} sent a share at another trainer's point")
                self_shares[i].append(share)
        for label, v in pairs.items():
            pair, _, owner = label.partition("@")
            _, lo, hi = pair.split(":")
            pair_shares.setdefault((owner, hi if lo == owner else lo), []).append(_share_from(v))
        if "self" in own and sender in self_shares:
            known_self[sender] = bytes.fromhex(str(own["self"]))
            for label, hexseed in own.items():
                if label.startswith("pair:"):
                    _, lo, hi = label.split(":")
                    known_pair[(sender, hi if lo == sender else lo)] = bytes.fromhex(str(hexseed))
    d = next(iter(inputs.values())).masked.shape[0] if inputs else 0
    total = np.zeros(d, dtype=np.uint32)
    for a in u1:
        total += inputs[a].masked
    for a in u1:
        seed = known_self.get(a) or recover_secret(self_shares[a], params.threshold)
        _check(seed, inputs[a].commitments.get("self"), ctx, f"self:{a}", a)
        total -= prg(seed, d)
        for j in dropped:
            s = known_pair.get((a, j)) or recover_secret(
                pair_shares.get((a, j), []), params.threshold
            )
            _check(s, inputs[a].commitments.get(j), ctx, _pair_label(a, j), a)
            if a < j:
                total -= prg(s, d)
            else:
                total += prg(s, d)
    return decode_fixed(total, params)


def _check(seed: bytes, commitment: str | None, ctx: SecAggContext, label: str, owner: str) -> None:
    if commitment is None or seed_commitment(seed, ctx, label) != commitment:
        raise CryptoError(f"reconstructed {label} does not match {owner}'s commitment")


# --- the committee ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CommitteeCheck:
    """What an oracle concludes from one opened plaintext."""

    binding_ok: bool  # the plaintext and the published masked input hash to the committed digest
    norm: float  # L2 norm of the decoded input
    within_clip: bool  # norm <= clip (plus fixed-point rounding slack)

    @property
    def ok(self) -> bool:
        return self.binding_ok and self.within_clip


def decode_plaintext(plaintext: bytes, params: SecAggParams) -> np.ndarray:
    """The float64 input inside a sealed plaintext (``salt | int32 LE``)."""
    body = plaintext[_SALT_BYTES:]
    if len(plaintext) < _SALT_BYTES or len(body) % 4:
        raise CryptoError("secure-aggregation plaintext has a bad length")
    out: np.ndarray = np.frombuffer(body, dtype="<i4").astype(np.float64) / 2.0**params.frac_bits
    return out


def committee_check(
    ctx: SecAggContext,
    sender: str,
    *,
    masked: bytes,
    plaintext: bytes,
    binding: str,
    params: SecAggParams,
) -> CommitteeCheck:
    """Check a trainer's opened plaintext: bound to its masked input and digest, within the clip.

    A failed binding is evidence (the digest is signed on-chain); a norm above the clip is a
    flaggable violation of the task's terms.
    """
    x = decode_plaintext(plaintext, params)
    norm = float(np.linalg.norm(x))
    slack = np.sqrt(x.shape[0]) * 2.0 ** -(params.frac_bits + 1)  # rounding, half a unit each
    digest = hashlib.sha256(plaintext).digest()
    return CommitteeCheck(
        binding_ok=binding_digest(ctx, sender, masked, digest) == binding,
        norm=norm,
        within_clip=norm <= params.clip_norm + slack,
    )


def masks_consistent(
    masked: np.ndarray,
    plaintext: bytes,
    *,
    sender: str,
    self_seed: bytes,
    pair_seeds: Mapping[str, bytes],
) -> bool:
    """Whether ``masked`` is exactly the plaintext's input plus the masks of these seeds — the
    dispute check once a trainer's seeds are revealed to the committee."""
    fixed = np.frombuffer(plaintext[_SALT_BYTES:], dtype="<i4").astype(np.int32)
    d = fixed.shape[0]
    y = fixed.view(np.uint32).copy()
    y += prg(self_seed, d)
    me = sender.lower()
    for p, s in pair_seeds.items():
        if me < p.lower():
            y += prg(s, d)
        else:
            y -= prg(s, d)
    return bool(np.array_equal(y, np.asarray(masked, dtype=np.uint32)))
