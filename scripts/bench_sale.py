#!/usr/bin/env python
"""Gas per model sale at 8 and 100 trainers, and the buyer's transactions from payment to a
verified download.

For each trainer count ``n`` the script runs a real task on a fresh Anvil (or ``npx hardhat
node``): ``n`` trainers register, stake, join and commit round 1; the final model is posted; the
committee finalizes a payout table of ``n`` leaves (``compute_payouts`` → Merkle tree); then the
product flow: K and M configured, the final aggregate submitted and evaluated by commit-reveal,
two auditors attest, the requester approves, the committee fixes the total score, the model is
listed and sold ``--sales`` times (each sale delivered).

Prints ONE JSON object on stdout (logs go to stderr):

- ``sale_gas`` {"8": …, "100": …}: median gas of ``buyWithPermit`` (the buyer's one
  transaction: permit + payment + sale record) over the steady-state sales. Two buyers alternate;
  the first two sales of each listing are warm-up (they write storage from zero: the listing's
  counters, on the first listing also each buyer's permit nonce) and are reported apart as
  ``first_sale_gas``;
- ``deliver_gas``: median gas of the key holder's ``deliver`` (the price joins the gross) with
  a real sealed key envelope (a CIDv1 model CID and a 32-byte key sealed to the buyer, about 600
  bytes: calldata and the ``Delivered`` log; the sale stores its keccak256);
- ``claim_royalty_gas``: one trainer's royalty claim with its payout leaf (grows with log2 n, the
  proof length — per trainer, never per sale);
- ``sale_gas_spread``: |gas(100) - gas(8)| / gas(8) (goal ≤ 0.02) and ``sale_gas_goal_met``;
- ``buyer_transactions``: transactions the buyer sent from payment to a digest-verified download
  (goal ≤ 2), measured by its nonce around ``buy_model`` → ``deliver_sale`` → ``download_model``
  on the embedded content store;
- ``setup_seconds`` (start-up: devnet, compile, deploy) and ``task_seconds`` per n, apart.

Usage: ``.venv/bin/python scripts/bench_sale.py [--trainers 8,100] [--sales 5] [--chain anvil]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Role, TaskParams
from marketplace.chain.compiler import compile_contracts
from marketplace.chain.deploy import deploy_marketplace, deploy_product
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, advance_chain_time, start_devnet
from marketplace.chain.model_market_client import (
    ListingParams,
    ModelMarketClient,
    ProductParams,
    ProductRole,
)
from marketplace.chain.tx import send_eth
from marketplace.protocol.model_evaluation import commit_and_reveal_evaluation
from marketplace.protocol.model_sale import (
    Delivery,
    buy_model,
    deliver_sale,
    download_model,
    publish_model,
    sale_context,
    seal_delivery,
)
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore
from marketplace.valuation.merkle import LeafDomain, PayoutTree
from marketplace.valuation.payouts import compute_payouts

log = logging.getLogger("bench_sale")
E18 = 10**18
STAKE = 100 * E18
PRICE = 10 * E18


def _key(label: str) -> bytes:
    return bytes(Web3.keccak(text=f"x25519 {label}"))


def _x25519_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Bench:
    """One deployment; one task per trainer count."""

    def __init__(self, w3: Web3) -> None:
        keys = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
        self.w3 = w3
        self.deployer, self.requester = keys[0], keys[1]
        self.oracles, self.auditors, self.buyers = keys[2:5], keys[5:7], keys[7:9]
        deployment = deploy_product(
            w3, self.deployer, deploy_marketplace(w3, self.deployer, unbonding_delay=60)
        )
        self.m = Marketplace(w3, deployment)
        self.mm = ModelMarketClient(w3, deployment)
        for who in [self.requester, *self.oracles, *self.auditors, *self.buyers]:
            self.m.mint(self.deployer, who.address, 10_000 * E18)
        for i, o in enumerate(self.oracles):
            self.m.register(o, Role.ORACLE, _key(f"oracle{i}"), STAKE)
        for i, a in enumerate(self.auditors):
            self.mm.register(a, ProductRole.AUDITOR, _key(f"auditor{i}"))
        self.final_model = b"final model weights " * 64
        self.seq = 0

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def warp_to(self, timestamp: int) -> None:
        gap = timestamp - self.now() + 1
        if gap > 0:
            advance_chain_time(self.w3, gap)

    def trainers(self, n: int) -> list[LocalAccount]:
        out = []
        for _ in range(n):
            self.seq += 1
            t = Account.from_key(Web3.keccak(text=f"bench-sale-trainer-{self.seq}"))
            send_eth(self.w3, self.deployer, t.address, 10**18)
            self.m.mint(self.deployer, t.address, 1000 * E18)
            self.m.register(t, Role.TRAINER, _key(f"trainer{self.seq}"), STAKE)
            out.append(t)
        return out

    def finished_task(self, n: int) -> tuple[int, PayoutTree]:
        """A real task of ``n`` trainers, one round, finalized with an ``n``-leaf table."""
        trainers = self.trainers(n)
        params = TaskParams(
            budget=1000 * E18, model_spec_cid="bafy-spec", initial_model_cid="bafy-init",
            initial_model_digest=hashlib.sha256(b"init").digest(), config_cid="bafy-config",
            validation_commitment=hashlib.sha256(b"validation").digest(), rounds=1,
            min_trainers=n, max_trainers=n, min_stake=STAKE, join_deadline=self.now() + 10_000,
            oracles=tuple(o.address for o in self.oracles), round_duration=10_000,
            commit_duration=10_000, reveal_duration=10_000, dispute_duration=100,
        )  # fmt: skip
        task_id = self.m.create_task(self.requester, params)
        for o in self.oracles:  # consent: the committee takes its seats
            self.m.accept_seat(o, task_id)
        for t in trainers:
            self.m.join(t, task_id)
        if self.m.task(task_id).phase_enum.name == "OPEN":
            self.m.advance(self.deployer, task_id)
        for i, t in enumerate(trainers):
            digest = hashlib.sha256(f"update {task_id} {i}".encode()).digest()
            self.m.send(
                self.m.market.functions.commitUpdate(task_id, 1, f"bafy-u{i}", digest, 100), t
            )
        if self.m.task(task_id).phase_enum.name == "TRAINING":
            self.m.advance(self.deployer, task_id)
        final = hashlib.sha256(self.final_model).digest()
        self.m.post_model(trainers[0], task_id, 2, "bafy-final", final)
        totals = {t.address: 1000 + 37 * i for i, t in enumerate(trainers)}
        domain = LeafDomain(self.m.deployment.chain_id, self.m.market.address, task_id)
        tree = PayoutTree.build(compute_payouts(1000 * E18, totals).entries, domain)
        root = bytes.fromhex(tree.root[2:])
        salts = [bytes([i + 1]) * 32 for i in range(3)]
        for o, s in zip(self.oracles, salts, strict=True):
            c = self.m.score_commitment(task_id, o.address, root, "bafy-report", s)
            self.m.commit_score(o, task_id, c)
        if self.m.task(task_id).phase_enum.name == "COMMITTING":
            self.m.advance(self.deployer, task_id)
        for o, s in zip(self.oracles, salts, strict=True):
            self.m.reveal_score(o, task_id, root, "bafy-report", s)
        if self.m.task(task_id).phase_enum.name == "REVEALING":
            self.m.advance(self.deployer, task_id)
        self.warp_to(self.m.task(task_id).claims_open_at)
        return task_id, tree

    def listed(self, task_id: int, tree: PayoutTree) -> int:
        self.mm.configure(
            self.requester, task_id,
            ProductParams(max_submissions=2, threshold_ppm=800_000, required_attestations=2,
                          auditor_fee=E18, eval_commit_duration=600, eval_reveal_duration=600),
        )  # fmt: skip
        self.mm.submit_final_model(self.requester, task_id, "bafy-final")
        commit_and_reveal_evaluation(self.mm, list(self.oracles), task_id, 1, 900_000)
        digest = self.mm.submission(task_id, 1).digest
        for a in self.auditors:
            sig = self.mm.sign_attestation(a, task_id, digest, "bafy-audit", True)
            self.mm.attest(a, task_id, 1, digest, "bafy-audit", True, sig)
        self.mm.approve(self.requester, task_id, 1)
        total = sum(e.score_ppm for e in tree.entries)
        for o in self.oracles[:2]:
            self.mm.attest_total_score(o, task_id, total)
        return self.mm.list_model(
            self.requester,
            ListingParams(
                task_id=task_id, submission=1, price=PRICE, license_cid="bafy-license",
                expiry=self.now() + 100_000, delivery_window=3600, royalty_window=3600,
                key_holder=self.requester.address, requester_bps=1000, developer_bps=500,
                auditor_bps=500,
            ),
        )  # fmt: skip

    def run(self, n: int, sales: int) -> dict[str, object]:
        t0 = time.perf_counter()
        task_id, tree = self.finished_task(n)
        listing_id = self.listed(task_id, tree)
        task_seconds = time.perf_counter() - t0
        sale_gas, deliver_gas = [], []
        for i in range(sales):
            buyer = self.buyers[i % 2]
            sale_id, receipt = self.mm.buy(buyer, listing_id, _key(f"buyer{i}"))
            sale_gas.append(int(receipt["gasUsed"]))
            sealed = self.sealed_key(task_id, sale_id)
            deliver_gas.append(int(self.mm.deliver(self.requester, sale_id, sealed)["gasUsed"]))
        e = tree.entries[n // 2]
        claim = self.mm.claim_royalty(
            self.deployer, listing_id, e.claim_values(), tree.proof(e.index)
        )
        log.info("n=%d: task and listing in %.1fs, sale gas %s", n, task_seconds, sale_gas)
        return {
            "first_sale_gas": sale_gas[0],
            "sale_gas": int(statistics.median(sale_gas[2:])),
            "deliver_gas": int(statistics.median(deliver_gas[2:])),
            "sealed_key_bytes": len(sealed),
            "claim_royalty_gas": int(claim["gasUsed"]),
            "proof_length": len(tree.proof(e.index)),
            "task_seconds": round(task_seconds, 2),
            "listing_id": listing_id,
            "task_id": task_id,
        }

    def sealed_key(self, task_id: int, sale_id: int) -> bytes:
        """A real delivery envelope for a sale (what ``deliver_sale`` records)."""
        sale = self.mm.sale(sale_id)
        context = sale_context(self.mm.chain_id, task_id, sale_id, self.requester.address)
        delivery = Delivery(str(raw_cid(self.final_model)), bytes(range(32)))
        return seal_delivery(
            delivery, buyer=sale.buyer, buyer_public=sale.buyer_key, context=context
        )

    def buyer_transactions(self, listing_id: int, task_id: int) -> int:
        """The buyer's transactions from payment to a digest-verified download."""
        buyer = self.buyers[0]
        key = X25519PrivateKey.generate()
        with tempfile.TemporaryDirectory() as tmp:
            store = EmbeddedStore(tmp)
            model_cid, content_key = publish_model(
                store, self.final_model, chain_id=self.mm.chain_id, task_id=task_id
            )
            before = self.w3.eth.get_transaction_count(buyer.address)
            sale_id = buy_model(self.mm, buyer, listing_id, _x25519_public(key))
            deliver_sale(
                self.mm,
                self.requester,
                sale_id,
                model_cid=model_cid,
                content_key=content_key,
            )
            model = download_model(
                self.mm, store, buyer=buyer.address, buyer_private=key, sale_id=sale_id
            )
            assert model == self.final_model
            return self.w3.eth.get_transaction_count(buyer.address) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", default="8,100")
    parser.add_argument("--sales", type=int, default=6)
    parser.add_argument("--chain", default="anvil", choices=("anvil", "hardhat"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    counts = [int(x) for x in args.trainers.split(",")]
    t0 = time.perf_counter()
    compile_contracts()
    with tempfile.TemporaryDirectory() as tmp:
        node = start_devnet(args.chain, log_path=Path(tmp) / "devnet.log")
        try:
            w3 = connect(node.rpc_url)
            bench = Bench(w3)
            setup_seconds = time.perf_counter() - t0
            per_n = {str(n): bench.run(n, max(args.sales, 3)) for n in counts}
            first = per_n[str(counts[0])]
            buyer_txs = bench.buyer_transactions(int(first["listing_id"]), int(first["task_id"]))
        finally:
            node.stop()
    gas = {k: v["sale_gas"] for k, v in per_n.items()}
    lo, hi = str(counts[0]), str(counts[-1])
    spread = abs(int(gas[hi]) - int(gas[lo])) / int(gas[lo])
    out = {
        "sale_gas": gas,
        "first_sale_gas": {k: v["first_sale_gas"] for k, v in per_n.items()},
        "deliver_gas": {k: v["deliver_gas"] for k, v in per_n.items()},
        "sealed_key_bytes": first["sealed_key_bytes"],
        "claim_royalty_gas": {k: v["claim_royalty_gas"] for k, v in per_n.items()},
        "proof_length": {k: v["proof_length"] for k, v in per_n.items()},
        "sale_gas_spread": round(spread, 6),
        "sale_gas_goal_met": spread <= 0.02,
        "buyer_transactions": buyer_txs,
        "buyer_transactions_goal_met": buyer_txs <= 2,
        "setup_seconds": round(setup_seconds, 2),
        "task_seconds": {k: v["task_seconds"] for k, v in per_n.items()},
        "chain": args.chain,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
