"""Helpers for the contract tests: a lean signer, revert assertions, time travel, task scenarios.

Transactions are signed locally (eth-account) with an explicit gas limit, so a test pays three RPC
round trips per transaction; expected reverts are checked with ``eth_call`` and decoded against
every ABI (custom errors by name and arguments).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from marketplace.chain.compiler import ContractArtifact
from marketplace.chain.linking import link
from marketplace.chain.tx import DecodedRevert, RevertDecoder
from marketplace.valuation.merkle import LeafDomain, PayoutTree
from marketplace.valuation.payouts import PayoutEntry

E18 = 10**18
# Every custom error a test has seen a call revert with, as expected (see expect_revert); the
# contract suite's conftest checks at the end that each declared error is in here.
OBSERVED_REVERTS: set[str] = set()
GAS_LIMIT = 6_000_000
BURN = "0x000000000000000000000000000000000000dEaD"


class Phase:
    OPEN, TRAINING, COMMITTING, REVEALING, FINALIZED, DISPUTED, CLOSED, CANCELLED = range(8)
    FORMING = 8


class Outcome:
    NONE, SCORED, FAILED, VALIDATION_MISMATCH = range(4)


VALIDATION_MISMATCH = bytes(Web3.keccak(text="fedmarket.validation-mismatch"))
ZERO_ADDRESS = "0x" + "00" * 20


class Role:
    NONE, TRAINER, ORACLE, REQUESTER = range(4)


class UnexpectedRevert(AssertionError):
    """A transaction the test expected to succeed reverted."""


@dataclass
class Chain:
    """A ``Web3`` with the compiled artifacts, a revert decoder and a few conveniences."""

    w3: Web3
    artifacts: dict[str, ContractArtifact]
    decoder: RevertDecoder = field(init=False)
    chain_id: int = field(init=False)
    libraries: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.decoder = RevertDecoder(a.abi for a in self.artifacts.values())
        self.chain_id = self.w3.eth.chain_id

    # --- transactions -----------------------------------------------------------------------
    def tx(self, fn: ContractFunction, who: LocalAccount, *, value: int = 0) -> TxReceipt:
        """Send ``fn`` from ``who``; a revert fails the test with the decoded custom error."""
        return self._send(fn.build_transaction(self._params(who, value)), who, fn.fn_name, fn)

    def deploy(self, name: str, who: LocalAccount, *args: Any) -> Contract:
        """Deploy ``name`` (its external libraries first, once per chain)."""
        art = self.artifacts[name]
        code = link(
            art, self.artifacts, lambda lib: self.deploy(lib.name, who).address, self.libraries
        )
        factory = self.w3.eth.contract(abi=art.abi, bytecode=code)
        receipt = self._send(
            factory.constructor(*args).build_transaction(self._params(who, 0)), who, name, None
        )
        return self.at(name, receipt["contractAddress"])

    def at(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=address, abi=self.artifacts[name].abi)

    def _params(self, who: LocalAccount, value: int) -> dict[str, Any]:
        return {
            "from": who.address,
            "value": value,
            "gas": GAS_LIMIT,
            "chainId": self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(who.address, "pending"),
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }

    def _send(
        self, tx: dict[str, Any], who: LocalAccount, what: str, fn: ContractFunction | None
    ) -> TxReceipt:
        signed = who.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
        if receipt["status"] != 1:
            reason = self.why(fn, who) if fn is not None else None
            raise UnexpectedRevert(f"{what} reverted: {reason}")
        return receipt

    def why(self, fn: ContractFunction, who: LocalAccount) -> DecodedRevert | None:
        """The decoded revert of ``fn`` called by ``who`` now, or ``None`` if it would succeed."""
        try:
            fn.call({"from": who.address, "gas": GAS_LIMIT})
        except ContractLogicError as exc:
            decoded = self.decoder.decode(exc.data)  # type: ignore[arg-type]
            if decoded is None:
                raise AssertionError(
                    f"{fn.fn_name} reverted with undecodable data {exc.data!r}"
                ) from None
            return decoded
        return None

    def expect_revert(
        self, fn: ContractFunction, who: LocalAccount, error: str, *args: Any
    ) -> None:
        """Assert that ``fn`` from ``who`` reverts with custom error ``error(*args)``."""
        decoded = self.why(fn, who)
        assert decoded is not None, f"{fn.fn_name} did not revert (expected {error})"
        assert decoded.name == error, f"{fn.fn_name} reverted with {decoded}, expected {error}"
        if args:
            assert tuple(_norm(a) for a in decoded.args) == tuple(_norm(a) for a in args), (
                f"{fn.fn_name} reverted with {decoded}, expected {error}{args}"
            )
        OBSERVED_REVERTS.add(error)

    # --- time -------------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def warp(self, seconds: int) -> None:
        """Move the chain clock ``seconds`` forward and mine a block."""
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def warp_past(self, timestamp: int) -> None:
        """Mine a block strictly after ``timestamp``."""
        gap = timestamp - self.now() + 1
        self.warp(max(gap, 1))

    def snapshot(self) -> str:
        return str(self.w3.provider.make_request("evm_snapshot", [])["result"])  # type: ignore[arg-type]

    def revert_to(self, snap: str) -> None:
        result = self.w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]
        assert result.get("result") is True, f"evm_revert failed: {result}"

    # --- events -----------------------------------------------------------------------------
    @staticmethod
    def events(contract: Contract, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        ev = getattr(contract.events, name)()
        return [dict(e["args"]) for e in ev.process_receipt(receipt, errors=_DISCARD)]


def _norm(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


try:  # web3 8
    from web3.logs import DISCARD as _DISCARD
except ImportError:  # pragma: no cover
    _DISCARD = None  # type: ignore[assignment]


def chain_kind() -> str:
    return os.environ.get("FEDMARKET_TEST_CHAIN", "anvil")


def new_account(seed: int) -> LocalAccount:
    """A deterministic extra account (beyond the 20 funded dev keys)."""
    return Account.from_key(Web3.keccak(text=f"fedmarket-test-account-{seed}"))


# --- scenario ---------------------------------------------------------------------------------


@dataclass
class Actors:
    deployer: LocalAccount
    arbiter: LocalAccount
    requester: LocalAccount
    oracles: list[LocalAccount]
    trainers: list[LocalAccount]
    outsiders: list[LocalAccount]


@dataclass(frozen=True)
class Vote:
    """What one oracle commits and reveals."""

    root: bytes
    report_cid: str
    salt: bytes


def commitment(task_id: int, oracle: str, vote: Vote) -> bytes:
    """``keccak256(abi.encode(taskId, oracle, root, keccak256(bytes(reportCid)), salt))``."""
    return bytes(
        Web3.keccak(
            encode(
                ["uint256", "address", "bytes32", "bytes32", "bytes32"],
                [task_id, oracle, vote.root, Web3.keccak(text=vote.report_cid), vote.salt],
            )
        )
    )


def payout_tree(rows: Sequence[tuple[str, int, int, int]], domain: LeafDomain) -> PayoutTree:
    """A payout tree over ``(account, amount, scorePpm, flags)`` rows, indexes 0..n-1, for the
    task ``domain`` (:meth:`Market.domain`)."""
    return PayoutTree.build(
        [
            PayoutEntry(index=i, account=a, amount=m, score_ppm=s, flags=f)
            for i, (a, m, s, f) in enumerate(rows)
        ],
        domain,
    )


def proof_bytes(tree: PayoutTree, index: int) -> list[bytes]:
    return [bytes.fromhex(p[2:]) for p in tree.proof(index)]


def root_bytes(tree: PayoutTree) -> bytes:
    return bytes.fromhex(tree.root[2:])


@dataclass(frozen=True)
class TaskSpec:
    """``TaskParams`` with test defaults (amounts in wei of an 18-decimals token)."""

    budget: int = 1000 * E18
    rounds: int = 2
    min_trainers: int = 2
    max_trainers: int = 4
    min_stake: int = 50 * E18
    min_reputation_ppm: int = 0
    trainer_bond: int = 10 * E18
    dispute_bond: int = 20 * E18
    join_in: int = 1000  # seconds from now
    round_duration: int = 1000
    commit_duration: int = 1000
    reveal_duration: int = 1000
    dispute_duration: int = 1000
    claim_duration: int = 5000
    quorum_bps: int = 6600
    oracle_slash: int = 30 * E18
    oracles: tuple[str, ...] | None = None  # default: the three registered oracles
    token: str | None = None
    accept_duration: int = 1000
    join_gate: str | None = None
    requester_deposit: int = 0
    sealed_validation_digest: bytes = bytes(Web3.keccak(text="sealed validation blob"))
    validation_commitment: bytes = bytes(Web3.keccak(text="validation set"))

    def with_(self, **changes: Any) -> TaskSpec:
        return replace(self, **changes)


def task_params(spec: TaskSpec, *, token: str, oracles: Iterable[str], now: int) -> tuple[Any, ...]:
    """The ``TaskParams`` struct in field order."""
    return (
        spec.token or token,
        spec.budget,
        "bafy-model-spec",
        "bafy-initial-model",
        Web3.keccak(text="initial model"),
        "bafy-config",
        spec.validation_commitment,
        spec.rounds,
        spec.min_trainers,
        spec.max_trainers,
        spec.min_stake,
        spec.min_reputation_ppm,
        spec.trainer_bond,
        spec.dispute_bond,
        now + spec.join_in,
        spec.round_duration,
        spec.commit_duration,
        spec.reveal_duration,
        spec.dispute_duration,
        spec.claim_duration,
        list(spec.oracles if spec.oracles is not None else oracles),
        spec.quorum_bps,
        spec.oracle_slash,
        spec.accept_duration,
        spec.join_gate or ZERO_ADDRESS,
        spec.requester_deposit,
        spec.sealed_validation_digest,
    )


@dataclass
class Market:
    """The deployed marketplace plus scenario steps used across the test files."""

    chain: Chain
    actors: Actors
    token: Contract
    registry: Contract
    market: Contract

    @property
    def fn(self) -> Any:
        return self.market.functions

    def domain(self, task_id: int) -> LeafDomain:
        """The domain task ``task_id``'s payout leaves are bound to on this market."""
        return LeafDomain(self.chain.chain_id, self.market.address, task_id)

    def create(
        self,
        spec: TaskSpec | None = None,
        *,
        requester: LocalAccount | None = None,
        accept: bool = True,
    ) -> int:
        """Create a task; unless ``accept`` is false every proposed oracle then takes its seat
        (the task is Open)."""
        spec = spec or TaskSpec()
        who = requester or self.actors.requester
        params = task_params(
            spec,
            token=self.token.address,
            oracles=[o.address for o in self.actors.oracles],
            now=self.chain.now(),
        )
        receipt = self.chain.tx(self.fn.createTask(params), who)
        (event,) = self.chain.events(self.market, receipt, "TaskCreated")
        task_id = int(event["taskId"])
        if accept:
            self.accept_all(task_id)
        return task_id

    def accept_all(self, task_id: int) -> None:
        """Every proposed committee member accepts its seat."""
        by_address = {a.address.lower(): a for a in self.everyone()}
        for oracle in self.fn.oracles(task_id).call():
            self.chain.tx(self.fn.acceptSeat(task_id), by_address[oracle.lower()])

    def everyone(self) -> list[LocalAccount]:
        a = self.actors
        return [a.deployer, a.arbiter, a.requester, *a.oracles, *a.trainers, *a.outsiders]

    def params(self, spec: TaskSpec) -> tuple[Any, ...]:
        return task_params(
            spec,
            token=self.token.address,
            oracles=[o.address for o in self.actors.oracles],
            now=self.chain.now(),
        )

    def task(self, task_id: int) -> dict[str, Any]:
        raw = self.fn.task(task_id).call()
        names = [c["name"] for c in self.fn.task(task_id).abi["outputs"][0]["components"]]
        return dict(zip(names, raw, strict=True))

    def join(self, task_id: int, trainers: Sequence[LocalAccount]) -> None:
        for t in trainers:
            self.chain.tx(self.fn.join(task_id), t)

    def start(self, task_id: int, trainers: Sequence[LocalAccount]) -> None:
        """Join ``trainers`` and move the task to Training (round 1)."""
        self.join(task_id, trainers)
        info = self.task(task_id)
        if info["trainerCount"] < info["maxTrainers"]:
            self.chain.warp_past(info["joinDeadline"])
        self.chain.tx(self.fn.advance(task_id), self.actors.deployer)

    def train(self, task_id: int, trainers: Sequence[LocalAccount]) -> None:
        """Every trainer commits every round; the task ends in Committing."""
        info = self.task(task_id)
        for r in range(info["currentRound"], info["rounds"] + 1):
            for i, t in enumerate(trainers):
                digest = Web3.keccak(text=f"update {task_id} {r} {i}")
                self.chain.tx(
                    self.fn.commitUpdate(task_id, r, f"bafy-update-{r}-{i}", digest, 100 + i), t
                )
            self.chain.tx(self.fn.advance(task_id), self.actors.deployer)

    def commit_votes(self, task_id: int, votes: dict[int, Vote]) -> None:
        """Oracle ``i`` (index into actors.oracles) commits ``votes[i]``."""
        for i, vote in votes.items():
            oracle = self.actors.oracles[i]
            self.chain.tx(
                self.fn.commitScore(task_id, commitment(task_id, oracle.address, vote)), oracle
            )

    def reveal_votes(self, task_id: int, votes: dict[int, Vote]) -> None:
        for i, vote in votes.items():
            oracle = self.actors.oracles[i]
            self.chain.tx(
                self.fn.revealScore(task_id, vote.root, vote.report_cid, vote.salt), oracle
            )

    def score(
        self, task_id: int, votes: dict[int, Vote], reveal: dict[int, Vote] | None = None
    ) -> None:
        """Commit ``votes``, reach Revealing, reveal ``reveal`` (default: all), close scoring."""
        self.commit_votes(task_id, votes)
        info = self.task(task_id)
        if len(votes) < info["committeeSize"]:
            self.chain.warp_past(info["phaseDeadline"])
        self.chain.tx(self.fn.advance(task_id), self.actors.deployer)
        reveal = votes if reveal is None else reveal
        self.reveal_votes(task_id, reveal)
        if len(reveal) < len(votes):
            self.chain.warp_past(self.task(task_id)["phaseDeadline"])
        self.chain.tx(self.fn.advance(task_id), self.actors.deployer)

    def open_claims(self, task_id: int) -> None:
        self.chain.warp_past(self.task(task_id)["claimsOpenAt"] - 1)

    def claim(
        self, task_id: int, tree: PayoutTree, index: int, who: LocalAccount | None = None
    ) -> TxReceipt:
        e = tree.entries[index]
        return self.chain.tx(
            self.fn.claim(
                task_id,
                e.index,
                e.account,
                e.amount,
                e.score_ppm,
                e.flags,
                proof_bytes(tree, index),
            ),
            who or self.actors.deployer,
        )

    def claim_fn(self, task_id: int, tree: PayoutTree, index: int) -> ContractFunction:
        e = tree.entries[index]
        return self.fn.claim(
            task_id, e.index, e.account, e.amount, e.score_ppm, e.flags, proof_bytes(tree, index)
        )

    def balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(address).call())

    def stake(self, address: str) -> int:
        return int(self.registry.functions.stakeOf(address).call())

    def reserved(self, address: str) -> int:
        return int(self.registry.functions.reservedOf(address).call())

    def finalized_task(
        self,
        trainers: Sequence[LocalAccount],
        rows: Callable[[Sequence[LocalAccount]], Sequence[tuple[str, int, int, int]]],
        spec: TaskSpec | None = None,
    ) -> tuple[int, PayoutTree]:
        """A task trained by ``trainers`` and finalized, all three oracles agreeing on ``rows``."""
        task_id = self.create(spec)
        self.start(task_id, trainers)
        self.train(task_id, trainers)
        tree = payout_tree(rows(trainers), self.domain(task_id))
        vote = Vote(root_bytes(tree), "bafy-report", b"\x01" * 32)
        self.score(
            task_id,
            {0: vote, 1: replace(vote, salt=b"\x02" * 32), 2: replace(vote, salt=b"\x03" * 32)},
        )
        return task_id, tree


def even_rows(
    trainers: Sequence[LocalAccount], total: int = 900 * E18
) -> list[tuple[str, int, int, int]]:
    """Equal payouts, scores 600k ppm, no flags."""
    share = total // len(trainers)
    return [(t.address, share, 600_000, 0) for t in trainers]
