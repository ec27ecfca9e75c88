"""Secure aggregation: exact sums with dropouts, nothing extra revealed, bindings catch lies."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from marketplace.crypto.secagg import (
    SecAggContext,
    SecAggParams,
    SecAggTrainer,
    committee_check,
    decode_fixed,
    encode_fixed,
    masks_consistent,
    pair_seed,
    recover_secret,
    split_secret,
    unmask_sum,
)
from marketplace.crypto.secagg_round import public_key, run_round
from marketplace.errors import ConfigError, CryptoError

CTX = SecAggContext(chain_id=31337, task_id=7, round=3)
DIM = 50


def _addr(i: int) -> str:
    return "0x" + f"{i + 1:02x}" * 20


@pytest.fixture(scope="module")
def keys() -> dict[str, X25519PrivateKey]:
    return {_addr(i): X25519PrivateKey.generate() for i in range(10)}


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {_addr(i): rng.normal(0, 0.3, DIM) for i in range(10)}


def _expected(inputs: dict[str, np.ndarray], params: SecAggParams, who: list[str]) -> np.ndarray:
    enc = sum(encode_fixed(inputs[a], params).astype(np.int64) for a in who)
    return np.asarray(enc, dtype=np.float64) / 2.0**params.frac_bits


def test_fixed_point_clips_and_round_trips_within_half_a_unit() -> None:
    params = SecAggParams(clip_norm=1.0, threshold=2)
    x = np.array([3.0, -4.0])  # norm 5 -> clipped to [0.6, -0.8]

    back = decode_fixed(encode_fixed(x, params).view(np.uint32), params)

    np.testing.assert_allclose(back, [0.6, -0.8], atol=2**-17)


def test_shamir_recovers_from_any_threshold_and_catches_a_bad_share() -> None:
    secret = bytes(range(32))
    shares = split_secret(secret, [1, 2, 3, 4, 5], threshold=3)

    assert recover_secret(shares[2:], 3) == secret
    assert recover_secret([shares[4], shares[0], shares[2]], 3) == secret
    with pytest.raises(CryptoError, match="need 3"):
        recover_secret(shares[:2], 3)
    bad = [*shares[:4], type(shares[4])(shares[4].x, (shares[4].y[0] + 1, shares[4].y[1]))]
    with pytest.raises(CryptoError, match="inconsistent"):
        recover_secret(bad, 3)


def test_both_ends_derive_the_same_pair_seed_bound_to_the_round(keys) -> None:  # type: ignore[no-untyped-def]
    a, b = _addr(0), _addr(1)
    ab = pair_seed(keys[a], public_key(keys[b]), CTX, a, b)

    assert ab == pair_seed(keys[b], public_key(keys[a]), CTX, b, a)
    assert ab != pair_seed(keys[a], public_key(keys[b]), SecAggContext(31337, 7, 4), a, b)


def test_the_sum_is_exact_with_no_dropout_and_the_committee_accepts_every_input(
    keys, inputs
) -> None:  # type: ignore[no-untyped-def]
    params = SecAggParams(clip_norm=1.0, threshold=6)
    committee = {"0x" + "ee" * 20: X25519PrivateKey.generate()}

    out = run_round(inputs, keys, ctx=CTX, params=params, committee=committee)

    np.testing.assert_array_equal(out.total, _expected(inputs, params, sorted(inputs)))
    assert all(out.committee_ok.values()) and len(out.survivors) == 10


def test_the_sum_is_exact_with_3_of_10_dropped_mid_round(keys, inputs) -> None:  # type: ignore[no-untyped-def]
    params = SecAggParams(clip_norm=1.0, threshold=6)
    committee = {"0x" + "ee" * 20: X25519PrivateKey.generate()}
    early, late = {_addr(1), _addr(8)}, {_addr(4)}  # 2 never mask, 1 masks then vanishes

    out = run_round(
        inputs,
        keys,
        ctx=CTX,
        params=params,
        committee=committee,
        drop_before_masking=early,
        drop_before_unmasking=late,
    )

    survivors = sorted(a for a in inputs if a not in early)
    assert list(out.survivors) == survivors  # the late dropper's input is in the sum
    np.testing.assert_array_equal(out.total, _expected(inputs, params, survivors))


def test_too_many_dropouts_cannot_be_unmasked(keys, inputs) -> None:  # type: ignore[no-untyped-def]
    params = SecAggParams(clip_norm=1.0, threshold=6)
    committee = {"0x" + "ee" * 20: X25519PrivateKey.generate()}

    with pytest.raises(ConfigError, match="threshold 6"):
        run_round(
            inputs,
            keys,
            ctx=CTX,
            params=params,
            committee=committee,
            drop_before_unmasking={_addr(i) for i in range(5)},
        )


def _trainers(keys, params):  # type: ignore[no-untyped-def]
    roster = {a: public_key(k) for a, k in keys.items()}
    ts = {
        a: SecAggTrainer(address=a, x25519_private=k, roster=roster, ctx=CTX, params=params)
        for a, k in keys.items()
    }
    for a, t in ts.items():
        for peer, bundle in t.share_bundles().items():
            ts[peer].receive_bundle(a, bundle)
    return ts


def test_unmasking_never_reveals_a_dropped_trainers_self_mask_and_a_bad_share_is_caught(
    keys, inputs
) -> None:  # type: ignore[no-untyped-def]
    params = SecAggParams(clip_norm=1.0, threshold=6)
    ts = _trainers(keys, params)
    dropped = _addr(9)
    masked = {a: ts[a].masked_input(inputs[a]).public for a in ts if a != dropped}
    survivors = sorted(masked)

    late = _addr(3)  # masked, then gone: its self seed must come from shares
    responses = [ts[a].unmask_response(survivors, [dropped]) for a in survivors if a != late]

    for raw in responses:
        msg = json.loads(raw)
        j = str(sorted(keys).index(dropped) + 1)
        assert j not in msg["self"]  # b_j of a dropped trainer is never revealed
        assert all(not key.startswith(f"{j}>") for key in msg["pairs"])
    exact = unmask_sum(masked, responses, roster=list(keys), ctx=CTX, params=params)
    np.testing.assert_array_equal(exact, _expected(inputs, params, survivors))
    forged = json.loads(responses[0])
    victim = str(sorted(keys).index(late) + 1)
    raw = bytearray(base64.b64decode(forged["self"][victim]))
    raw[-1] ^= 1
    forged["self"][victim] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CryptoError, match=r"inconsistent|commitment"):
        unmask_sum(
            masked,
            [json.dumps(forged).encode(), *responses[1:]],
            roster=list(keys),
            ctx=CTX,
            params=params,
        )
    with pytest.raises(CryptoError, match=r"corrupt|commitment"):  # threshold shares, 1 forged
        unmask_sum(
            masked,
            [json.dumps(forged).encode(), *responses[1:6]],
            roster=list(keys),
            ctx=CTX,
            params=params,
        )
    with pytest.raises(CryptoError, match="another trainer"):
        ts[_addr(0)].receive_bundle(_addr(1), ts[_addr(1)].share_bundles()[_addr(2)])


def test_the_committee_flags_an_unclipped_input_and_a_switched_plaintext(keys, inputs) -> None:  # type: ignore[no-untyped-def]
    params = SecAggParams(clip_norm=1.0, threshold=6)
    t = SecAggTrainer(
        address=_addr(0),
        x25519_private=keys[_addr(0)],
        roster={a: public_key(k) for a, k in keys.items()},
        ctx=CTX,
        params=params,
    )
    honest = t.masked_input(inputs[_addr(0)])
    other = t.masked_input(inputs[_addr(1)])

    def check(plaintext: bytes):  # type: ignore[no-untyped-def]
        return committee_check(
            CTX,
            _addr(0),
            masked=honest.public.masked_bytes(),
            plaintext=plaintext,
            binding=honest.public.binding,
            params=params,
        )

    assert check(honest.plaintext).ok
    assert not check(other.plaintext).binding_ok  # sent one thing to peers, another to oracles
    big = honest.plaintext[:16] + (np.full(DIM, 2**16, dtype="<i4")).tobytes()  # norm sqrt(50)
    assert not check(big).within_clip
    seeds = {p: s for p, s in t._pair.items()}
    assert masks_consistent(
        honest.public.masked, honest.plaintext, sender=_addr(0), self_seed=t._self_seed,
        pair_seeds=seeds,
    )  # fmt: skip
    assert not masks_consistent(
        honest.public.masked, other.plaintext, sender=_addr(0), self_seed=t._self_seed,
        pair_seeds=seeds,
    )  # fmt: skip


def test_parameters_that_could_overflow_or_cannot_tolerate_a_dropout_are_refused() -> None:
    with pytest.raises(ConfigError, match="overflow"):
        SecAggParams(clip_norm=5000.0, threshold=6).check(10)
    with pytest.raises(ConfigError, match="threshold 10"):
        SecAggParams(clip_norm=1.0, threshold=10).check(10)


def test_secagg_terms_pick_a_majority_threshold_and_refuse_malformed_terms() -> None:
    from marketplace.crypto.secagg import SecAggTerms

    # Prepare / Execute
    terms = SecAggTerms.from_dict({"clip_norm": 0.5, "frac_bits": 16, "threshold": None})
    # Assert: a majority of the roster, a round trip, and one-line refusals
    assert terms.params(4).threshold == 3 and terms.params(10).threshold == 6
    assert SecAggTerms.from_dict(terms.to_dict()) == terms
    with pytest.raises(ConfigError, match="clip_norm > 0"):
        SecAggTerms(clip_norm=0.0)
    with pytest.raises(ConfigError, match="malformed secagg term"):
        SecAggTerms.from_dict({"clip": 1.0})
    with pytest.raises(ConfigError, match=r"must be in 2\.\.3"):
        SecAggTerms(threshold=4).params(4)
