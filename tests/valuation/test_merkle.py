"""The payout tree matches OpenZeppelin's ``@openzeppelin/merkle-tree`` (run with node)."""

from __future__ import annotations

import json
import subprocess

import pytest

from marketplace.errors import ValuationError
from marketplace.toolchain import REPO_ROOT, node_binary, node_modules
from marketplace.valuation import (
    PAYOUT_LEAF_TYPES,
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


def openzeppelin_tree(entries: list[PayoutEntry]) -> dict[str, object]:
    """Root and proofs from the npm library, fed the same leaves as decimal strings."""
    library = node_modules() / "@openzeppelin" / "merkle-tree"
    assert library.exists(), f"{library} missing: run scripts/bootstrap (npm install)"
    values = [
        [str(e.index), e.account, str(e.amount), str(e.score_ppm), str(e.flags)] for e in entries
    ]
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
    ours = PayoutTree.build(entries)
    theirs = openzeppelin_tree(entries)

    # Assert
    assert ours.root == theirs["root"]
    assert [ours.proof(e.index) for e in entries] == theirs["proofs"]


def test_every_proof_verifies_and_a_changed_amount_does_not() -> None:
    # Prepare
    entries = sample_entries(9)
    tree = PayoutTree.build(entries)

    # Execute / Assert
    for e in entries:
        assert verify(tree.root, PAYOUT_LEAF_TYPES, e.leaf(), tree.proof(e.index))
    e = entries[4]
    forged = (e.index, e.account, e.amount + 1, e.score_ppm, e.flags)
    assert not verify(tree.root, PAYOUT_LEAF_TYPES, forged, tree.proof(e.index))


def test_dump_has_openzeppelins_standard_v1_shape() -> None:
    dump = PayoutTree.build(sample_entries(3)).dump()
    assert dump["format"] == "standard-v1"
    assert dump["leafEncoding"] == list(PAYOUT_LEAF_TYPES)
    assert len(dump["tree"]) == 5


def test_empty_tree_and_unknown_index_are_clear_errors() -> None:
    with pytest.raises(ValuationError, match="at least one leaf"):
        PayoutTree.build([])
    with pytest.raises(ValuationError, match="no payout entry"):
        PayoutTree.build(sample_entries(2)).proof(99)


def test_score_that_overflows_uint32_is_refused() -> None:
    entry = PayoutEntry(0, "0x" + "1" * 40, 1, 2**32, 0)
    with pytest.raises(ValuationError, match="does not encode"):
        PayoutTree.build([entry])
