"""Scenario steps for the ModelMarket tests: a finished task, product settings, evaluations,
attestations, a listing, sales."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chainkit import E18, Market, payout_tree, proof_bytes
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.chain.deploy import ContractRecord, Deployment
from marketplace.chain.model_market_client import (
    ZERO_ADDRESS,
    ListingParams,
    ProductParams,
    evaluation_commitment,
    sign_attestation,
)
from marketplace.valuation.merkle import PayoutTree

MAX = 2**256 - 1
DEVELOPER, AUDITOR = 1, 2


def key(label: str) -> bytes:
    return bytes(Web3.keccak(text=f"x25519 {label}"))


@dataclass
class Product:
    """ModelMarket beside the session's TaskMarket, with developers, auditors and buyers."""

    mkt: Market
    mm: Contract
    versions: Contract
    developers: list[LocalAccount]
    auditors: list[LocalAccount]
    buyers: list[LocalAccount]
    efficacy: Contract | None = None

    @property
    def fn(self) -> Any:
        return self.mm.functions

    @property
    def chain(self) -> Any:
        return self.mkt.chain

    @property
    def requester(self) -> LocalAccount:
        return self.mkt.actors.requester

    def tx(self, fn: Any, who: LocalAccount) -> Any:
        return self.chain.tx(fn, who)

    # --- a finished task ------------------------------------------------------------------------
    def finished_task(
        self,
        rows: Callable[[Sequence[LocalAccount]], Sequence[tuple[str, int, int, int]]] | None = None,
        n: int = 2,
        final: bytes | None = None,
        validation: bytes | None = None,
    ) -> tuple[int, PayoutTree]:
        """A task trained by ``n`` trainers (validation commitment ``validation``), its final
        model (digest ``final``) posted, root final, claims open."""
        trainers = self.mkt.actors.trainers[:n]
        spec = self.mkt_spec(n)
        if validation is not None:
            spec = spec.with_(validation_commitment=validation)
        task_id, tree = self.mkt.finalized_task(
            trainers, rows or (lambda ts: [(t.address, 100 * E18, 500_000, 0) for t in ts]), spec
        )
        rounds = self.mkt.task(task_id)["rounds"]
        self.tx(
            self.mkt.fn.postModel(
                task_id, rounds + 1, "bafy-final", final or final_digest(task_id)
            ),
            trainers[0],
        )
        self.mkt.open_claims(task_id)
        return task_id, tree

    def mkt_spec(self, n: int) -> Any:
        from chainkit import TaskSpec

        return TaskSpec(min_trainers=n, max_trainers=max(n, 4))

    def configure(self, task_id: int, params: ProductParams | None = None) -> ProductParams:
        p = params or ProductParams(
            max_submissions=3,
            threshold_ppm=800_000,
            bounty=50 * E18,
            required_attestations=2,
            auditor_fee=5 * E18,
            eval_commit_duration=600,
            eval_reveal_duration=600,
        )
        self.tx(self.fn.configure(task_id, p.as_tuple()), self.requester)
        return p

    def submit_final(self, task_id: int) -> int:
        self.tx(self.fn.submitFinalModel(task_id, "bafy-final"), self.requester)
        return 1

    def submit(self, task_id: int, developer: LocalAccount, label: str) -> int:
        receipt = self.tx(self.fn.submit(task_id, f"bafy-{label}", digest_of(label)), developer)
        (event,) = self.chain.events(self.mm, receipt, "ModelSubmitted")
        return int(event["submission"])

    def evaluate(
        self, task_id: int, sub: int, score: int, oracles: Sequence[int] = (0, 1, 2)
    ) -> None:
        """Committee members ``oracles`` commit then reveal ``score`` for submission ``sub``."""
        members = [self.mkt.actors.oracles[i] for i in oracles]
        salts = [bytes([i + 1]) * 32 for i in range(len(members))]
        for o, salt in zip(members, salts, strict=True):
            c = evaluation_commitment(
                self.chain.chain_id, self.mm.address, task_id, sub, o.address, score, salt
            )
            self.tx(self.fn.commitEvaluation(task_id, sub, c), o)
        if len(members) < 3:
            self.chain.warp_past(self.submission(task_id, sub)["commitDeadline"])
        for o, salt in zip(members, salts, strict=True):
            self.tx(self.fn.revealEvaluation(task_id, sub, score, salt), o)
        if self.submission(task_id, sub)["decided"]:  # free the members' evaluation stake
            for o in members:
                self.tx(self.fn.settleEvaluation(task_id, sub, o.address), o)

    def attest_fn(
        self,
        task_id: int,
        sub: int,
        auditor: LocalAccount,
        approved: bool = True,
        digest: bytes | None = None,
        chain_id: int | None = None,
    ) -> Any:
        digest = digest if digest is not None else self.submission(task_id, sub)["digest"]
        sig = sign_attestation(
            auditor,
            chain_id=chain_id or self.chain.chain_id,
            contract=self.mm.address,
            task_id=task_id,
            model_digest=digest,
            report_cid=f"bafy-audit-{auditor.address[-4:]}",
            approved=approved,
        )
        return self.fn.attest(
            task_id, sub, digest, f"bafy-audit-{auditor.address[-4:]}", approved, sig
        )

    def fix_total(self, task_id: int, total: int) -> None:
        for o in self.mkt.actors.oracles[:2]:
            self.tx(self.fn.attestTotalScore(task_id, total), o)

    def approved_task(
        self, rows: Any = None, n: int = 2, *, final: bytes | None = None, score: int = 900_000
    ) -> tuple[int, PayoutTree]:
        """Finished, configured, submission 1 scored ``score`` (passing), two auditors approved,
        total score fixed."""
        task_id, tree = self.finished_task(rows, n, final)
        self.configure(task_id)
        self.submit_final(task_id)
        self.evaluate(task_id, 1, score)
        for a in self.auditors[:2]:
            self.tx(self.attest_fn(task_id, 1, a), self.developers[0])
        self.tx(self.fn.approve(task_id, 1), self.requester)
        self.fix_total(task_id, sum(e.score_ppm for e in tree.entries))
        return task_id, tree

    def listing_params(self, task_id: int, **changes: Any) -> ListingParams:
        base = {
            "task_id": task_id,
            "submission": 1,
            "price": 10 * E18,
            "license_cid": "bafy-license",
            "expiry": self.chain.now() + 10_000,
            "delivery_window": 1000,
            "royalty_window": 5000,
            "key_holder": self.requester.address,
            "requester_bps": 1000,
            "developer_bps": 500,
            "auditor_bps": 500,
            "versions": ZERO_ADDRESS,
            "version": 0,
        }
        base.update(changes)
        return ListingParams(**base)

    def list(self, task_id: int, **changes: Any) -> int:
        receipt = self.tx(
            self.fn.list(self.listing_params(task_id, **changes).as_tuple()), self.requester
        )
        (event,) = self.chain.events(self.mm, receipt, "Listed")
        return int(event["listingId"])

    def buy(self, listing_id: int, buyer: LocalAccount) -> int:
        receipt = self.tx(self.fn.buy(listing_id, key(f"buyer {buyer.address}")), buyer)
        (event,) = self.chain.events(self.mm, receipt, "Purchased")
        return int(event["saleId"])

    def deliver(self, sale_id: int) -> Any:
        return self.tx(self.fn.deliver(sale_id, f"sealed key {sale_id}".encode()), self.requester)

    def claim_royalty_fn(self, listing_id: int, tree: PayoutTree, i: int) -> Any:
        e = tree.entries[i]
        return self.fn.claimRoyalty(
            listing_id, e.index, e.account, e.amount, e.score_ppm, e.flags, proof_bytes(tree, i)
        )

    # --- views ----------------------------------------------------------------------------------
    def _named(self, fn: Any) -> dict[str, Any]:
        raw = fn.call()
        names = [c["name"] for c in fn.abi["outputs"][0]["components"]]
        return dict(zip(names, raw, strict=True))

    def submission(self, task_id: int, sub: int) -> dict[str, Any]:
        return self._named(self.fn.submission(task_id, sub))

    def product(self, task_id: int) -> dict[str, Any]:
        return self._named(self.fn.product(task_id))

    def listing(self, listing_id: int) -> dict[str, Any]:
        return self._named(self.fn.listing(listing_id))

    def sale(self, sale_id: int) -> dict[str, Any]:
        return self._named(self.fn.sale(sale_id))


