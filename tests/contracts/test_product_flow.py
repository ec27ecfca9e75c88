"""The demo's continuation as one procedure, on the devnet and Kubo: a real trained model is
scored by the committee, audited by two auditors, listed, bought and downloaded by two buyers,
and every trainer's royalties are claimed with its payout leaf."""

from __future__ import annotations

import hashlib

import pytest
from chainkit import E18
from productkit import deployment_of, setup_product

from marketplace.chain.model_market_client import ModelMarketClient
from marketplace.errors import DigestMismatchError
from marketplace.fl.data import canonical_digest, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.serialization import dump_weights
from marketplace.fl.train import TrainConfig, train_centralized
from marketplace.protocol.product_flow import new_party, run_product_phase

SPEC = ModelSpec(arch="logreg", input_dim=64, num_classes=10, seed=0)


def test_the_product_phase_pays_royalties_by_score_after_two_verified_sales(mkt, kubo_store):
    # Prepare: three trainers with scores 1.0, 0.5 and a flagged 0
    splits = split_dataset(load_dataset("digits"), seed=0)
    weights, _ = train_centralized(SPEC, splits.train, TrainConfig(epochs=5, lr=0.1, seed=0))
    blob = dump_weights(weights)
    pm = setup_product(mkt)
    scores = [1_000_000, 500_000, 0]

    def rows(ts):
        return [(t.address, 100 * E18, s, 0 if s else 4) for t, s in zip(ts, scores, strict=True)]

    val = splits.validation
    committed = bytes.fromhex(canonical_digest(val.x, val.y))
    task_id, tree = pm.finished_task(
        rows, n=3, final=hashlib.sha256(blob).digest(), validation=committed
    )
    client = ModelMarketClient(pm.chain.w3, deployment_of(pm))
    parties = {
        "requester": new_party(pm.requester),
        "oracles": [new_party(o) for o in mkt.actors.oracles],
        "auditors": [new_party(a) for a in pm.auditors[:2]],
        "buyers": [new_party(b) for b in pm.buyers],
    }
    # a validation set other than the committed one is refused before any transaction
    with pytest.raises(DigestMismatchError, match="on-chain commitment"):
        run_product_phase(
            client, kubo_store, task_id=task_id, tree=tree, final_model=blob, model_spec=SPEC,
            x_val=val.x, y_val=(val.y + 1) % 10, price=10 * E18, **parties,
        )  # fmt: skip
    assert not client.product(task_id).configured
    # Execute
    outcome = run_product_phase(
        client, kubo_store, task_id=task_id, tree=tree, final_model=blob, model_spec=SPEC,
        x_val=val.x, y_val=val.y, price=10 * E18, **parties,
    )  # fmt: skip
    # Assert
    assert (outcome.sales, outcome.gross, outcome.downloads_verified) == (2, 20 * E18, 2)
    assert outcome.score_ppm > 800_000
    trainer_gross = 20 * E18 - 2 * E18 - 1 * E18  # requester 10%, auditors 5%
    t0, t1, t2 = (t.address for t in mkt.actors.trainers[:3])
    assert outcome.royalties[t0] == trainer_gross * 1_000_000 // 1_500_000
    assert outcome.royalties[t1] == trainer_gross * 500_000 // 1_500_000
    assert outcome.royalties[t2] == 0
