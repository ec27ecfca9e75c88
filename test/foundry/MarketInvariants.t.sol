// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ParticipantRegistry} from "../../contracts/ParticipantRegistry.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {MarketHandler} from "./MarketHandler.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Test} from "./Vm.sol";

/// @notice Invariants of the market and registry under random sequences of every action
///         (issue 10). Run by scripts/test: `forge test` (runs × depth in foundry.toml).
contract MarketInvariants is Test {
    RewardToken internal token;
    ParticipantRegistry internal registry;
    TaskMarket internal market;
    MarketHandler internal handler;

    function setUp() public {
        token = new RewardToken("FedMarket Reward", "FMR", address(this));
        registry = new ParticipantRegistry(IERC20(address(token)), 7 days, address(this));
        handler = new MarketHandler(token, registry);
        market = handler.market();
        registry.setMarket(address(market), true);
        token.transferOwnership(address(handler));
        handler.fund();
    }

    /// @notice Forge fuzzes these: the handler (every phase) and the raw contracts (random callers).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](3);
        targets[0] = address(handler);
        targets[1] = address(market);
        targets[2] = address(registry);
    }

    /// @notice Raw calls never come from the two actors whose refusal the consent invariant
    ///         checks: the refusing oracle calling `acceptSeat` itself is its consent (a fuzz
    ///         run did exactly that, and the invariant then failed on its own premise).
    function excludeSenders() public view returns (address[] memory senders) {
        senders = new address[](2);
        senders[0] = handler.oracle(3);
        senders[1] = handler.trainer(5);
    }

    /// @notice Printed with -vv after each run (the last run's is shown): successful calls per
    ///         handler action, then how many tasks end the run in each phase and outcome.
    function logCoverage() public view {
        string memory m = "accept join commitUpdate commitScore reveal claim fallback deposit slash dispute"
            " resolve sweep withdrawBond releaseStake advance cancel:";
        for (uint256 i; i < 16; ++i) m = string.concat(m, " ", vm.toString(handler.succeeded(i)));
        uint256[13] memory count;
        uint256 n = market.taskCount();
        for (uint256 id = 1; id <= n; ++id) {
            ITaskMarket.TaskInfo memory t = market.task(id);
            count[uint8(t.phase)]++;
            count[9 + uint8(t.outcome)]++;
        }
        m = string.concat(m, " | tasks by phase (Open..Forming) and outcome (None..Mismatch):");
        for (uint256 i; i < 13; ++i) m = string.concat(m, " ", vm.toString(count[i]));
        m = string.concat(m, " | flips ", vm.toString(handler.flips()), " sendOwed ", vm.toString(handler.owedSent()),
            " seat batches ", vm.toString(handler.seatBatches()));
        _log(m);
    }

    /// @notice After every run, a hostile switchable token (reverting for the requester and the
    ///         burn address, burning all gas for trainer 0): every task still ends, and then no
    ///         oracle or trainer holds a reservation (issue-10 audit: a task's token could strand
    ///         the stake its committee and trainers reserved).
    function afterInvariant() public {
        logCoverage();
        uint256 unfinished = handler.drainAll();
        if (unfinished != 0) {
            ITaskMarket.TaskInfo memory t = market.task(handler.lastUnfinished());
            _log(string.concat("unfinished task ", vm.toString(handler.lastUnfinished()), " phase ",
                vm.toString(uint8(t.phase)), " outcome ", vm.toString(uint8(t.outcome)), " sweep error ",
                vm.toString(handler.lastSweepError())));
        }
        assertEq(unfinished, 0, "a task did not end");
        for (uint256 i; i < 4; ++i) assertEq(registry.reservedOf(handler.oracle(i)), 0, "oracle reservation left");
        for (uint256 i; i < 6; ++i) assertEq(registry.reservedOf(handler.trainer(i)), 0, "trainer reservation left");
    }

    /// market balance of each token = Σ over its tasks of (budget − paid − refunded) + bonds +
    /// deposits + the dispute bond held + Σ owed (payments the token refused, for sendOwed).
    function invariant_marketBalanceEqualsItsBooks() public view {
        uint256[2] memory books;
        uint256 n = market.taskCount();
        address[] memory payees = handler.payees();
        for (uint256 id = 1; id <= n; ++id) {
            ITaskMarket.TaskInfo memory t = market.task(id);
            uint256 k = address(t.token) == address(token) ? 0 : 1;
            books[k] += t.budget - t.paid - t.refunded + t.bondsHeld + t.depositHeld;
            if (t.phase == ITaskMarket.Phase.Disputed && t.disputer != address(0)) books[k] += t.disputeBond;
            for (uint256 j; j < payees.length; ++j) books[k] += market.owedTo(id, payees[j]);
        }
        assertEq(token.balanceOf(address(market)), books[0], "market balance");
        assertEq(handler.switchable().balanceOf(address(market)), books[1], "market balance (switchable)");
    }

    /// registry balance = Σ (stake + unbonding batches); reserved <= stake.
    function invariant_registryBalanceEqualsStakes() public view {
        // The requester is funded too: a raw `register`/`stake` from it is a stake like any other.
        uint256 total = _held(handler.requester());
        for (uint256 i; i < 4; ++i) total += _held(handler.oracle(i));
        for (uint256 i; i < 6; ++i) total += _held(handler.trainer(i));
        assertEq(token.balanceOf(address(registry)), total, "registry balance");
    }

    /// paid + refunded <= budget for every task.
    function invariant_neverPaysMoreThanTheBudget() public view {
        uint256 n = market.taskCount();
        for (uint256 id = 1; id <= n; ++id) {
            ITaskMarket.TaskInfo memory t = market.task(id);
            assertTrue(t.paid + t.refunded <= t.budget, "paid + refunded > budget");
        }
    }

    /// An oracle that revealed the final root is never slashed.
    function invariant_revealerOfTheFinalRootIsNeverSlashed() public view {
        uint256 n = market.taskCount();
        for (uint256 id = 1; id <= n; ++id) {
            ITaskMarket.TaskInfo memory t = market.task(id);
            if (t.payoutRoot == bytes32(0)) continue;
            address[] memory members = market.oracles(id);
            for (uint256 j; j < members.length; ++j) {
                if (market.revealedRootOf(id, members[j]) == t.payoutRoot && t.outcome != ITaskMarket.Outcome.None) {
                    assertTrue(!market.isOracleSlashed(id, members[j]), "revealer of the final root slashed");
                }
            }
        }
    }

    /// No stake is reserved or slashed by a task its owner did not accept: oracle 3 never
    /// accepts a seat and trainer 5 never joins.
    function invariant_noStakeLockedWithoutConsent() public view {
        address refuser = handler.oracle(3);
        address idle = handler.trainer(5);
        assertEq(registry.reservedOf(refuser), 0, "refusing oracle reserved");
        assertEq(registry.reservedOf(idle), 0, "idle trainer reserved");
        // Both may unstake and withdraw (the handler's registry actions pick any actor), so what
        // must hold is their whole holding: wallet + stake + unbonding, as funded (1,000,000).
        assertEq(token.balanceOf(refuser) + _held(refuser), 1_000_000e18, "refusing oracle lost tokens");
        assertEq(token.balanceOf(idle) + _held(idle), 1_000_000e18, "idle trainer lost tokens");
    }

    function _held(address who) private view returns (uint256) {
        IParticipantRegistry.Participant memory p = registry.participant(who);
        assertTrue(p.reserved <= p.stake, "reserved > stake");
        return p.stake + p.unbonding + p.queued;
    }
}
