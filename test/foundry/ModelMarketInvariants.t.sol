// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ModelMarket} from "../../contracts/ModelMarket.sol";
import {ParticipantRegistry} from "../../contracts/ParticipantRegistry.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IModelMarket} from "../../contracts/interfaces/IModelMarket.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {ModelMarketHandler} from "./ModelMarketHandler.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Test} from "./Vm.sol";

/// @notice ModelMarket's books and royalty conservation under random sales (issue 15). One
///         invariant function (one campaign: runs × depth in foundry.toml) checks both.
contract ModelMarketInvariants is Test {
    RewardToken internal token;
    ModelMarket internal market;
    ModelMarketHandler internal handler;

    function setUp() public {
        token = new RewardToken("FedMarket Reward", "FMR", address(this));
        ParticipantRegistry registry = new ParticipantRegistry(IERC20(address(token)), 7 days, address(this));
        TaskMarket taskMarket = new TaskMarket(IParticipantRegistry(address(registry)), address(this));
        registry.setMarket(address(taskMarket), true);
        market = new ModelMarket(ITaskMarket(address(taskMarket)));
        registry.setMarket(address(market), true); // evaluations reserve the committee's stake
        handler = new ModelMarketHandler(token, taskMarket, market);
        token.transferOwnership(address(handler));
        handler.setUp(IParticipantRegistry(address(registry)));
    }

    /// @notice The handler only: raw calls to ModelMarket from random senders almost all revert
    ///         and would halve the handler's sales (strangers' claims are handler actions).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice The handler's actions (not its one-off setUp).
    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory s = new bytes4[](12);
        s[0] = handler.list.selector;
        s[1] = handler.buy.selector;
        s[2] = handler.deliver.selector;
        s[3] = handler.refund.selector;
        s[4] = handler.claimRoyalty.selector;
        s[5] = handler.claimShare.selector;
        s[6] = handler.sweepRoyalties.selector;
        s[7] = handler.claimBounty.selector;
        s[8] = handler.reclaim.selector;
        s[9] = handler.warp.selector;
        s[10] = handler.buy.selector; // buys and deliveries twice as often: sales feed the rest
        s[11] = handler.deliver.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), s);
    }

    /// @notice Coverage, printed with `forge test -vv`: how many of each action went through.
    function afterInvariant() public view {
        string memory m = "successful actions:";
        for (uint256 i; i < 6; ++i) m = string.concat(m, " ", vm.toString(handler.succeeded(i)));
        _log(m);
    }

    /// ModelMarket balance = escrowed undelivered payments + unclaimed proceeds + the product's
    /// bounty/auditor-fee escrow; per listing Σ accrued royalties (claimed + claimable) + rounding
    /// dust = Σ trainer cuts of the delivered sales, to the wei, with dust < the number of leaves.
    function invariant_modelMarketBooksAndRoyaltyConservation() public view {
        uint256 books = _productEscrow();
        uint256 n = handler.listingCount();
        for (uint256 k; k < n; ++k) {
            uint256 id = handler.listings(k);
            IModelMarket.ListingInfo memory l = market.listing(id);
            uint256 unclaimed = l.gross - l.trainerClaimed - l.requesterPaid - l.developerPaid
                - handler.ghostAuditorPaid(id) - handler.ghostSweptDust(id);
            books += l.pending + unclaimed;
            _checkRoyalties(id, l);
        }
        assertEq(token.balanceOf(address(market)), books, "ModelMarket balance != its books");
    }

    function _checkRoyalties(uint256 id, IModelMarket.ListingInfo memory l) private view {
        assertEq(l.gross, handler.ghostDelivered(id), "gross != delivered sales");
        uint256 pool = l.trainerPool;
        assertEq(pool, handler.ghostTrainerIn(id), "trainer pool != trainer cuts of the sales");
        assertEq(l.totalScore, handler.totalScore(), "total score");
        uint256 accrued;
        uint256 claimed;
        for (uint256 i; i < 4; ++i) {
            (uint256 a, uint256 paid) = market.royaltyOf(id, i, handler.scores(i));
            assertTrue(paid <= a, "a leaf was paid above its accrual");
            if (handler.flags(i) != 0) {
                assertEq(paid, 0, "a flagged leaf was paid");
                assertEq(a, 0, "a flagged leaf (score 0) accrued");
            }
            accrued += a;
            claimed += paid;
        }
        assertEq(claimed, handler.ghostRoyalties(id), "leaves paid != tokens the trainers received");
        // Per-share accrual rounds down: the dust is below the number of leaves, never negative.
        assertTrue(accrued <= pool, "accrued above the trainers' pool");
        assertTrue(pool - accrued < 4, "rounding dust >= number of leaves");
        assertEq(l.trainerClaimed, claimed + handler.ghostSweptTrainer(id), "trainerClaimed != paid + swept");
        if (l.swept) assertEq(l.trainerClaimed, pool, "sweep left trainer money behind");
    }

    function _productEscrow() private view returns (uint256 escrow) {
        IModelMarket.ProductInfo memory p = market.product(handler.taskId());
        if (!p.bountyPaid) escrow += p.bounty;
        escrow += p.auditorFee * (p.requiredAttestations - p.feesPaid);
    }
}
