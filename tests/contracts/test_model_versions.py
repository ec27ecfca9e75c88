"""ModelVersions on real Anvil: registration, versions and their committee quorum, consent
withdrawal and its deadline, the missed-deadline penalty, retention expiry and renewal — through
the contract directly and through the Python client (VersionsClient)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from chainkit import E18, Chain, Market, TaskSpec
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import ContractRecord, Deployment
from marketplace.chain.versions_client import Reason, RetentionTerms, VersionsClient
from marketplace.errors import TransactionRevertedError

TRAINED, UNLEARNED, RENEWED = 0, 1, 2
FINAL = Web3.keccak(text="final model")
UNLEARNED_DIGEST = Web3.keccak(text="unlearned model")
DEPOSIT, PENALTY, WINDOW, RETENTION = 50 * E18, 20 * E18, 1000, 10_000


@pytest.fixture(scope="module", autouse=True)
def versions(chain: Chain, mkt: Market) -> Contract:
    """Deployed once for the module, before the per-test snapshot (module scope runs first)."""
    return chain.deploy("ModelVersions", mkt.actors.deployer, mkt.market.address)


@dataclass
class World:
    chain: Chain
    mkt: Market
    v: Contract
    task: int
    trainers: list[LocalAccount]

    @property
    def fn(self):  # type: ignore[no-untyped-def]
        return self.v.functions

    @property
    def requester(self) -> LocalAccount:
        return self.mkt.actors.requester

    @property
    def oracles(self) -> list[LocalAccount]:
        return self.mkt.actors.oracles

    def terms(self, **changes: int) -> tuple[object, ...]:
        t = {
            "deposit": DEPOSIT, "penalty": PENALTY, "expiry": self.chain.now() + RETENTION,
            "window": WINDOW, "quorum": 2, **changes,
        }  # fmt: skip
        return (
            self.mkt.token.address, t["deposit"], t["penalty"], t["expiry"], t["window"],
            t["quorum"],
        )  # fmt: skip

    def register(self) -> None:
        self.chain.tx(self.mkt.token.functions.approve(self.v.address, DEPOSIT), self.requester)
        self.chain.tx(self.fn.registerTask(self.task, self.terms()), self.requester)

    def record(self, parent: int, reason: int, excludes: int, digest: bytes) -> int:
        receipt = self.chain.tx(
            self.fn.recordVersion(self.task, parent, reason, excludes, digest, "bafy-v"),
            self.requester,
        )
        (event,) = self.chain.events(self.v, receipt, "VersionRecorded")
        return int(event["version"])

    def validate(self, version: int) -> None:
        for o in self.oracles[:2]:
            self.chain.tx(self.fn.attestVersion(self.task, version), o)

    def sellable(self, version: int) -> bool:
        return bool(self.fn.isSellable(self.task, version).call())


@pytest.fixture
def world(chain: Chain, mkt: Market, versions: Contract) -> World:
    """A task trained for 2 rounds by 3 trainers with its final model posted."""
    trainers = mkt.actors.trainers[:3]
    task = mkt.create(TaskSpec(rounds=2, min_trainers=2, max_trainers=3))
    mkt.start(task, trainers)
    mkt.train(task, trainers)
    chain.tx(mkt.fn.postModel(task, 3, "bafy-final", FINAL), trainers[0])
    return World(chain, mkt, versions, task, trainers)


@pytest.fixture
def registered(world: World) -> World:
    """``world`` registered, with version 1 (the trained model) validated."""
    world.register()
    assert world.record(0, TRAINED, 0, FINAL) == 1
    world.validate(1)
    return world


def test_registerTask_checks_the_requester_and_terms_and_takes_the_deposit(world: World) -> None:
    c, fn, req = world.chain, world.fn, world.requester
    outsider = world.mkt.actors.outsiders[0]
    c.expect_revert(fn.registerTask(world.task, world.terms()), outsider,
                    "ModelVersionsNotRequester", world.task, outsider.address)  # fmt: skip
    c.expect_revert(fn.registerTask(99, world.terms()), req, "TaskMarketUnknownTask", 99)
    now = c.now()
    for changes, code in [
        ({"expiry": now - 1}, 1), ({"window": 0}, 2), ({"quorum": 0}, 3), ({"quorum": 4}, 3),
        ({"deposit": PENALTY - 1}, 4),
    ]:  # fmt: skip
        c.expect_revert(fn.registerTask(world.task, world.terms(**changes)), req,
                        "ModelVersionsInvalidTerms", code)  # fmt: skip
    c.expect_revert(fn.recordVersion(world.task, 0, TRAINED, 0, FINAL, "x"), req,
                    "ModelVersionsUnknownTask", world.task)  # fmt: skip
    fot = c.deploy("FeeOnTransferToken", req)
    c.tx(fot.functions.mint(req.address, DEPOSIT), req)
    c.tx(fot.functions.approve(world.v.address, DEPOSIT), req)
    fot_terms = (fot.address, *world.terms()[1:])
    c.expect_revert(fn.registerTask(world.task, fot_terms), req, "ModelVersionsFeeOnTransfer",
                    fot.address, DEPOSIT, DEPOSIT * 99 // 100)  # fmt: skip
    before = world.mkt.token.functions.balanceOf(req.address).call()

    world.register()

    assert world.mkt.token.functions.balanceOf(world.v.address).call() == DEPOSIT
    assert world.mkt.token.functions.balanceOf(req.address).call() == before - DEPOSIT
    c.expect_revert(fn.registerTask(world.task, world.terms()), req,
                    "ModelVersionsAlreadyRegistered", world.task)  # fmt: skip


def test_a_version_counts_only_once_a_committee_quorum_attests_it(world: World) -> None:
    c, fn, req, task = world.chain, world.fn, world.requester, world.task
    world.register()
    outsider = world.mkt.actors.outsiders[0]
    other = Web3.keccak(text="other")
    c.expect_revert(fn.recordVersion(task, 0, TRAINED, 0, other, "x"), req,
                    "ModelVersionsNotFinalModel", task, other, FINAL)  # fmt: skip
    c.expect_revert(fn.recordVersion(task, 0, TRAINED, 0, b"\0" * 32, "x"), req,
                    "ModelVersionsZeroDigest")  # fmt: skip
    c.expect_revert(fn.recordVersion(task, 0, TRAINED, 0, FINAL, "x"), outsider,
                    "ModelVersionsNotProposer", task, outsider.address)  # fmt: skip
    c.expect_revert(fn.recordVersion(task, 7, RENEWED, 0, FINAL, "x"), req,
                    "ModelVersionsUnknownVersion", task, 7)  # fmt: skip

    assert world.record(0, TRAINED, 0, FINAL) == 1
    assert not world.sellable(1)
    c.tx(fn.attestVersion(task, 1), world.oracles[0])
    assert not world.sellable(1)  # 1 of 2
    c.expect_revert(fn.attestVersion(task, 1), world.oracles[0],
                    "ModelVersionsAlreadyAttested", task, 1, world.oracles[0].address)  # fmt: skip
    c.expect_revert(fn.attestVersion(task, 1), outsider,
                    "ModelVersionsNotCommittee", task, outsider.address)  # fmt: skip
    c.expect_revert(fn.attestVersion(task, 2), world.oracles[1],
                    "ModelVersionsUnknownVersion", task, 2)  # fmt: skip
    receipt = c.tx(fn.attestVersion(task, 1), world.oracles[1])

    assert c.events(world.v, receipt, "VersionValidated") == [{"taskId": task, "version": 1}]
    assert world.sellable(1)
    assert not world.fn.isSellable(task, 0).call()
    assert not world.fn.isSellable(task + 1, 1).call()
    # Lineage: an unlearned version needs a withdrawal to exclude; renewed ones a parent.
    for parent, reason, excludes in [(1, UNLEARNED, 1), (0, RENEWED, 0), (1, TRAINED, 1)]:
        c.expect_revert(fn.recordVersion(task, parent, reason, excludes, FINAL, "x"), req,
                        "ModelVersionsInvalidLineage", task, reason, parent, excludes)  # fmt: skip
    # A committee member or a remaining trainer may propose too (the network acts if the
    # requester does not); a trainer that withdrew may not.
    c.tx(fn.recordVersion(task, 1, RENEWED, 0, FINAL, "x"), world.trainers[0])
    c.tx(fn.requestWithdrawal(task), world.trainers[1])
    c.expect_revert(
        fn.recordVersion(task, 1, RENEWED, 0, FINAL, "x"),
        world.trainers[1],
        "ModelVersionsNotProposer",
        task,
        world.trainers[1].address,
    )
    c.tx(fn.recordVersion(task, 1, RENEWED, 0, FINAL, "x"), world.oracles[2])


def test_withdrawal_has_a_deadline_after_which_versions_with_its_data_are_not_sellable(
    registered: World,
) -> None:
    w, c, fn, task = registered, registered.chain, registered.fn, registered.task
    leaver = w.trainers[1]
    outsider = w.mkt.actors.outsiders[0]
    c.expect_revert(fn.requestWithdrawal(task), outsider,
                    "ModelVersionsNotTrainer", task, outsider.address)  # fmt: skip

    receipt = c.tx(fn.requestWithdrawal(task), leaver)

    (event,) = c.events(w.v, receipt, "WithdrawalRequested")
    deadline = c.now() + WINDOW
    assert event == {"taskId": task, "withdrawalId": 1, "trainer": leaver.address,
                     "deadline": deadline}  # fmt: skip
    assert fn.hasWithdrawn(task, leaver.address).call()
    assert fn.withdrawalOf(task, leaver.address).call() == 1
    c.expect_revert(fn.requestWithdrawal(task), leaver,
                    "ModelVersionsAlreadyWithdrawn", task, leaver.address)  # fmt: skip
    c.expect_revert(fn.claimMissedDeadline(task), leaver,
                    "ModelVersionsDeadlineNotPassed", task, deadline)  # fmt: skip
    assert w.sellable(1)  # still before the deadline
    v2 = w.record(1, UNLEARNED, 1, UNLEARNED_DIGEST)
    w.validate(v2)
    assert fn.isHonoured(task, 1).call()
    c.warp_past(deadline)
    assert not w.sellable(1)  # trained with the withdrawn data, past the deadline
    assert w.sellable(v2)
    c.expect_revert(fn.claimMissedDeadline(task), leaver, "ModelVersionsDeadlineMet", task, 1)
    c.expect_revert(fn.claimMissedDeadline(task), w.trainers[0],
                    "ModelVersionsNoWithdrawal", task, w.trainers[0].address)  # fmt: skip


def test_a_missed_deadline_pays_the_penalty_from_the_requester_deposit(registered: World) -> None:
    w, c, fn, task = registered, registered.chain, registered.fn, registered.task
    leaver = w.trainers[2]
    c.tx(fn.requestWithdrawal(task), leaver)
    deadline = fn.withdrawal(task, 1).call()[2]
    c.warp_past(deadline)
    v2 = w.record(1, UNLEARNED, 1, UNLEARNED_DIGEST)
    w.validate(v2)  # too late
    balance = w.mkt.token.functions.balanceOf(leaver.address).call()

    receipt = c.tx(fn.claimMissedDeadline(task), leaver)

    assert c.events(w.v, receipt, "PenaltyPaid")[0]["amount"] == PENALTY
    assert w.mkt.token.functions.balanceOf(leaver.address).call() == balance + PENALTY
    assert fn.taskState(task).call()[2] == DEPOSIT - PENALTY
    assert not fn.isHonoured(task, 1).call()
    assert w.sellable(v2) and not w.sellable(1)
    c.expect_revert(fn.claimMissedDeadline(task), leaver, "ModelVersionsPenaltyPaid", task, 1)


def test_nothing_sells_after_expiry_until_the_remaining_owners_renew(registered: World) -> None:
    w, c, fn, task, req = (
        registered,
        registered.chain,
        registered.fn,
        registered.task,
        registered.requester,
    )
    expiry = fn.taskState(task).call()[4]
    c.tx(fn.requestWithdrawal(task), w.trainers[0])
    v2 = w.record(1, UNLEARNED, 1, UNLEARNED_DIGEST)
    w.validate(v2)
    c.warp_past(expiry)
    assert not w.sellable(v2) and not w.sellable(1)
    c.expect_revert(fn.proposeRenewal(task, expiry + 1), w.trainers[1],
                    "ModelVersionsNotRequester", task, w.trainers[1].address)  # fmt: skip
    c.expect_revert(
        fn.proposeRenewal(task, expiry), req, "ModelVersionsInvalidRenewal", task, expiry
    )
    c.expect_revert(
        fn.approveRenewal(task, 1), w.trainers[1], "ModelVersionsNoPendingRenewal", task, 1
    )
    new_expiry = c.now() + RETENTION

    c.tx(fn.proposeRenewal(task, new_expiry), req)
    c.expect_revert(
        fn.approveRenewal(task, 2), w.trainers[1], "ModelVersionsNoPendingRenewal", task, 2
    )
    c.expect_revert(fn.approveRenewal(task, 1), w.trainers[0],
                    "ModelVersionsAlreadyWithdrawn", task, w.trainers[0].address)  # fmt: skip
    outsider = w.mkt.actors.outsiders[0]
    c.expect_revert(fn.approveRenewal(task, 1), outsider,
                    "ModelVersionsNotTrainer", task, outsider.address)  # fmt: skip
    c.tx(fn.approveRenewal(task, 1), w.trainers[1])
    c.expect_revert(fn.approveRenewal(task, 1), w.trainers[1],
                    "ModelVersionsAlreadyApproved", task, w.trainers[1].address)  # fmt: skip
    assert not w.sellable(v2)  # one remaining owner of two
    receipt = c.tx(fn.approveRenewal(task, 1), w.trainers[2])

    assert c.events(w.v, receipt, "RetentionRenewed") == [
        {"taskId": task, "nonce": 1, "expiry": new_expiry}
    ]
    assert w.sellable(v2)
    assert not w.sellable(1)  # still holds the withdrawn owner's data


def test_an_approver_who_withdraws_takes_its_approval_back(registered: World) -> None:
    w, c, fn, task = registered, registered.chain, registered.fn, registered.task
    expiry = fn.taskState(task).call()[4]
    c.tx(fn.proposeRenewal(task, expiry + 5000), w.requester)
    c.tx(fn.approveRenewal(task, 1), w.trainers[0])
    c.tx(fn.approveRenewal(task, 1), w.trainers[1])

    receipt = c.tx(fn.requestWithdrawal(task), w.trainers[1])

    assert len(c.events(w.v, receipt, "RenewalApprovalRevoked")) == 1
    assert fn.taskState(task).call()[4] == expiry  # 1 approval of 2 remaining owners
    receipt = c.tx(fn.approveRenewal(task, 1), w.trainers[2])
    assert fn.taskState(task).call()[4] == expiry + 5000


def test_the_requester_reclaims_the_deposit_only_after_expiry_and_claims(registered: World) -> None:
    w, c, fn, task, req = (
        registered,
        registered.chain,
        registered.fn,
        registered.task,
        registered.requester,
    )
    c.tx(fn.requestWithdrawal(task), w.trainers[0])
    state = fn.taskState(task).call()
    deadline = fn.withdrawal(task, 1).call()[2]
    unlock = max(state[4], deadline + WINDOW)
    c.expect_revert(fn.reclaimDeposit(task), req, "ModelVersionsDepositLocked", task, unlock)
    c.expect_revert(fn.reclaimDeposit(task), w.trainers[0],
                    "ModelVersionsNotRequester", task, w.trainers[0].address)  # fmt: skip
    c.expect_revert(
        fn.withdrawal(task, 2), req, "ModelVersionsNoWithdrawal", task, "0x" + "00" * 20
    )
    c.warp_past(unlock)
    balance = w.mkt.token.functions.balanceOf(req.address).call()

    receipt = c.tx(fn.reclaimDeposit(task), req)

    assert c.events(w.v, receipt, "DepositReclaimed")[0]["amount"] == DEPOSIT
    assert w.mkt.token.functions.balanceOf(req.address).call() == balance + DEPOSIT
    assert w.mkt.token.functions.balanceOf(w.v.address).call() == 0


def test_python_client_drives_a_withdrawal_end_to_end(world: World) -> None:
    # Prepare: the chainkit deployment seen through the library's clients.
    m = world.mkt
    deployment = Deployment(
        chain_id=world.chain.chain_id,
        contracts={
            name: ContractRecord(c.address, world.chain.artifacts[name].abi)
            for name, c in [
                ("RewardToken", m.token),
                ("ParticipantRegistry", m.registry),
                ("TaskMarket", m.market),
                ("ModelVersions", world.v),
            ]
        },
    )
    client = VersionsClient(Marketplace(world.chain.w3, deployment))
    task, leaver = world.task, world.trainers[1]
    terms = RetentionTerms(
        retention_expiry=world.chain.now() + RETENTION, quorum=2, unlearn_window=WINDOW,
        deposit=DEPOSIT, miss_penalty=PENALTY,
    )  # fmt: skip
    # Execute
    client.register_task(world.requester, task, terms)
    v1 = client.record_version(world.requester, task, parent=0, reason=Reason.TRAINED,
                               excludes=0, digest=FINAL, cid="bafy-final")  # fmt: skip
    for o in world.oracles[:2]:
        client.attest_version(o, task, v1)
    withdrawal = client.request_withdrawal(leaver, task)
    world.chain.warp_past(withdrawal.deadline)
    paid = client.claim_missed_deadline(leaver, task)
    # Assert
    assert client.state(task).withdrawal_count == 1
    assert client.versions(task)[0].validated and client.version_cid(task, v1) == "bafy-final"
    assert client.withdrawals(task)[0].trainer == leaver.address
    assert client.withdrawals(task)[0].penalty_paid and paid == PENALTY
    assert client.has_withdrawn(task, leaver.address)
    assert not client.is_sellable(task, v1)
    with pytest.raises(TransactionRevertedError, match="ModelVersionsPenaltyPaid"):
        client.claim_missed_deadline(leaver, task)


def test_calibration_updates_are_committed_once_per_round_by_remaining_trainers(
    registered: World,
) -> None:
    # Prepare: trainer 1 withdraws; trainers 0 and 2 remain.
    w, c, fn, task = registered, registered.chain, registered.fn, registered.task
    stay, leaver, other = w.trainers
    digest = Web3.keccak(text="calibration update")
    c.expect_revert(fn.commitCalibration(task, 1, 1, digest, "bafy-c"), stay,
                    "ModelVersionsUnknownWithdrawal", task, 1)  # fmt: skip
    c.tx(fn.requestWithdrawal(task), leaver)

    # Execute
    receipt = c.tx(fn.commitCalibration(task, 1, 1, digest, "bafy-c"), stay)

    # Assert: one event with the block time, the digest stored, one commit per round each.
    (event,) = c.events(w.v, receipt, "CalibrationCommitted")
    assert event == {"taskId": task, "excludes": 1, "trainer": stay.address, "round": 1,
                     "digest": digest, "cid": "bafy-c", "committedAt": c.now()}  # fmt: skip
    assert fn.calibrationOf(task, 1, 1, stay.address).call() == digest
    assert fn.calibrationOf(task, 1, 2, stay.address).call() == bytes(32)
    c.expect_revert(fn.commitCalibration(task, 1, 1, Web3.keccak(text="other"), "bafy-d"), stay,
                    "ModelVersionsCalibrationCommitted", task, 1, 1, stay.address)  # fmt: skip
    c.tx(fn.commitCalibration(task, 1, 2, digest, "bafy-c"), stay)  # the next round is open
    c.expect_revert(fn.commitCalibration(task, 1, 1, digest, "bafy-c"), leaver,
                    "ModelVersionsAlreadyWithdrawn", task, leaver.address)  # fmt: skip
    outsider = w.mkt.actors.outsiders[0]
    c.expect_revert(fn.commitCalibration(task, 1, 1, digest, "bafy-c"), outsider,
                    "ModelVersionsNotTrainer", task, outsider.address)  # fmt: skip
    c.expect_revert(fn.commitCalibration(task, 1, 1, bytes(32), "bafy-c"), other,
                    "ModelVersionsZeroDigest")  # fmt: skip
    c.expect_revert(fn.commitCalibration(task, 2, 1, digest, "bafy-c"), other,
                    "ModelVersionsUnknownWithdrawal", task, 2)  # fmt: skip


def test_every_model_versions_error_is_asserted_in_this_file(chain: Chain) -> None:
    import re
    from pathlib import Path

    errors = {
        item["name"]
        for item in chain.artifacts["ModelVersions"].abi
        if item["type"] == "error" and item["name"].startswith("ModelVersions")
    }
    asserted = set(re.findall(r'"(ModelVersions\w+)"', Path(__file__).read_text()))
    assert sorted(errors - asserted) == []


def test_gas_per_call_and_isSellable_does_not_grow_with_withdrawals(registered: World) -> None:
    w, c, fn, task = registered, registered.chain, registered.fn, registered.task

    def view_gas(version: int) -> int:
        data = fn.isSellable(task, version)._encode_transaction_data()
        return int(c.w3.eth.estimate_gas({"to": w.v.address, "data": data}))

    used: dict[str, list[int]] = {"requestWithdrawal": [], "attestVersion": []}
    sellable_gas = []
    for t in w.trainers:
        used["requestWithdrawal"].append(c.tx(fn.requestWithdrawal(task), t)["gasUsed"])
        sellable_gas.append(view_gas(1))
    receipt = c.tx(fn.recordVersion(task, 1, UNLEARNED, 3, UNLEARNED_DIGEST, "bafy"), w.requester)
    for o in w.oracles[:2]:
        used["attestVersion"].append(c.tx(fn.attestVersion(task, 2), o)["gasUsed"])
    print(used, {"recordVersion": receipt["gasUsed"], "isSellable": sellable_gas})

    assert len(set(sellable_gas)) == 1  # 1, 2 or 3 withdrawals: the same cost
    assert sellable_gas[0] < 40_000
    assert max(used["requestWithdrawal"]) < 150_000
    assert max(used["attestVersion"]) < 150_000
