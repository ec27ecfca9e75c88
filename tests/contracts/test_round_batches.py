"""TaskMarket: batched round commitments (commitRound), the direct-commit fallback, forged and
foreign leaves (challengeLeaf), and fallback pay from batched samples (proveSamples).

The leaves are signed and the trees built by the library (marketplace.crypto.update_leaf,
marketplace.protocol.round_batch), so these tests also prove the library and the contract agree
on the EIP-712 digest and the tree."""

from __future__ import annotations

from collections.abc import Sequence

from chainkit import BURN, E18, Market, Phase, TaskSpec
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.crypto.update_leaf import UpdateLeaf, leaf_digest, sign_update_leaf
from marketplace.protocol.round_batch import Batch, build_batch, check_batch, check_leaves
from marketplace.storage.cid import raw_cid

ZERO = b"\x00" * 32
MODEL = bytes(Web3.keccak(text="model after round 1"))


def leaf(
    mkt: Market, who: LocalAccount, task_id: int, round_: int, samples: int = 100
) -> UpdateLeaf:
    payload = f"update {task_id} {round_} {who.address}".encode()
    return sign_update_leaf(
        who,
        chain_id=mkt.chain.chain_id,
        task_id=task_id,
        round=round_,
        cid=raw_cid(payload),
        digest=bytes(Web3.keccak(payload)),
        num_samples=samples,
        market_address=mkt.market.address,
    )


def forged(mkt: Market, signer: LocalAccount, victim: str, task_id: int, round_: int) -> UpdateLeaf:
    """A leaf claiming ``victim`` as its trainer, signed by ``signer``."""
    real = leaf(mkt, signer, task_id, round_)
    fake = UpdateLeaf(
        chain_id=real.chain_id, task_id=task_id, round=round_, cid=real.cid, digest=real.digest,
        sender=victim, num_samples=5000,
    )  # fmt: skip
    return UpdateLeaf(**{**fake.__dict__, "signature": real.signature})


def batch(mkt: Market, task_id: int, leaves: Sequence[UpdateLeaf], order: Sequence[str]) -> Batch:
    return build_batch(leaves, join_order=order, market_address=mkt.market.address)


def commit_fn(mkt: Market, b: Batch, model: bytes = ZERO, included: Sequence[int] | None = None):
    words = list(b.included if included is None else included)
    return mkt.fn.commitRound(
        b.task_id, b.round, b.root, words, b.samples, "bafy-leaves", model, "bafy-model"
    )


def started(mkt: Market, n: int = 4, **spec: int) -> tuple[int, list[LocalAccount], list[str]]:
    trainers = mkt.actors.trainers[:n]
    task_id = mkt.create(TaskSpec(min_trainers=n, max_trainers=n, **spec))
    mkt.start(task_id, trainers)
    return task_id, trainers, [t.address for t in trainers]


def challenge_fn(mkt: Market, task_id: int, b: Batch, closer: str, lf: UpdateLeaf):
    return mkt.fn.challengeLeaf(
        task_id, b.round, closer, b.root, lf.contract_args(), lf.signature, b.proof(lf.sender)
    )


def test_commitRound_commits_every_trainer_in_one_transaction_and_ends_the_round(mkt):
    # Prepare
    task_id, trainers, order = started(mkt)
    b1 = batch(mkt, task_id, [leaf(mkt, t, task_id, 1) for t in trainers], order)
    # Execute
    receipt = mkt.chain.tx(commit_fn(mkt, b1), trainers[0])
    # Assert: the round is committed and over
    (event,) = mkt.chain.events(mkt.market, receipt, "RoundCommitted")
    assert (event["round"], event["count"], event["samples"]) == (1, 4, 400)
    assert event["root"] == b1.root and list(event["included"]) == [0b1111]
    info = mkt.task(task_id)
    assert (info["phase"], info["currentRound"], info["totalSamples"]) == (Phase.TRAINING, 2, 400)
    assert mkt.fn.updateCount(task_id, 1).call() == 4
    # Execute: round 2's batch also posts the model that starts it; the last round ends training
    b2 = batch(mkt, task_id, [leaf(mkt, t, task_id, 2) for t in trainers], order)
    receipt = mkt.chain.tx(commit_fn(mkt, b2, MODEL), trainers[1])
    # Assert
    assert mkt.chain.events(mkt.market, receipt, "ModelPosted")[0]["digest"] == MODEL
    assert mkt.fn.modelDigest(task_id, 2).call() == MODEL
    assert mkt.task(task_id)["phase"] == Phase.COMMITTING
    assert receipt["gasUsed"] < 120_000  # the 8-trainer budget of 15,000 a trainer


