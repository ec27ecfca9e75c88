// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {DataSourcing} from "../../contracts/DataSourcing.sol";
import {ParticipantRegistry} from "../../contracts/ParticipantRegistry.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IDataSourcing} from "../../contracts/interfaces/IDataSourcing.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {DataSourcingHandler} from "./DataSourcingHandler.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Test} from "./Vm.sol";

/// @notice DataSourcing's budget conservation under random requests, offers, selections and
///         claims (issue 14). One invariant function (one campaign) checks every request.
contract DataSourcingInvariants is Test {
    RewardToken internal token;
    DataSourcing internal sourcing;
    DataSourcingHandler internal handler;

    function setUp() public {
        token = new RewardToken("FedMarket Reward", "FMR", address(this));
        ParticipantRegistry registry = new ParticipantRegistry(IERC20(address(token)), 7 days, address(this));
        TaskMarket taskMarket = new TaskMarket(IParticipantRegistry(address(registry)), address(this));
        registry.setMarket(address(taskMarket), true);
        sourcing = new DataSourcing(ITaskMarket(address(taskMarket)));
        handler = new DataSourcingHandler(token, taskMarket, sourcing);
        token.transferOwnership(address(handler));
        handler.setUp(IParticipantRegistry(address(registry)));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice The handler's actions (not its one-off setUp).
    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory s = new bytes4[](17);
        s[0] = handler.createRequest.selector;
        s[1] = handler.acceptSeat.selector;
        s[2] = handler.commitOffer.selector;
        s[3] = handler.revealOffer.selector;
        s[4] = handler.commitSelection.selector;
        s[5] = handler.revealSelection.selector;
        s[6] = handler.registerWinner.selector;
        s[7] = handler.train.selector;
        s[8] = handler.claimPayment.selector;
        s[9] = handler.refund.selector;
        s[10] = handler.cancel.selector;
        s[11] = handler.warp.selector;
        s[12] = handler.commitOffer.selector; // offers twice as often: every selection needs some
        s[13] = handler.score.selector;
        s[14] = handler.drive.selector; // 2 of 16 calls: every request's whole life, every run
        s[15] = handler.drive.selector;
        s[16] = handler.forfeitBonds.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), s);
    }

    /// @notice Coverage, printed with `forge test -vv` after the last run: how many of each
    ///         action went through in that run, then in the whole campaign so far (the totals
    ///         live in this process's environment, which no run's state rollback touches).
    function afterInvariant() public {
        string memory m = string.concat(handler.COVERAGE(), ": last run");
        string memory total = " | campaign";
        uint256 n = handler.COUNTERS();
        for (uint256 i; i < n; ++i) {
            uint256 c = handler.succeeded(i);
            m = string.concat(m, " ", vm.toString(c));
            total = string.concat(total, " ", vm.toString(_accumulate(vm.toString(i), c)));
        }
        // (forge replays the last run once more to print this line: one call more than runs)
        _log(string.concat(m, total, " (", vm.toString(_accumulate("calls", 1)), " afterInvariant calls)"));
    }

    function _accumulate(string memory key, uint256 add) private returns (uint256 sum) {
        string memory name = string.concat("FEDMARKET_DS_COVERAGE_", key);
        sum = vm.envOr(name, uint256(0)) + add;
        vm.setEnv(name, vm.toString(sum));
    }

    /// @notice The handler's own path to both claim outcomes, scripted (the campaign reaches
    ///         them through `drive`; this pins one case down): a request selects all four
    ///         owners, they train, the committee flags owner 1; owner 0 is paid, owner 1 is
    ///         refused (true or forged flags), and after the claim deadline its payment is
    ///         refunded.
    function test_handlerPaysTheUnflaggedAndRefusesTheFlagged() public {
        handler.createRequest(5);
        uint256 id = handler.requests(0);
        // Absolute warps from the request's own clock (via-IR re-reads a cached block.timestamp).
        uint256 t0 = sourcing.request(id).offerDeadline - 1 hours;
        handler.acceptSeat(0);
        for (uint256 i; i < 4; ++i) {
            handler.commitOffer(i); // ask 0.1 token each: all four fit the budget
        }
        vm.warp(t0 + 1 hours + 1);
        handler.revealOffer(_seed(0)); // (the handler hashes its seed per request) nobody stays sealed
        vm.warp(t0 + 2 hours + 1);
        handler.commitSelection(_seed(1)); // every oracle the honest selection
        vm.warp(t0 + 3 hours + 1);
        handler.revealSelection(_seed(2)); // every oracle reveals
        assertEq(handler.succeeded(1) > 0 ? 1 : 0, 1, "selection not final");
        for (uint256 i; i < 4; ++i) {
            handler.registerWinner(i);
        }
        handler.train(0);
        handler.score((2 << 16) | 1); // flag bits 0b0010: owner 1 is flagged
        assertEq(handler.succeeded(9), 1, "task not scored");
        vm.warp(handler.taskMarket().task(sourcing.request(id).taskId).claimsOpenAt); // disputes over
        handler.claimPayment(1); // owner 1 with its forged flags 0: bad leaf
        handler.claimPayment(17); // owner 1 with its true flags: refused
        handler.claimPayment(0); // owner 0, unflagged: paid
        assertEq(handler.succeeded(3), 1, "claims paid");
        assertEq(handler.succeeded(5), 1, "flagged claims refused");
        assertEq(handler.succeeded(6), 1, "forged-flag claims refused");
        vm.warp(sourcing.request(id).claimDeadline + 1);
        handler.refund(0);
        IDataSourcing.RequestInfo memory r = sourcing.request(id);
        assertEq(r.paid + r.refunded, r.budget, "paid + refunded != budget");
        (uint256 withheld, bool claimed) = sourcing.winner(id, handler.owners(1));
        assertTrue(withheld > 0 && !claimed, "owner 1 won and was not paid");
        (uint256 honest,) = sourcing.winner(id, handler.owners(0));
        assertEq(r.paid, honest, "only owner 0 was paid");
        invariant_sourcingBudgetConservation();
    }

    /// @dev A seed whose hash (as the handler hashes it for request 0) makes every owner reveal
    ///      (`what` 0), every oracle commit the honest selection (1), or every oracle reveal (2).
    function _seed(uint256 what) private pure returns (uint256 seed) {
        for (;; ++seed) {
            uint256 h = uint256(keccak256(abi.encode(seed, uint256(0))));
            if (what == 0 && h % 8 >= 4) return seed;
            if (what == 2 && h % 6 >= 3) return seed;
            if (what == 1 && (h >> 4) % 8 < 5 && (h >> 7) % 8 < 5 && (h >> 10) % 8 < 5) return seed;
        }
    }

    /// Per request: paid ≤ selected total ≤ budget, paid + refunded ≤ budget, the tokens the
    /// winners and the requester received = paid and refunded; offers ≤ MAX_OFFERS and the
    /// bonds held = bonds posted − returned at reveals − forfeited to the requester; the
    /// contract's balance = Σ (budget − paid − refunded + bonds held); no winner flagged in its
    /// task's final payout table was ever paid (its payment is refunded instead).
    function invariant_sourcingBudgetConservation() public view {
        uint256 books;
        uint256[] memory ids = handler.requestIds();
        for (uint256 k; k < ids.length; ++k) {
            uint256 id = ids[k];
            IDataSourcing.RequestInfo memory r = sourcing.request(id);
            assertTrue(r.selectedTotal <= r.budget, "selected total > budget");
            assertTrue(r.paid <= r.selectedTotal, "paid > selected total");
            assertTrue(r.paid + r.refunded <= r.budget, "paid + refunded > budget");
            (uint256 paid, uint256 refunded, uint256 posted, uint256 returned, uint256 forfeited) =
                handler.ghost(id);
            assertEq(r.paid, paid, "paid != tokens the winners received");
            assertEq(r.refunded, refunded, "refunded != tokens the requester received");
            assertTrue(r.offerCount <= sourcing.MAX_OFFERS(), "more offers than the cap");
            assertEq(r.bondsHeld, posted - returned - forfeited, "bonds held != posted - returned - forfeited");
            assertEq(posted, uint256(r.offerCount) * r.offerBond, "bonds posted != offers x bond");
            books += r.budget - r.paid - r.refunded + r.bondsHeld;
        }
        assertEq(token.balanceOf(address(sourcing)), books, "DataSourcing balance != its books");
        assertEq(handler.ghostFlaggedPaid(), 0, "a flagged winner was paid");
    }
}
