"""Secure aggregation among peers (Bonawitz et al., 2017), pure and transport-free.

Peers learn the sum of the round's updates and nothing else about any one of them; the oracle
committee alone receives each plaintext (sealed to it), bound to the masked input by one digest.

One round, for a roster of trainers sorted by address, each with a registered X25519 key:

1. **Share.** Trainer ``i`` derives a pair seed ``s_ij`` with every other trainer ``j``
   (X25519(i, j) → HKDF-SHA256 bound to chain, task, round and the pair), draws a fresh self-mask
   seed ``b_i``, and Shamir-shares ``b_i`` and every ``s_ij`` (threshold ``t``, prime field
   ``2^130 - 5``, one polynomial per 16-byte half) among the others
   (:meth:`SecAggTrainer.share_bundles`: one bundle per peer, to be sealed to that peer alone).
   Sharing pair seeds, not the X25519 key, keeps the registered key
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

import base64
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
from marketplace.jsonlimits import shallow_json

PRIME = 2**130 - 5  # the Poly1305 prime: Shamir field; a 32-byte secret is two 16-byte chunks
_CHUNK, _ELEM = 16, 17  # secret chunk and field element sizes in bytes
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


@dataclass(frozen=True)
class SecAggTerms:
    """A task's secure-aggregation term (the task document's ``secagg``): clip norm, fixed-point
    precision, and the Shamir threshold (``None``: a majority of the trainers, fixed when
    training starts and the roster is known)."""

    clip_norm: float = 1.0
    frac_bits: int = 16
    threshold: int | None = None

    def __post_init__(self) -> None:
        if not self.clip_norm > 0 or not 0 < self.frac_bits < 31:
            raise ConfigError(
                "secure aggregation needs clip_norm > 0 and 0 < frac_bits < 31: fix the task's "
                "secagg term"
            )
        if self.threshold is not None and self.threshold < 2:
            raise ConfigError(f"secure-aggregation threshold {self.threshold} must be >= 2")

    def params(self, n: int) -> SecAggParams:
        """The round parameters for ``n`` trainers (checked: :class:`ConfigError` if unfit)."""
        t = default_threshold(n) if self.threshold is None else self.threshold
        out = SecAggParams(clip_norm=self.clip_norm, threshold=t, frac_bits=self.frac_bits)
        out.check(n)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "clip_norm": self.clip_norm,
            "frac_bits": self.frac_bits,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SecAggTerms:
        """Parse the task document's ``secagg`` object; :class:`ConfigError` if malformed."""
        if not isinstance(data, Mapping) or set(data) - {"clip_norm", "frac_bits", "threshold"}:
            raise ConfigError(
                f"malformed secagg term {data!r}: keys clip_norm, frac_bits, threshold"
            )
        t = data.get("threshold")
        try:
            return cls(
                clip_norm=float(data.get("clip_norm", 1.0)),  # type: ignore[arg-type]
                frac_bits=int(data.get("frac_bits", 16)),  # type: ignore[call-overload]
                threshold=None if t is None else int(t),  # type: ignore[call-overload]
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed secagg term: {exc}") from None


#: Aggregators that need only the sum of the round's inputs, so secure aggregation can serve
#: them (unweighted: the peers learn no sample counts). Robust ones (median, trimmed mean, Krum,
#: Bulyan, centered clipping, bucketing) look at each update and cannot.
SECAGG_AGGREGATORS = ("fedavg", "fedprox")


def check_task_terms(
    terms: SecAggTerms, *, aggregator: str, min_trainers: int, max_trainers: int
) -> None:
    """Refuse, before any transaction, a task whose secure aggregation cannot run: a robust
    aggregator, too few trainers for the Shamir threshold, or a ring that could overflow."""
    if aggregator not in SECAGG_AGGREGATORS:
        raise ConfigError(
            f"secure aggregation gives peers only the sum of the updates, and aggregator "
            f"{aggregator!r} needs each update: use --aggregator "
            f"{' or '.join(SECAGG_AGGREGATORS)} (robustness then rests on the committee's clip "
            "check and flags)"
        )
    if min_trainers < 3:
        raise ConfigError(
            f"secure aggregation needs at least 3 trainers (Shamir threshold >= 2, below the "
            f"trainer count), --min-trainers is {min_trainers}: raise it to 3 or more"
        )
    t = terms.threshold
    if t is not None and t > min_trainers - 1:
        raise ConfigError(
            f"secure-aggregation threshold {t} needs at least {t + 1} trainers, --min-trainers "
            f"is {min_trainers}: raise --min-trainers or lower the threshold"
        )
    for n in (min_trainers, max_trainers):
        terms.params(n)  # the threshold's range and the ring's headroom at either end


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
    """``sha256(domain | context | label | seed)`` truncated to 128 bits, hex: published with
    the masked input so that every reconstructed seed is checked."""
    return hashlib.sha256(
        b"|".join([_DOMAIN, b"commit", ctx.encode(), label.encode(), seed])
    ).hexdigest()[:32]


# --- Shamir secret sharing over GF(PRIME) ------------------------------------------------------
@dataclass(frozen=True)
class Share:
    """Points ``(x, y_k)`` of degree ``t - 1`` polynomials, one per 16-byte chunk of the secret,
    whose values at 0 are the chunks."""

    x: int
    y: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return b"".join(v.to_bytes(_ELEM, "big") for v in self.y)

    @classmethod
    def from_bytes(cls, x: int, raw: bytes) -> Share:
        if not 0 < x < 1 << 16 or not raw or len(raw) % _ELEM:
            raise CryptoError(f"malformed Shamir share at x={x}")
        ys = tuple(int.from_bytes(raw[i : i + _ELEM], "big") for i in range(0, len(raw), _ELEM))
        if any(v >= PRIME for v in ys):
            raise CryptoError(f"Shamir share at x={x} is out of the field")
        return cls(x, ys)


def split_secret(secret: bytes, xs: Sequence[int], threshold: int) -> list[Share]:
    """Shares of ``secret`` (a multiple of 16 bytes) at the points ``xs`` (distinct, non-zero);
    any ``threshold`` of them recover it, fewer reveal nothing."""
    if not 1 <= threshold <= len(xs) or len(set(xs)) != len(xs) or 0 in xs:
        raise ConfigError("Shamir needs 1 <= threshold <= number of distinct non-zero points")
    if not secret or len(secret) % _CHUNK:
        raise ConfigError(f"Shamir secrets are whole {_CHUNK}-byte chunks, got {len(secret)}")
    polys = [
        [int.from_bytes(secret[i : i + _CHUNK], "big")]
        + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
        for i in range(0, len(secret), _CHUNK)
    ]
    return [Share(x, tuple(_eval(c, x) for c in polys)) for x in xs]


def _eval(coeffs: Sequence[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc


def _lagrange_at(points: Sequence[Share], at: int) -> tuple[int, ...]:
    """Each chunk's polynomial through ``points``, evaluated at ``at``."""
    weights = []
    for i, pi in enumerate(points):
        num, den = 1, 1
        for j, pj in enumerate(points):
            if i != j:
                num = num * (at - pj.x) % PRIME
                den = den * (pi.x - pj.x) % PRIME
        weights.append(num * pow(den, -1, PRIME) % PRIME)
    if len({len(p.y) for p in points}) != 1:
        raise CryptoError("Shamir shares of different lengths")
    return tuple(
        sum(w * p.y[k] for w, p in zip(weights, points, strict=True)) % PRIME
        for k in range(len(points[0].y))
    )


def recover_secret(shares: Iterable[Share], threshold: int) -> bytes:
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
    chunks = _lagrange_at(base, 0)
    if any(c >= 1 << (8 * _CHUNK) for c in chunks):
        raise CryptoError("recovered Shamir secret is out of range: shares are corrupt")
    return b"".join(c.to_bytes(_CHUNK, "big") for c in chunks)


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
    commitments: Mapping[str, str]  # "self" or a peer's roster index -> seed commitment

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


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(v: object, what: str) -> bytes:
    if not isinstance(v, str):
        raise CryptoError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except ValueError:
        raise CryptoError(f"{what} is not valid base64") from None


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
    self_seed : bytes or None
        The self-mask seed ``b_i`` (32 bytes) when resuming a round whose shares already left
        the node (a restarted trainer must mask with the seed it shared); ``None``: a fresh one.
    """

    def __init__(
        self,
        *,
        address: str,
        x25519_private: X25519PrivateKey,
        roster: Mapping[str, bytes],
        ctx: SecAggContext,
        params: SecAggParams,
        self_seed: bytes | None = None,
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
        if self_seed is not None and len(self_seed) != 32:
            raise CryptoError(f"a self-mask seed is 32 bytes, got {len(self_seed)}")
        self._self_seed = secrets.token_bytes(32) if self_seed is None else bytes(self_seed)
        self._held: dict[str, dict[str, Share]] = {}  # owner -> label -> my share of its seed

    def _labels(self, owner: str) -> list[str]:
        """Canonical order of an owner's secrets: ``self``, then its peers in roster order."""
        return ["self"] + [p for p in self.order if p != owner]

    def commitments(self) -> dict[str, str]:
        """Commitments to this trainer's seeds: ``"self"`` and each peer's roster index."""
        out = {"self": seed_commitment(self._self_seed, self.ctx, f"self:{self.address}")}
        for p, s in self._pair.items():
            out[str(self.index[p])] = seed_commitment(s, self.ctx, _pair_label(self.address, p))
        return out

    # step 1
    def share_bundles(self) -> dict[str, bytes]:
        """One bundle per peer: that peer's shares of this trainer's self seed and pair seeds
        (canonical order, packed). Seal each to its peer alone (``envelope.seal``, one
        recipient)."""
        xs = [self.index[p] for p in self.peers]
        t = self.params.threshold
        secrets_in_order = [self._self_seed] + [self._pair[p] for p in self.peers]
        per_secret = [split_secret(sec, xs, t) for sec in secrets_in_order]
        out = {}
        for k, p in enumerate(self.peers):
            packed = b"".join(shares[k].to_bytes() for shares in per_secret)
            out[p] = _canonical({"owner": self.address, "x": xs[k], "shares": _b64(packed)})
        return out

    def receive_bundle(self, owner: str, bundle: bytes) -> None:
        """Keep the shares ``owner`` sent this trainer (after opening its envelope)."""
        owner = owner.lower()
        try:
            data = shallow_json(bundle)  # a peer's: nesting bounded
        except ValueError:
            raise CryptoError(f"share bundle from {owner} is not JSON") from None
        if not isinstance(data, dict) or str(data.get("owner", "")).lower() != owner:
            raise CryptoError(f"share bundle from {owner} names another owner")
        if owner not in self.roster or owner == self.address:
            raise CryptoError(f"share bundle from {owner}, not another roster member")
        if data.get("x") != self.index[self.address]:
            raise CryptoError(f"share bundle from {owner} is addressed to another trainer")
        labels = self._labels(owner)
        raw = _unb64(data.get("shares"), f"shares from {owner}")
        size = 2 * _ELEM
        if len(raw) != size * len(labels):
            raise CryptoError(f"share bundle from {owner} does not cover exactly the roster")
        x = self.index[self.address]
        self._held[owner] = {
            label: Share.from_bytes(x, raw[i * size : (i + 1) * size])
            for i, label in enumerate(labels)
        }

    # step 2
    def masked_input(self, update: np.ndarray, *, salt: bytes | None = None) -> MaskedInput:
        """Clip and encode ``update`` (flat float vector), mask it, and bind it to its plaintext.

        ``salt`` (16 bytes; default fresh) makes the result reproducible: a restarted trainer
        passes the one it journaled, so it never publishes two different masked inputs.
        """
        if salt is not None and len(salt) != _SALT_BYTES:
            raise CryptoError(f"a plaintext salt is {_SALT_BYTES} bytes, got {len(salt)}")
        fixed = encode_fixed(update, self.params)
        d = fixed.shape[0]
        y = fixed.view(np.uint32).copy()
        y += prg(self._self_seed, d)
        for p, s in self._pair.items():
            if self.address < p:
                y += prg(s, d)
            else:
                y -= prg(s, d)
        salt = secrets.token_bytes(_SALT_BYTES) if salt is None else bytes(salt)
        plaintext = salt + fixed.astype("<i4").tobytes()
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
        """This trainer's public unmasking message: its shares of ``b_i`` for each survivor ``i``
        and of ``s_ij`` for survivor ``i`` and dropped ``j`` (keys ``"i"`` and ``"i>j"``, roster
        indices), and, if it survived, its own ``b`` and dropped-pair seeds outright. Never a
        share of a dropped trainer's ``b``."""
        u1 = {a.lower() for a in survivors}
        dset = {a.lower() for a in dropped}
        if u1 & dset or not u1 <= set(self.order) or not dset <= set(self.order):
            raise CryptoError("survivors and dropped trainers must be disjoint roster members")
        selfs: dict[str, str] = {}
        pairs: dict[str, str] = {}
        for i in sorted(u1):
            if i == self.address:
                continue
            held = self._held.get(i)
            if held is None:
                raise CryptoError(f"no shares from {i}: it cannot count as a survivor")
            selfs[str(self.index[i])] = _b64(held["self"].to_bytes())
            for j in sorted(dset):
                if j != self.address:
                    pairs[f"{self.index[i]}>{self.index[j]}"] = _b64(held[j].to_bytes())
        own: dict[str, str] = {}
        if self.address in u1:
            own["self"] = _b64(self._self_seed)
            for j in sorted(dset):
                own[f"{self.index[self.address]}>{self.index[j]}"] = _b64(self._pair[j])
        return _canonical({"from": self.address, "self": selfs, "pairs": pairs, "own": own})


def _pair_label(a: str, b: str) -> str:
    lo, hi = sorted((a.lower(), b.lower()))
    return f"pair:{lo}:{hi}"


# --- anyone: the sum -------------------------------------------------------------------------
def _pair_key(text: str, n: int) -> tuple[int, int]:
    i, sep, j = text.partition(">")
    if not sep or not i.isdigit() or not j.isdigit() or not (1 <= int(i) <= n and 1 <= int(j) <= n):
        raise CryptoError(f"malformed pair key {text!r} in an unmasking response")
    return int(i), int(j)


def unmask_sum(
    masked: Mapping[str, PublicInput],
    responses: Sequence[bytes],
    *,
    roster: Sequence[str],
    ctx: SecAggContext,
    params: SecAggParams,
) -> np.ndarray:
    """The exact sum (float64, ``(d,)``) of the survivors' encoded inputs.

    ``masked``: survivor -> its public input (binding checked); ``responses``: the unmasking
    messages of the live trainers (at least ``threshold`` of them); ``roster``: every trainer of
    step 1. Dropped = roster minus survivors. Each reconstructed seed is checked against the
    owner's commitment.
    """
    order = sorted(a.lower() for a in roster)
    n = len(order)
    params.check(n)
    index = {a: i + 1 for i, a in enumerate(order)}
    inputs = {m.sender.lower(): m for m in masked.values()}
    if not set(inputs) <= set(order) or not inputs:
        raise CryptoError("masked inputs must come from roster members, at least one")
    for a, m in inputs.items():
        if binding_digest(ctx, a, m.masked_bytes(), m.plaintext_sha256) != m.binding:
            raise CryptoError(f"masked input of {a} does not match its binding digest")
    u1 = sorted(inputs)
    dropped = [a for a in order if a not in inputs]
    self_shares: dict[int, list[Share]] = {index[a]: [] for a in u1}
    pair_shares: dict[tuple[int, int], list[Share]] = {}
    known: dict[tuple[int, int], bytes] = {}  # (owner, 0) self seed, (owner, j) pair seed
    for raw in responses:
        try:
            msg = shallow_json(raw)
            sender = str(msg["from"]).lower()
            selfs, pairs, own = dict(msg["self"]), dict(msg["pairs"]), dict(msg["own"])
        except (ValueError, KeyError, TypeError):
            raise CryptoError("malformed unmasking response") from None
        if sender not in index:
            raise CryptoError(f"unmasking response from {sender}, not in the roster")
        x = index[sender]
        for i, v in selfs.items():
            if i.isdigit() and int(i) in self_shares:
                self_shares[int(i)].append(Share.from_bytes(x, _unb64(v, "share")))
        for key, v in pairs.items():
            pair_shares.setdefault(_pair_key(key, n), []).append(
                Share.from_bytes(x, _unb64(v, "share"))
            )
        if "self" in own and sender in inputs:
            known[(x, 0)] = _unb64(own["self"], "seed")
            for key, v in own.items():
                if key != "self":
                    i, j = _pair_key(key, n)
                    if i == x:
                        known[(x, j)] = _unb64(v, "seed")
    d = inputs[u1[0]].masked.shape[0]
    total = np.zeros(d, dtype=np.uint32)
    for a in u1:
        total += inputs[a].masked
    for a in u1:
        i = index[a]
        seed = known.get((i, 0)) or recover_secret(self_shares[i], params.threshold)
        _check(seed, inputs[a].commitments.get("self"), ctx, f"self:{a}", a)
        total -= prg(seed, d)
        for b in dropped:
            j = index[b]
            s = known.get((i, j)) or recover_secret(pair_shares.get((i, j), []), params.threshold)
            _check(s, inputs[a].commitments.get(str(j)), ctx, _pair_label(a, b), a)
            if a < b:
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