def test_commitRound_checks_closer_round_and_bitmap(mkt):
    task_id, trainers, order = started(mkt)
    b = batch(mkt, task_id, [leaf(mkt, t, task_id, 1) for t in trainers[:3]], order)
    outsider = mkt.actors.outsiders[0]
    mkt.chain.expect_revert(
        commit_fn(mkt, b), outsider, "TaskMarketNotJoined", task_id, outsider.address
    )
    mkt.chain.expect_revert(
        commit_fn(mkt, b, included=[]), trainers[0], "TaskMarketInvalidBitmap", task_id, 1
    )
    mkt.chain.expect_revert(
        commit_fn(mkt, b, included=[1 << 4]), trainers[0], "TaskMarketInvalidBitmap", task_id, 1
    )
    mkt.chain.expect_revert(
        commit_fn(mkt, b, included=[0]), trainers[0], "TaskMarketInvalidBitmap", task_id, 1
    )
    late = mkt.fn.commitRound(task_id, 2, b.root, list(b.included), b.samples, "", ZERO, "")
    mkt.chain.expect_revert(late, trainers[0], "TaskMarketWrongRound", task_id, 2, 1)
    mkt.chain.tx(commit_fn(mkt, b), trainers[0])
    mkt.chain.expect_revert(
        commit_fn(mkt, b), trainers[1], "TaskMarketRoundAlreadyBatched", task_id, 1
    )


def test_omitted_trainer_commits_directly_and_an_included_one_cannot_commit_twice(mkt):
    # Prepare: the closer leaves trainer 3 out
    task_id, trainers, order = started(mkt)
    b = batch(mkt, task_id, [leaf(mkt, t, task_id, 1) for t in trainers[:3]], order)
    deadline = mkt.task(task_id)["phaseDeadline"]
    mkt.chain.warp(900)  # late in the 1000 s round
    # Execute
    mkt.chain.tx(commit_fn(mkt, b), trainers[0])
    # Assert: the round stays open, with at least a quarter round for the left-out trainer
    info = mkt.task(task_id)
    assert (info["currentRound"], info["roundCommits"]) == (1, 3)
    assert info["phaseDeadline"] >= mkt.chain.now() + 250 > deadline
    direct = mkt.fn.commitUpdate(task_id, 1, "bafy-direct", Web3.keccak(text="u"), 77)
    mkt.chain.expect_revert(
        direct, trainers[1], "TaskMarketUpdateAlreadyCommitted", task_id, 1, trainers[1].address
    )
    mkt.chain.expect_revert(
        mkt.fn.advance(task_id),
        trainers[0],
        "TaskMarketTooEarly",
        task_id,
        info["phaseDeadline"] + 1,
    )
    mkt.chain.warp(200)  # past the old deadline, inside the direct window
    mkt.chain.tx(direct, trainers[3])
    mkt.chain.tx(mkt.fn.advance(task_id), trainers[3])  # everyone committed: no wait
    assert mkt.task(task_id)["currentRound"] == 2
    assert mkt.fn.updateCount(task_id, 1).call() == 4
    assert mkt.fn.fallbackOf(task_id, trainers[3].address).call()[0] == 77
    # A round with a direct commit first takes no batch (its bitmap could not be checked)
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 2, "bafy-d2", Web3.keccak(text="u2"), 5), trainers[2])
    b2 = batch(mkt, task_id, [leaf(mkt, t, task_id, 2) for t in trainers[:2]], order)
    mkt.chain.expect_revert(
        commit_fn(mkt, b2), trainers[0], "TaskMarketRoundHasDirectCommits", task_id, 2, 1
    )


def test_forged_leaf_is_challenged_the_closer_slashed_and_the_victim_commits_directly(mkt):
    # Prepare: the closer puts in a leaf for trainer 1 that trainer 1 never signed
    task_id, trainers, order = started(mkt)
    closer, victim = trainers[0], trainers[1]
    fake = forged(mkt, closer, victim.address, task_id, 1)
    leaves = [fake, *(leaf(mkt, t, task_id, 1) for t in (trainers[0], trainers[2]))]
    b = batch(mkt, task_id, leaves, order)
    mkt.chain.tx(commit_fn(mkt, b), closer)
    # The library refuses it as a peer would
    check = check_batch(
        b.leaves, root=b.root, included=b.included, samples=b.samples, join_order=order,
        chain_id=mkt.chain.chain_id, task_id=task_id, round_=1, market_address=mkt.market.address,
    )  # fmt: skip
    assert check.forged == (fake,) and check.root_matches and fake not in check.usable
    stake, burned = mkt.stake(closer.address), mkt.balance(BURN)
    genuine = b.leaves[[lf.sender for lf in b.leaves].index(trainers[2].address)]
    mkt.chain.expect_revert(
        challenge_fn(mkt, task_id, b, closer.address, genuine), victim, "TaskMarketLeafGenuine",
        task_id, 1, trainers[2].address,
    )  # fmt: skip
    wrong_closer = challenge_fn(mkt, task_id, b, trainers[2].address, fake)
    mkt.chain.expect_revert(
        wrong_closer, victim, "TaskMarketLeafNotInBatch", task_id, 1, victim.address
    )
    # Execute
    receipt = mkt.chain.tx(challenge_fn(mkt, task_id, b, closer.address, fake), victim)
    # Assert: evidence emitted, the closer's reservation slashed and bond burned
    (event,) = mkt.chain.events(mkt.market, receipt, "LeafChallenged")
    assert (event["closer"], event["trainer"], event["challenger"]) == (
        closer.address,
        victim.address,
        victim.address,
    )
    assert event["leaf"] == leaf_digest(fake, mkt.market.address)
    assert mkt.stake(closer.address) == stake - 50 * E18
    assert mkt.balance(BURN) == burned + 50 * E18 + 10 * E18  # stake (registry) + bond (market)
    info = mkt.task(task_id)
    assert (info["bondsHeld"], info["roundCommits"], info["totalSamples"]) == (30 * E18, 2, 200)
    mkt.chain.expect_revert(
        challenge_fn(mkt, task_id, b, closer.address, fake), victim, "TaskMarketCloserNotSlashable",
        task_id, closer.address,
    )  # fmt: skip
    # The victim's bit was cleared: it commits directly
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 1, "bafy-v", Web3.keccak(text="v"), 90), victim)
    assert mkt.task(task_id)["roundCommits"] == 3


