"""Stateful property test: whatever sequence of (valid or invalid) actions happens, the market's
token balance equals its books (escrow not paid or refunded + bonds held + dispute bonds held),
and the registry's balance equals the sum of stakes and unbonding amounts."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from chainkit import (
    E18,
    Market,
    Phase,
    TaskSpec,
    UnexpectedRevert,
    Vote,
    chain_kind,
    commitment,
    payout_tree,
    root_bytes,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from web3 import Web3
from web3.exceptions import Web3RPCError

MAX_TASKS = 3


class MarketMachine(RuleBasedStateMachine):
    mkt: Market  # set by the test before the machine runs
    succeeded: ClassVar[Counter[str]] = Counter()  # successful actions, across all examples

    def __init__(self) -> None:
        super().__init__()
        self.chain = self.mkt.chain
        self.snap = self.chain.snapshot()
        self.tasks: list[int] = []
        self.trees: dict[int, dict[int, Any]] = {}  # task -> choice -> tree

    def teardown(self) -> None:
        self.chain.revert_to(self.snap)

    # --- plumbing -------------------------------------------------------------------------
    def _try(self, fn: Any, who: Any) -> bool:
        """Send ``fn`` if it would succeed; invalid actions are part of the exploration."""
        if self.chain.why(fn, who) is not None:
            return False
        try:
            self.chain.tx(fn, who)
        except (UnexpectedRevert, Web3RPCError) as exc:  # the Hardhat node raises on send
            # eth_call ran on the latest block; the transaction lands one second later, which can
            # cross a deadline (the phase windows now start when the phase does).
            if "DeadlinePassed" in str(exc) or "TooEarly" in str(exc):
                return False
            raise
        self.succeeded[fn.fn_name] += 1
        return True

    def _task(self, i: int) -> int | None:
        return self.tasks[i % len(self.tasks)] if self.tasks else None

    @initialize()
    def first_task(self) -> None:
        self.create(budget=500, bond=10, dispute_bond=5, min_trainers=1)

    # --- rules ----------------------------------------------------------------------------
    @rule(
        budget=st.integers(1, 1000),
        bond=st.integers(1, 30),  # at least MIN_TRAINER_BOND (1 token)
        dispute_bond=st.integers(0, 30),
        min_trainers=st.integers(1, 3),
    )
    def create(self, budget: int, bond: int, dispute_bond: int, min_trainers: int) -> None:
        if len(self.tasks) >= MAX_TASKS:
            return
        spec = TaskSpec(
            budget=budget * E18,
            trainer_bond=bond * E18,
            dispute_bond=dispute_bond * E18,
            rounds=1,
            min_trainers=min_trainers,
            max_trainers=3,
            # Stake is reserved per live task (issue 10): small reservations let the 100-token
            # stakes back every task the machine keeps alive, so exploration reaches claims.
            min_stake=5 * E18,
            oracle_slash=5 * E18,
        )
        self.tasks.append(self.mkt.create(spec))
        self.succeeded["createTask"] += 1

    @rule(t=st.integers(0, 9), first=st.integers(0, 7), count=st.integers(1, 3))
    def join(self, t: int, first: int, count: int) -> None:
        """Trainers ``first..first+count-1`` (mod 8) try to join."""
        task_id = self._task(t)
        if task_id:
            for k in range(count):
                self._try(self.mkt.fn.join(task_id), self.mkt.actors.trainers[(first + k) % 8])

    @rule(t=st.integers(0, 9), skip=st.integers(0, 8))
    def commit_updates(self, t: int, skip: int) -> None:
        """Every joined trainer but trainer ``skip`` tries to commit its update."""
        task_id = self._task(t)
        if task_id:
            for who, a in enumerate(self.mkt.actors.trainers):
                if who != skip:
                    digest = Web3.keccak(text=f"{task_id}-{who}")
                    self._try(self.mkt.fn.commitUpdate(task_id, 1, "u", digest, 10), a)

    @rule(t=st.integers(0, 9), wait=st.booleans())
    def advance(self, t: int, wait: bool) -> None:
        """Advance, after the current phase's deadline if ``wait``."""
        task_id = self._task(t)
        if task_id:
            if wait:
                self._warp_past(self.mkt.task(task_id)["phaseDeadline"])
            self._try(self.mkt.fn.advance(task_id), self.mkt.actors.outsiders[0])

    @rule(seconds=st.sampled_from([10, 600, 6000]))
    def warp(self, seconds: int) -> None:
        self._warp_past(self.chain.now() + seconds - 1)

    def _warp_past(self, timestamp: int) -> None:
        """Mine a block strictly after ``timestamp``. On Anvil the clock is stepped (one second
        per block, see the test), so the next block's time is set outright."""
        if chain_kind() != "anvil":
            self.chain.warp_past(timestamp)
            return
        target = max(timestamp + 1, self.chain.now() + 1)
        provider = self.chain.w3.provider
        provider.make_request("evm_setNextBlockTimestamp", [target])  # type: ignore[arg-type]
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def score(self, t: int, pattern: str) -> None:
        """A whole commit-reveal round in one step: all agree, 2-1 split, nobody reveals, or one
        oracle alone (no quorum)."""
        task_id = self._task(t)
        if not task_id or self.mkt.task(task_id)["phase"] != Phase.COMMITTING:
            return
        choices = {"agree": [0, 0, 0], "split": [0, 0, 1], "silent": [], "one": [1]}[pattern]
        for oracle, choice in enumerate(choices):
            self.oracle_commit(t, oracle, choice)
        self.advance(t, wait=len(choices) < 3)
        for oracle in range(len(choices)):
            self.oracle_reveal(t, oracle)
        self.advance(t, wait=False)

    def _tree(self, task_id: int, choice: int) -> Any:
        trees = self.trees.setdefault(task_id, {})
        if choice not in trees:
            joined = [
                a
                for a in self.mkt.actors.trainers
                if self.mkt.fn.isTrainer(task_id, a.address).call()
            ]
            if not joined:
                return None
            budget = self.mkt.task(task_id)["budget"]
            share = budget * (choice + 1) // (3 * len(joined))
            rows = [
                (a.address, share, 500_000, 2 if (choice and i == 0) else 0)
                for i, a in enumerate(joined)
            ]
            trees[choice] = payout_tree(rows, self.mkt.domain(task_id))
        return trees[choice]

    def oracle_commit(self, t: int, oracle: int, choice: int) -> None:
        task_id = self._task(t)
        if not task_id or self.mkt.task(task_id)["phase"] != Phase.COMMITTING:
            return
        tree = self._tree(task_id, choice)
        o = self.mkt.actors.oracles[oracle]
        vote = Vote(root_bytes(tree), f"report-{choice}", bytes([oracle + 1]) * 32)
        self._try(self.mkt.fn.commitScore(task_id, commitment(task_id, o.address, vote)), o)
        self.trees[task_id][100 + oracle] = vote

    def oracle_reveal(self, t: int, oracle: int) -> None:
        task_id = self._task(t)
        vote = self.trees.get(task_id or 0, {}).get(100 + oracle)
        if vote:
            self._try(
                self.mkt.fn.revealScore(task_id, vote.root, vote.report_cid, vote.salt),
                self.mkt.actors.oracles[oracle],
            )

    @rule(t=st.integers(0, 9), variant=st.integers(0, 3))
    def progress(self, t: int, variant: int) -> None:
        """Drive a task one natural step forward, the way ``variant`` picks: keeps the exploration
        reaching the late, money-moving phases instead of dying in Open."""
        task_id = self._task(t)
        if not task_id:
            return
        phase = self.mkt.task(task_id)["phase"]
        if phase == Phase.OPEN:
            self.join(t, variant * 2, variant % 3 + 1)
            self.advance(t, wait=True)
        elif phase == Phase.TRAINING:
            self.commit_updates(t, skip=8 if variant < 2 else 0)
            self.advance(t, wait=variant >= 2)
        elif phase == Phase.COMMITTING:
            self.score(t, ["agree", "split", "silent", "one"][variant])
            if variant < 2 and self.mkt.task(task_id)["phase"] == Phase.FINALIZED:
                # A quorum finalized: its trainers claim once claims open (the money-moving
                # path that reservations per task made rare for random walks to reach).
                self._warp_past(self.mkt.task(task_id)["claimsOpenAt"])
                for leaf in range(3):
                    self.claim(t, 0, leaf)
        elif phase == Phase.FINALIZED:
            if variant == 3:
                self.dispute(t, who=0)
            else:
                self._warp_past(self.mkt.task(task_id)["claimsOpenAt"])
                for leaf in range(3):
                    self.claim(t, 0, leaf)
                    self.claim(t, 1, leaf)
                if variant == 2:
                    self.settle(t, "sweep", 0)
        elif phase == Phase.DISPUTED:
            if variant < 2:
                self.resolve(t, variant)
            else:
                self.advance(t, wait=True)

    def claim(self, t: int, choice: int, leaf: int) -> None:
        task_id = self._task(t)
        tree = self.trees.get(task_id or 0, {}).get(choice)
        if tree and leaf < len(tree.entries):
            self._try(self.mkt.claim_fn(task_id, tree, leaf), self.mkt.actors.outsiders[1])

    @rule(t=st.integers(0, 9), who=st.integers(0, 7))
    def dispute(self, t: int, who: int) -> None:
        task_id = self._task(t)
        if task_id:
            self._try(self.mkt.fn.dispute(task_id), self.mkt.actors.trainers[who])

    def resolve(self, t: int, choice: int) -> None:
        task_id = self._task(t)
        tree = self.trees.get(task_id or 0, {}).get(choice)
        if tree:
            self._try(
                self.mkt.fn.resolveDispute(task_id, root_bytes(tree)), self.mkt.actors.arbiter
            )

    @rule(
        t=st.integers(0, 9),
        action=st.sampled_from(["sweep", "cancel", "withdrawBond"]),
        who=st.integers(0, 7),
    )
    def settle(self, t: int, action: str, who: int) -> None:
        task_id = self._task(t)
        if not task_id:
            return
        if action == "sweep" and self.mkt.task(task_id)["claimDeadline"]:
            self._warp_past(self.mkt.task(task_id)["claimDeadline"])
        actor = {"sweep": self.mkt.actors.outsiders[0], "cancel": self.mkt.actors.requester}.get(
            action, self.mkt.actors.trainers[who]
        )
        self._try(getattr(self.mkt.fn, action)(task_id), actor)

    @rule(t=st.integers(0, 9), oracle=st.integers(0, 2))
    def slash_oracle(self, t: int, oracle: int) -> None:
        task_id = self._task(t)
        if task_id:
            self._try(
                self.mkt.fn.slashOracle(task_id, self.mkt.actors.oracles[oracle].address),
                self.mkt.actors.outsiders[0],
            )

    @rule(
        who=st.integers(0, 7),
        action=st.sampled_from(["stake", "requestUnstake", "withdraw"]),
        amount=st.integers(1, 40),
    )
    def registry_action(self, who: int, action: str, amount: int) -> None:
        reg = self.mkt.registry.functions
        fn = reg.withdraw() if action == "withdraw" else getattr(reg, action)(amount * E18)
        self._try(fn, self.mkt.actors.trainers[who])

    @rule(t=st.integers(0, 9), variant=st.integers(0, 3))
    def progress_again(self, t: int, variant: int) -> None:
        """The same as ``progress``: a second rule doubles how often tasks move forward."""
        self.progress(t, variant)

    # --- invariants -----------------------------------------------------------------------
    @invariant()
    def market_balance_equals_its_books(self) -> None:
        books = 0
        for task_id in self.tasks:
            info = self.mkt.task(task_id)
            books += info["budget"] - info["paid"] - info["refunded"] + info["bondsHeld"]
            if info["phase"] == Phase.DISPUTED and info["disputer"] != "0x" + "00" * 20:
                books += info["disputeBond"]
        assert self.mkt.balance(self.mkt.market.address) == books

    @invariant()
    def registry_balance_equals_stakes_and_unbonding(self) -> None:
        everyone = [*self.mkt.actors.oracles, *self.mkt.actors.trainers]
        total = 0
        for a in everyone:
            p = self.mkt.registry.functions.participant(a.address).call()
            total += p[2] + p[4] + p[6]  # stake + both unbonding batches
        assert self.mkt.balance(self.mkt.registry.address) == total