def digest_of(label: str) -> bytes:
    return bytes(Web3.keccak(text=f"model {label}"))


def final_digest(task_id: int) -> bytes:
    return digest_of(f"final {task_id}")


def deployment_of(p: Product) -> Deployment:
    """A :class:`Deployment` naming the session's contracts and this ModelMarket."""
    chain = p.chain

    def rec(name: str, address: str) -> ContractRecord:
        return ContractRecord(Web3.to_checksum_address(address), chain.artifacts[name].abi)

    contracts = {
        "RewardToken": rec("RewardToken", p.mkt.token.address),
        "ParticipantRegistry": rec("ParticipantRegistry", p.mkt.registry.address),
        "TaskMarket": rec("TaskMarket", p.mkt.market.address),
        "ModelMarket": rec("ModelMarket", p.mm.address),
    }
    if p.efficacy is not None:
        contracts["EfficacyMarket"] = rec("EfficacyMarket", p.efficacy.address)
    return Deployment(chain_id=chain.chain_id, contracts=contracts)


def setup_product(mkt: Market) -> Product:
    """Deploy ModelMarket and a versions switch; register developers and auditors; approve."""
    chain, actors = mkt.chain, mkt.actors
    d = actors.deployer
    mm = chain.deploy("ModelMarket", d, mkt.market.address)
    chain.tx(mkt.registry.functions.setMarket(mm.address, True), d)  # it reserves evaluation stake
    versions = chain.deploy("ModelVersionsSwitch", d)
    efficacy = chain.deploy("EfficacyMarket", d, mkt.registry.address)
    out = actors.outsiders
    developers, auditors, buyers = (
        [out[0], out[1]],
        [out[2], out[3], out[4]],
        [out[5], actors.arbiter],
    )
    for who in [actors.requester, *out, actors.arbiter]:
        chain.tx(mkt.token.functions.approve(mm.address, MAX), who)
    for i, dev in enumerate(developers):
        chain.tx(mm.functions.register(DEVELOPER, key(f"dev{i}")), dev)
    for i, aud in enumerate(auditors):
        chain.tx(mm.functions.register(AUDITOR, key(f"aud{i}")), aud)
    for who in [actors.requester, *actors.trainers]:
        chain.tx(mkt.token.functions.approve(efficacy.address, MAX), who)
    return Product(mkt, mm, versions, developers, auditors, buyers, efficacy)


__all__ = ["Product", "digest_of", "final_digest", "key", "payout_tree", "setup_product"]