def test_leaf_of_a_non_member_is_rejected_and_challengeable(mkt):
    # Prepare: a correctly signed leaf from an account that never joined
    task_id, trainers, order = started(mkt)
    outsider = mkt.actors.outsiders[0]
    foreign = leaf(mkt, outsider, task_id, 1)
    own = [leaf(mkt, t, task_id, 1) for t in trainers]
    checked = check_leaves(
        [*own, foreign], members=order, chain_id=mkt.chain.chain_id, task_id=task_id, round_=1,
        market_address=mkt.market.address,
    )  # fmt: skip
    assert set(checked.valid) == set(own) and [lf for lf, _ in checked.rejected] == [foreign]
    # A closer that puts it in the tree anyway (bits only for members) is slashed
    b = batch(mkt, task_id, own, order)
    values = [*own, foreign]
    from marketplace.valuation.merkle import StandardMerkleTree

    tree = StandardMerkleTree(
        [(leaf_digest(lf, mkt.market.address),) for lf in values], ("bytes32",)
    )
    root = bytes.fromhex(tree.root[2:])
    fn = mkt.fn.commitRound(task_id, 1, root, list(b.included), b.samples + 100, "bafy", ZERO, "")
    mkt.chain.tx(fn, trainers[0])
    proof = [bytes.fromhex(p[2:]) for p in tree.proof_at(len(values) - 1)]
    challenge = mkt.fn.challengeLeaf(
        task_id, 1, trainers[0].address, root, foreign.contract_args(), foreign.signature, proof
    )
    receipt = mkt.chain.tx(challenge, trainers[1])
    assert mkt.chain.events(mkt.market, receipt, "LeafChallenged")[0]["trainer"] == outsider.address


def test_batched_samples_are_proven_for_fallback_pay(mkt):
    # Prepare: two batched rounds, then scoring fails (nobody reveals)
    task_id, trainers, order = started(mkt, n=2)
    batches = []
    for r in (1, 2):
        b = batch(
            mkt,
            task_id,
            [leaf(mkt, t, task_id, r, samples=100 * (i + 1)) for i, t in enumerate(trainers)],
            order,
        )
        mkt.chain.tx(commit_fn(mkt, b), trainers[0])
        batches.append(b)
    mkt.chain.warp(1001)
    mkt.chain.tx(mkt.fn.advance(task_id), trainers[0])  # Committing -> Revealing
    mkt.chain.warp(1001)
    mkt.chain.tx(mkt.fn.advance(task_id), trainers[0])  # no reveal: scoring failed
    assert mkt.task(task_id)["totalSamples"] == 600
    t1 = trainers[1]

    def prove(b: Batch, who: str, signature: bytes | None = None):
        own = b.leaves[[lf.sender for lf in b.leaves].index(who)]
        return mkt.fn.proveSamples(
            task_id, b.round, trainers[0].address, b.root, own.contract_args(),
            own.signature if signature is None else signature, b.proof(who),
        )  # fmt: skip

    # Someone else's leaf, or a leaf with a bad signature, is refused
    mkt.chain.expect_revert(
        prove(batches[0], t1.address), trainers[0], "TaskMarketNotJoined", task_id, t1.address
    )
    other = batches[1].leaves[[lf.sender for lf in batches[1].leaves].index(t1.address)].signature
    mkt.chain.expect_revert(
        prove(batches[0], t1.address, other), t1, "TaskMarketInvalidSignature", task_id, t1.address
    )
    # Execute
    mkt.chain.tx(prove(batches[0], t1.address), t1)
    receipt = mkt.chain.tx(prove(batches[1], t1.address), t1)
    # Assert
    assert mkt.chain.events(mkt.market, receipt, "SamplesProven")[0]["samples"] == 400
    samples, amount = mkt.fn.fallbackOf(task_id, t1.address).call()
    assert (samples, amount) == (400, 1000 * E18 * 400 // 600)
    mkt.chain.expect_revert(
        prove(batches[0], t1.address), t1, "TaskMarketLeafSettled", task_id, 1, t1.address
    )
    before = mkt.balance(t1.address)
    mkt.chain.tx(mkt.fn.claimFallback(task_id), t1)
    assert mkt.balance(t1.address) == before + amount + 10 * E18