def test_token_balances_always_match_the_books(mkt):
    MarketMachine.mkt = mkt
    MarketMachine.succeeded = Counter()
    provider = mkt.chain.w3.provider
    if chain_kind() == "anvil":
        # Each block one second after the last instead of the wall clock: a slow machine must not
        # push the derandomized programs past their deadlines (and away from the claim path).
        provider.make_request("anvil_setBlockTimestampInterval", [1])  # type: ignore[arg-type]
    try:
        _run_machine()
    finally:
        if chain_kind() == "anvil":
            provider.make_request("anvil_removeBlockTimestampInterval", [])  # type: ignore[arg-type]


def _run_machine() -> None:
    run_state_machine_as_test(
        MarketMachine,
        settings=settings(
            max_examples=14,
            derandomize=True,  # CI-stable: the same programs every run
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The exploration must reach the money-moving paths, or the invariants prove little.
    reached = MarketMachine.succeeded
    print(dict(reached))
    required = ["createTask", "join", "commitUpdate", "advance", "revealScore", "claim", "sweep"]
    if chain_kind() == "hardhat":
        # The Hardhat node keeps its time offset across evm_revert, so later examples start with
        # deadlines already behind them and rarely reach claims; the balance invariants above
        # still ran on every step. On Anvil (the main run) every path must be reached.
        required = required[:5]
    for name in required:
        assert reached[name] > 0, f"the state machine never succeeded a {name}: {dict(reached)}"
