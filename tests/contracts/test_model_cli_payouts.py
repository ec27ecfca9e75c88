"""`fedmarket model refund | claim | claim-share | claim-bounty | reclaim | sweep` on the devnet
(and Kubo for the published valuation report a trainer's royalty claim reads), each as a user
runs it: dev accounts, own homes, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chainkit import E18, Vote, proof_bytes, root_bytes
from click.testing import CliRunner
from productkit import Product, deployment_of, final_digest, payout_tree, setup_product

from marketplace.chain.deploy import write_deployment
from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.protocol.identity import Identity
from marketplace.protocol.published_report import REPORT_ROUND
from node.cli import cli

# chainkit's actors are the dev keys in this order: requester 2, trainers 6.., buyers 19
REQUESTER, TRAINERS, AUDITOR, BUYER = 2, (6, 7), 16, 19

Runner = Callable[..., tuple[int, str]]


def _cli(pm: Product, anvil: Any, tmp_path: Path, ipfs: str | None = None) -> Runner:
    deployments = tmp_path / "deployments"
    write_deployment(deployment_of(pm), deployments)
    runner = CliRunner()

    def run(dev: int, *args: str) -> tuple[int, str]:
        store = ["--ipfs-api", ipfs] if ipfs else []
        result = runner.invoke(
            cli,
            ["--chain-rpc", anvil.rpc_url, "--deployments", str(deployments),
             "--home", str(tmp_path / f"home{dev}"), *store, "--dev-account", str(dev), *args],
        )  # fmt: skip
        return result.exit_code, result.output

    return run


def _one_line_error(code: int, out: str) -> str:
    assert code == 1, out
    assert out.startswith("Error: ") and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1, out
    return out


def test_an_undelivered_sale_is_refunded_from_the_cli_after_its_deadline(mkt, anvil, tmp_path):
    # Prepare: an approved, listed model; the buyer pays through the CLI, nobody delivers
    pm = setup_product(mkt)
    task_id, _ = pm.approved_task()
    listing = pm.list(task_id)
    run = _cli(pm, anvil, tmp_path)
    code, out = run(BUYER, "model", "buy", str(listing), "--json")
    assert code == 0, out
    sale = json.loads(out)["sale"]
    before = mkt.balance(mkt.actors.outsiders[5].address)
    # Execute: too early, then after the delivery deadline, then once more
    early = run(BUYER, "model", "refund", str(sale))
    pm.chain.warp_past(pm.sale(sale)["deliverBy"])
    code, out = run(BUYER, "model", "refund", str(sale), "--json")
    again = run(BUYER, "model", "refund", str(sale))
    # Assert: the date of the deadline in one line; then the price back; then refused
    line = _one_line_error(*early)
    assert "not before 20" in line and " UTC" in line and "fedmarket model refund" in line
    assert code == 0, out
    refunded = json.loads(out)
    assert refunded["sale"] == sale and refunded["amount"] == "10"
    assert mkt.balance(mkt.actors.outsiders[5].address) == before + 10 * E18
    assert pm.sale(sale)["status"] == 3  # Refunded
    assert "refunded" in _one_line_error(*again)


def _task_with_published_report(pm: Product, kubo_store: Any) -> tuple[int, Any]:
    """A task trained by two trainers, finalized on a report sealed to them and stored in Kubo
    (as the oracles publish it), its final model posted, claims open."""
    mkt = pm.mkt
    trainers = mkt.actors.trainers[:2]
    task_id = mkt.create(pm.mkt_spec(2))
    mkt.start(task_id, trainers)
    mkt.train(task_id, trainers)
    tree = payout_tree([(t.address, 100 * E18, 500_000, 0) for t in trainers], mkt.domain(task_id))
    payouts = [{"index": e.index, "account": e.account, "amount": str(e.amount),
                "score_ppm": e.score_ppm, "flags": e.flags} for e in tree.entries]  # fmt: skip
    report = json.dumps({"merkle_root": tree.root, "payouts": payouts}).encode()
    oracles = mkt.actors.oracles
    votes = {}
    for i, oracle in enumerate(oracles):
        ctx = EnvelopeContext(chain_id=pm.chain.chain_id, task_id=task_id, round=REPORT_ROUND,
                              sender=oracle.address)  # fmt: skip
        recipients = {Identity.dev(d).address: Identity.dev(d).x25519_public for d in TRAINERS}
        cid = str(kubo_store.put(seal(report, recipients=recipients, context=ctx)))
        votes[i] = Vote(root_bytes(tree), cid, bytes([i + 1]) * 32)
    mkt.score(task_id, votes)
    rounds = mkt.task(task_id)["rounds"]
    pm.tx(mkt.fn.postModel(task_id, rounds + 1, "bafy-final", final_digest(task_id)), trainers[0])
    mkt.open_claims(task_id)
    return task_id, tree


def _approved(pm: Product, kubo_store: Any) -> tuple[Product, int, Any]:
    """That task configured, submission 1 (the requester's) passed, two auditors approved, the
    total score fixed."""
    task_id, tree = _task_with_published_report(pm, kubo_store)
    pm.configure(task_id)
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 900_000)
    for a in pm.auditors[:2]:
        pm.tx(pm.attest_fn(task_id, 1, a), pm.developers[0])
    pm.tx(pm.fn.approve(task_id, 1), pm.requester)
    pm.fix_total(task_id, sum(e.score_ppm for e in tree.entries))
    return pm, task_id, tree


def test_royalties_shares_bounty_escrow_and_sweep_are_claimed_from_the_cli(
    mkt, anvil, kubo, kubo_store, tmp_path
):
    # Prepare: submission 1 (the requester's) passed, two auditors approved, listed; one sale
    # delivered (price 10: 10% requester, 5% developer, 5% auditors, 80% to the trainers)
    pm, task_id, _ = _approved(setup_product(mkt), kubo_store)
    listing = pm.list(task_id)
    run = _cli(pm, anvil, tmp_path, kubo.api_multiaddr)
    trainer = mkt.actors.trainers[0].address
    code, out = run(TRAINERS[0], "model", "claim", "--listing", str(listing))
    nothing_yet = (code, out)
    pm.deliver(pm.buy(listing, pm.buyers[0]))

    def ok(dev: int, *args: str) -> dict[str, Any]:
        code, out = run(dev, "model", *args, "--json")
        assert code == 0, out
        return json.loads(out)

    # Execute: trainer 1 claims its royalties twice; the requester and an auditor their shares;
    # the bounty; the escrow; after the royalty window, the sweep of trainer 2's royalties
    before = mkt.balance(trainer)
    accrued = pm.fn.royaltyOf(listing, 0, 500_000).call()[0]
    claimed = ok(TRAINERS[0], "claim", "--listing", str(listing))
    after = mkt.balance(trainer)
    second = run(TRAINERS[0], "model", "claim", "--listing", str(listing))
    outsider = run(BUYER, "model", "claim", "--listing", str(listing))
    req_before = mkt.balance(pm.requester.address)
    share = ok(REQUESTER, "claim-share", "--listing", str(listing))
    req_after = mkt.balance(pm.requester.address)
    share_again = run(REQUESTER, "model", "claim-share", "--listing", str(listing))
    auditor = ok(AUDITOR, "claim-share", "--listing", str(listing))
    bounty = ok(REQUESTER, "claim-bounty", "--task", str(task_id))
    reclaim = run(REQUESTER, "model", "reclaim", "--task", str(task_id))  # both fees were paid
    early_sweep = run(REQUESTER, "model", "sweep", "--listing", str(listing))
    pm.chain.warp_past(pm.listing(listing)["royaltyDeadline"])
    swept = ok(BUYER, "sweep", "--listing", str(listing))
    # Assert: each amount in tokens and what the balance moved by; refusals are one line
    assert "no royalties on listing" in _one_line_error(*nothing_yet)
    assert accrued == 4 * E18 and after - before == accrued  # 8 tokens over two equal scores
    assert claimed["amount"] == "4" and claimed["account"] == trainer and claimed["index"] == 0
    assert "already claimed its 4 tokens" in _one_line_error(*second)
    assert "has no payout leaf in task" in _one_line_error(*outsider)
    assert share["amount"] == "1.5" and req_after - req_before == 15 * E18 // 10  # 10% + 5%
    assert "fedmarket model claim-share" in _one_line_error(*share_again)
    assert auditor["amount"] == "0.25"  # 5% over two approving auditors
    assert bounty["amount"] == "50" and bounty["developer"] == pm.requester.address
    assert "fedmarket model reclaim --task" in _one_line_error(*reclaim)
    assert "fedmarket model sweep" in _one_line_error(*early_sweep)
    assert swept["amount"] == "4"  # trainer 2's unclaimed royalties go to the requester
    late = run(TRAINERS[1], "model", "claim", "--listing", str(listing))
    assert "royalty window closed" in _one_line_error(*late)


def test_a_withdrawn_trainer_claims_what_it_earned_then_gets_one_line(
    mkt, anvil, kubo, kubo_store, tmp_path
):
    # Prepare: the final model is version 1 of a real ModelVersions, listed; one sale delivered,
    # then trainer 1 withdraws consent and the withdrawal is settled on the listing
    pm, task_id, tree = _approved(setup_product(mkt), kubo_store)
    chain, req = pm.chain, pm.requester
    v = chain.deploy("ModelVersions", mkt.actors.deployer, mkt.market.address)
    chain.tx(v.functions.registerTask(
        task_id, (mkt.token.address, 0, 0, chain.now() + 100_000, 50_000, 2)), req)  # fmt: skip
    chain.tx(v.functions.recordVersion(task_id, 0, 0, 0, final_digest(task_id), "bafy-final"), req)
    for o in mkt.actors.oracles[:2]:
        chain.tx(v.functions.attestVersion(task_id, 1), o)
    listing = pm.list(task_id, versions=v.address, version=1)
    pm.deliver(pm.buy(listing, pm.buyers[0]))
    chain.tx(v.functions.requestWithdrawal(task_id), mkt.actors.trainers[0])
    e = tree.entries[0]
    pm.tx(pm.fn.settleWithdrawal(listing, e.index, e.account, e.amount, e.score_ppm, e.flags,
                                 proof_bytes(tree, 0)), pm.buyers[0])  # fmt: skip
    run = _cli(pm, anvil, tmp_path, kubo.api_multiaddr)
    # Execute: it claims what the sale before its withdrawal earned it, then once more
    code, out = run(TRAINERS[0], "model", "claim", "--listing", str(listing), "--json")
    again = run(TRAINERS[0], "model", "claim", "--listing", str(listing))
    # Assert
    assert code == 0, out
    assert json.loads(out)["amount"] == "4"
    assert "withdrew its data from task" in _one_line_error(*again)
