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
        bytes4[] memory s = new bytes4[](13);
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
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), s);
    }

    /// @notice Coverage, printed with `forge test -vv`: how many of each action went through.
    function afterInvariant() public view {
        string memory m = "successful actions:";
        for (uint256 i; i < 6; ++i) m = string.concat(m, " ", vm.toString(handler.succeeded(i)));
        _log(m);
    }

    /// Per request: paid ≤ selected total ≤ budget, paid + refunded ≤ budget, the tokens the
    /// winners and the requester received = paid and refunded; the contract's balance =
    /// Σ (budget − paid − refunded).
    function invariant_sourcingBudgetConservation() public view {
        uint256 books;
        uint256 n = handler.requestCount();
        for (uint256 k; k < n; ++k) {
            uint256 id = handler.requests(k);
            IDataSourcing.RequestInfo memory r = sourcing.request(id);
            assertTrue(r.selectedTotal <= r.budget, "selected total > budget");
            assertTrue(r.paid <= r.selectedTotal, "paid > selected total");
            assertTrue(r.paid + r.refunded <= r.budget, "paid + refunded > budget");
            assertEq(r.paid, handler.ghostPaid(id), "paid != tokens the winners received");
            assertEq(r.refunded, handler.ghostRefunded(id), "refunded != tokens the requester received");
            books += r.budget - r.paid - r.refunded;
        }
        assertEq(token.balanceOf(address(sourcing)), books, "DataSourcing balance != its books");
    }
}
