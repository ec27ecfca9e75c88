"""The payout tree matches OpenZeppelin's ``@openzeppelin/merkle-tree`` (run with node)."""

from __future__ import annotations

import json
import subprocess

import pytest
from eth_utils.address import to_checksum_address

from marketplace.errors import ValuationError
from marketplace.toolchain import REPO_ROOT, node_binary, node_modules
from marketplace.valuation import (
    PAYOUT_LEAF_TYPES,
    LeafDomain,
    PayoutEntry,
    PayoutTree,
    compute_payouts,
    verify,
)
from marketplace.valuation.flags import Flag

JS = """
const {StandardMerkleTree} = require(process.argv[1]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(input.values, input.types);
const proofs = input.values.map((_, i) => tree.getProof(i));
console.log(JSON.stringify({root: tree.root, proofs}));
"""


DOMAIN = LeafDomain(chain_id=31337, market="0x" + "ab" * 20, task_id=7)


def openzeppelin_tree(entries: list[PayoutEntry], domain: LeafDomain) -> dict[str, object]:
    """Root and proofs from the npm library, fed the same leaves as decimal strings."""
    library = node_modules() / "@openzeppelin" / "merkle-tree"
    assert library.exists(), f"{library} missing: run scripts/bootstrap (npm install)"
    values = [
        [str(domain.chain_id), domain.market, str(domain.task_id),
         str(e.index), e.account, str(e.amount), str(e.score_ppm), str(e.flags)]
        for e in entries
    ]  # fmt: skip
    done = subprocess.run(
        [node_binary(), "-e", JS, str(library)],
        input=json.dumps({"values": values, "types": list(PAYOUT_LEAF_TYPES)}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def sample_entries(n: int) -> list[PayoutEntry]:
    scores = {f"0x{(i * 7919 + 1):040x}": (i * 37) % 11 - 2 for i in range(n)}
    flags = {a: int(Flag.FREE_RIDER) for a, s in scores.items() if s == -1}
    return list(compute_payouts(10**21 + 3, scores, flags).entries)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_root_and_proofs_match_openzeppelin_merkle_tree(n: int) -> None:
    # Prepare
    entries = sample_entries(n)

    # Execute
    ours = PayoutTree.build(entries, DOMAIN)
    theirs = openzeppelin_tree(entries, DOMAIN)

    # Assert
    assert ours.root == theirs["root"]
    assert [ours.proof(e.index) for e in entries] == theirs["proofs"]


def test_every_proof_verifies_and_a_changed_amount_does_not() -> None:
    # Prepare
    entries = sample_entries(9)
    tree = PayoutTree.build(entries, DOMAIN)

    # Execute / Assert
    for e in entries:
        assert verify(tree.root, PAYOUT_LEAF_TYPES, DOMAIN.leaf(e), tree.proof(e.index))
    e = entries[4]
    forged = (*DOMAIN.leaf(e)[:5], e.amount + 1, e.score_ppm, e.flags)
    assert not verify(tree.root, PAYOUT_LEAF_TYPES, forged, tree.proof(e.index))


@pytest.mark.parametrize(
    "other",
    [
        LeafDomain(chain_id=1, market=DOMAIN.market, task_id=DOMAIN.task_id),
        LeafDomain(chain_id=DOMAIN.chain_id, market="0x" + "cd" * 20, task_id=DOMAIN.task_id),
        LeafDomain(chain_id=DOMAIN.chain_id, market=DOMAIN.market, task_id=8),
    ],
    ids=["chain", "market", "task"],
)
def test_a_leaf_of_another_domain_does_not_verify(other: LeafDomain) -> None:
    # Prepare: the same rows, same layout, built for another chain, market or task
    entries = sample_entries(5)
    tree = PayoutTree.build(entries, DOMAIN)
    theirs = PayoutTree.build(entries, other)

    # Execute / Assert
    assert tree.root != theirs.root
    for e in entries:
        assert not verify(tree.root, PAYOUT_LEAF_TYPES, other.leaf(e), theirs.proof(e.index))


def test_leaf_domain_checksums_the_market_and_refuses_a_bad_one() -> None:
    assert LeafDomain(1, "0x" + "ab" * 20, 2).market == to_checksum_address("0x" + "ab" * 20)
    with pytest.raises(ValuationError, match="not an Ethereum address"):
        LeafDomain(1, "market", 2)
    with pytest.raises(ValuationError, match="task_id must be a uint256"):
        LeafDomain(1, "0x" + "ab" * 20, -1)


def test_dump_has_openzeppelins_standard_v1_shape() -> None:
    dump = PayoutTree.build(sample_entries(3), DOMAIN).dump()
    assert dump["format"] == "standard-v1"
    assert dump["leafEncoding"] == list(PAYOUT_LEAF_TYPES)
    assert len(dump["tree"]) == 5


def test_empty_tree_and_unknown_index_are_clear_errors() -> None:
    with pytest.raises(ValuationError, match="at least one leaf"):
        PayoutTree.build([], DOMAIN)
    with pytest.raises(ValuationError, match="no payout entry"):
        PayoutTree.build(sample_entries(2), DOMAIN).proof(99)


def test_score_that_overflows_uint32_is_refused() -> None:
    entry = PayoutEntry(0, "0x" + "1" * 40, 1, 2**32, 0)
    with pytest.raises(ValuationError, match="does not encode"):
        PayoutTree.build([entry], DOMAIN)
