// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ModelMarket} from "../../contracts/ModelMarket.sol";
import {ParticipantRegistry} from "../../contracts/ParticipantRegistry.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IModelMarket} from "../../contracts/interfaces/IModelMarket.sol";
import {IModelVersions} from "../../contracts/interfaces/IModelVersions.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "../../contracts/libraries/PayoutLeaf.sol";
import {Vm} from "./Vm.sol";

/// @notice Drives ModelMarket (issue 15) after a real TaskMarket task has finalized: listings,
///         buys by several buyers, deliveries, non-delivery refunds, royalty claims with the
///         trainers' payout leaves, share withdrawals by the requester, developer and auditors,
///         bounty, reclaim, sweeps and time. Every action is a real call that may revert (a
///         revert is a no-op for the invariants); the ghosts record only what moved.
contract ModelMarketHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant LEAVES = 4;
    uint256 public constant MAX_LISTINGS = 3;
    uint256 public constant LEAF_AMOUNT = 20e18;
    uint256 private constant BPS = 10_000;

    RewardToken public immutable token;
    TaskMarket public immutable taskMarket;
    ModelMarket public immutable market;

    address public immutable requester = address(0xAA01);
    address public immutable keyHolder = address(0xAA02);
    address public immutable developer = address(0xDE01);
    address[3] public oracles = [address(0xB001), address(0xB002), address(0xB003)];
    address[LEAVES] public trainers = [address(0xC001), address(0xC002), address(0xC003), address(0xC004)];
    address[4] public buyers = [address(0xBB01), address(0xBB02), address(0xBB03), address(0xBB04)];
    uint256[2] private _auditorKeys = [uint256(0xA11), uint256(0xA12)];
    address[2] public auditors;

    /// @notice Uneven scores so every per-share accrual rounds; leaf 3 is a flagged poisoner (score 0).
    uint32[LEAVES] public scores = [uint32(412_345), 300_001, 287_653, 0];
    uint256[LEAVES] public flags = [uint256(0), 0, 0, PayoutLeaf.FLAG_POISONER];
    bytes32[LEAVES] private _leaves;
    uint256 public taskId;
    uint256 public totalScore;

    uint256[] public listings;
    uint256[] public sales;

    /// @notice Ghosts per listing: Σ delivered prices, Σ trainer cuts computed here from each
    ///         delivered price, Σ royalties received by leaves, the sweep's trainer part and its
    ///         auditor dust, Σ auditor share withdrawals.
    mapping(uint256 listingId => uint256) public ghostDelivered;
    mapping(uint256 listingId => uint256) public ghostTrainerIn;
    mapping(uint256 listingId => uint256) public ghostRoyalties;
    mapping(uint256 listingId => uint256) public ghostSweptTrainer;
    mapping(uint256 listingId => uint256) public ghostSweptDust;
    mapping(uint256 listingId => uint256) public ghostAuditorPaid;
    uint256 public calls;
    /// @notice Successful actions, by kind (coverage: buy, deliver, refund, royalty, share, sweep).
    uint256[6] public succeeded;

    constructor(RewardToken token_, TaskMarket taskMarket_, ModelMarket market_) {
        token = token_;
        taskMarket = taskMarket_;
        market = market_;
        for (uint256 i; i < 2; ++i) {
            auditors[i] = vm.addr(_auditorKeys[i]);
        }
    }

    // --- set-up: a real task to Finalized, then the product up to its first listing -------------

    /// @notice Fund and register everyone, run a task to claims-open with a 4-leaf payout table,
    ///         have submission 2 (the developer's) pass and be approved by two auditors, list it.
    function setUp(IParticipantRegistry registry) external {
        _fund(requester, address(registry));
        _fund(developer, address(registry));
        for (uint256 i; i < 3; ++i) {
            _fund(oracles[i], address(registry));
            vm.prank(oracles[i]);
            registry.register(IParticipantRegistry.Role.Oracle, bytes32(uint256(i + 1)), 100e18);
        }
        for (uint256 i; i < LEAVES; ++i) {
            _fund(trainers[i], address(registry));
            vm.prank(trainers[i]);
            registry.register(IParticipantRegistry.Role.Trainer, bytes32(uint256(i + 11)), 100e18);
        }
        for (uint256 i; i < 4; ++i) {
            _fund(buyers[i], address(registry));
        }
        taskId = _finishTask();
        for (uint256 i; i < LEAVES; ++i) {
            _leaves[i] = _leaf(taskId, i);
            totalScore += scores[i];
        }
        _product();
        _list(0);
    }

    function _finishTask() private returns (uint256 id) {
        ITaskMarket.TaskParams memory p;
        p.token = IERC20(address(token));
        p.budget = LEAVES * LEAF_AMOUNT;
        p.modelSpecCid = "spec";
        p.initialModelCid = "m0";
        p.initialModelDigest = keccak256("m0");
        p.configCid = "cfg";
        p.validationCommitment = keccak256("val");
        p.rounds = 1;
        p.minTrainers = uint32(LEAVES);
        p.maxTrainers = uint32(LEAVES);
        p.minStake = 10e18;
        p.trainerBond = 1e18;
        p.disputeBond = 2e18;
        p.joinDeadline = uint64(block.timestamp + 1 hours);
        p.roundDuration = 1 hours;
        p.commitDuration = 1 hours;
        p.revealDuration = 1 hours;
        p.disputeDuration = 1 hours;
        p.claimDuration = 2 hours;
        p.oracles = new address[](3);
        for (uint256 i; i < 3; ++i) {
            p.oracles[i] = oracles[i];
        }
        p.quorumBps = 6600;
        p.oracleSlash = 10e18;
        p.acceptDuration = 1 hours;
        p.sealedValidationDigest = keccak256("sealed");
        vm.prank(requester);
        id = taskMarket.createTask(p);
        for (uint256 i; i < 3; ++i) {
            vm.prank(oracles[i]);
            taskMarket.acceptSeat(id);
        }
        for (uint256 i; i < LEAVES; ++i) {
            vm.prank(trainers[i]);
            taskMarket.join(id);
        }
        taskMarket.advance(id); // Open -> Training (full)
        for (uint256 i; i < LEAVES; ++i) {
            vm.prank(trainers[i]);
            taskMarket.commitUpdate(id, 1, "u", keccak256(abi.encode(i)), uint64(100 + i));
        }
        taskMarket.advance(id); // Training -> Committing
        bytes32 root = _root(id);
        for (uint256 i; i < 3; ++i) {
            bytes32 c = keccak256(abi.encode(id, oracles[i], root, keccak256(bytes("r")), bytes32(i)));
            vm.prank(oracles[i]);
            taskMarket.commitScore(id, c);
        }
        taskMarket.advance(id); // -> Revealing
        for (uint256 i; i < 3; ++i) {
            vm.prank(oracles[i]);
            taskMarket.revealScore(id, root, "r", bytes32(i));
        }
        taskMarket.advance(id); // -> Finalized
        vm.prank(trainers[0]);
        taskMarket.postModel(id, 2, "final", keccak256("final model"));
        vm.warp(taskMarket.task(id).claimsOpenAt + 1);
    }

    function _product() private {
        uint256 id = taskId;
        vm.prank(requester);
        market.configure(id, IModelMarket.ProductParams(3, 800_000, 10e18, 2, 1e18, 1 hours, 1 hours));
        vm.prank(requester);
        market.submitFinalModel(id, "final");
        vm.prank(developer);
        market.register(IModelMarket.Role.Developer, keccak256("dev key"));
        vm.prank(developer);
        market.submit(id, "dev model", keccak256("dev model"));
        _evaluate(1, 700_000); // the final aggregate fails the threshold
        _evaluate(2, 910_000); // the developer's model passes
        for (uint256 i; i < 2; ++i) {
            vm.prank(auditors[i]);
            market.register(IModelMarket.Role.Auditor, keccak256(abi.encode("auditor", i)));
            bytes32 digest = market.attestationDigest(id, keccak256("dev model"), "report", true);
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(_auditorKeys[i], digest);
            market.attest(id, 2, keccak256("dev model"), "report", true, abi.encodePacked(r, s, v));
        }
        vm.prank(requester);
        market.approve(id, 2);
        for (uint256 i; i < 3; ++i) {
            vm.prank(oracles[i]);
            market.attestTotalScore(id, totalScore);
        }
    }

    function _evaluate(uint8 sub, uint32 score) private {
        for (uint256 i; i < 3; ++i) {
            bytes32 c = market.evaluationCommitment(taskId, sub, oracles[i], score, bytes32(i));
            vm.prank(oracles[i]);
            market.commitEvaluation(taskId, sub, c);
        }
        for (uint256 i; i < 3; ++i) {
            vm.prank(oracles[i]);
            market.revealEvaluation(taskId, sub, score, bytes32(i));
        }
    }

    function _fund(address who, address registry) private {
        token.mint(who, 1_000_000e18);
        vm.startPrank(who);
        token.approve(address(taskMarket), type(uint256).max);
        token.approve(registry, type(uint256).max);
        token.approve(address(market), type(uint256).max);
        vm.stopPrank();
    }

    // --- the fuzzed actions ------------------------------------------------------------------

    /// @notice The requester lists the approved model again (at most MAX_LISTINGS), other splits.
    function list(uint256 seed) external {
        calls++;
        if (listings.length < MAX_LISTINGS) _list(seed);
    }

    function buy(uint256 seed) external {
        calls++;
        if (listings.length == 0) return;
        uint256 listingId = listings[(seed >> 8) % listings.length];
        vm.prank(buyers[seed % 4]);
        try market.buy(listingId, keccak256(abi.encode("buyer key", seed % 4))) returns (uint256 saleId) {
            sales.push(saleId);
            succeeded[0]++;
        } catch {}
    }

    function deliver(uint256 seed) external {
        calls++;
        if (sales.length == 0) return;
        uint256 saleId = _recentSale(seed);
        IModelMarket.SaleInfo memory s = market.sale(saleId);
        // Mostly the key holder; sometimes the buyer itself, which must revert.
        vm.prank((seed >> 8) % 8 == 0 ? s.buyer : keyHolder);
        try market.deliver(saleId, bytes("sealed key")) {
            IModelMarket.ListingInfo memory l = market.listing(s.listingId);
            succeeded[1]++;
            ghostDelivered[s.listingId] += s.price;
            ghostTrainerIn[s.listingId] +=
                s.price * (BPS - l.requesterBps - l.developerBps - l.auditorBps) / BPS;
        } catch {}
    }

    function refund(uint256 seed) external {
        calls++;
        if (sales.length == 0) return;
        uint256 saleId = _recentSale(seed);
        vm.prank(market.sale(saleId).buyer);
        try market.refund(saleId) {
            succeeded[2]++;
        } catch {}
    }

    /// @notice Anyone submits a leaf's royalty claim with its proof (leaf 3 is flagged: reverts).
    function claimRoyalty(uint256 seed) external {
        calls++;
        if (listings.length == 0) return;
        uint256 listingId = listings[(seed >> 8) % listings.length];
        uint256 i = seed % LEAVES;
        address account = trainers[i];
        uint256 before = token.balanceOf(account);
        vm.prank(buyers[(seed >> 16) % 4]);
        try market.claimRoyalty(listingId, i, account, LEAF_AMOUNT, scores[i], flags[i], proof(i)) {
            succeeded[3]++;
            ghostRoyalties[listingId] += token.balanceOf(account) - before;
        } catch {}
    }

    /// @notice The requester, developer, an auditor or a stranger withdraws its share.
    function claimShare(uint256 seed) external {
        calls++;
        if (listings.length == 0) return;
        uint256 listingId = listings[(seed >> 8) % listings.length];
        uint256 pick = seed % 5;
        address who = pick == 0 ? requester : pick == 1 ? developer : pick == 4 ? buyers[0] : auditors[pick - 2];
        uint256 before = token.balanceOf(who);
        vm.prank(who);
        try market.claimShare(listingId) {
            succeeded[4]++;
            if (pick >= 2) ghostAuditorPaid[listingId] += token.balanceOf(who) - before;
        } catch {}
    }

    function sweepRoyalties(uint256 seed) external {
        calls++;
        if (listings.length == 0) return;
        uint256 listingId = listings[seed % listings.length];
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        uint256 before = token.balanceOf(requester);
        try market.sweepRoyalties(listingId) {
            succeeded[5]++;
            uint256 dust = l.auditorPool % l.auditorCount;
            ghostSweptDust[listingId] += dust;
            ghostSweptTrainer[listingId] += token.balanceOf(requester) - before - dust;
        } catch {}
    }

    function claimBounty(uint256) external {
        calls++;
        try market.claimBounty(taskId) {} catch {}
    }

    function reclaim(uint256) external {
        calls++;
        try market.reclaim(taskId) {} catch {}
    }

    function warp(uint256 seed) external {
        calls++;
        // Mostly short steps (deliveries in their window), sometimes long ones (expiry, refunds, sweep).
        vm.warp(block.timestamp + ((seed >> 8) % 10 == 0 ? 3 hours : 1 + seed % 15 minutes));
    }

    // --- helpers --------------------------------------------------------------------------------

    /// @dev One of the last four sales: older ones are mostly settled already.
    function _recentSale(uint256 seed) private view returns (uint256) {
        uint256 n = sales.length;
        return sales[n - 1 - seed % (n < 4 ? n : 4)];
    }

    function _list(uint256 seed) private {
        uint16 requesterBps = uint16(seed % 3000);
        uint16 developerBps = uint16((seed >> 16) % 2000);
        uint16 auditorBps = uint16((seed >> 32) % 1000);
        IModelMarket.ListingParams memory p = IModelMarket.ListingParams({
            taskId: taskId,
            submission: 2,
            // An odd price (≥ 1 token) so every split rounds.
            price: 1e18 + (seed >> 48) % 1e19 + 7,
            licenseCid: "license",
            expiry: uint64(block.timestamp + 8 hours),
            deliveryWindow: 1 hours,
            royaltyWindow: 6 hours,
            keyHolder: keyHolder,
            requesterBps: requesterBps,
            developerBps: developerBps,
            auditorBps: auditorBps,
            versions: IModelVersions(address(0)),
            version: 0
        });
        vm.prank(requester);
        listings.push(market.list(p));
    }

    /// @dev The one place a payout leaf is computed (the encoding lives in PayoutLeaf).
    function _leaf(uint256 id, uint256 i) private view returns (bytes32) {
        return PayoutLeaf.hash(block.chainid, address(taskMarket), id, i, trainers[i], LEAF_AMOUNT, scores[i], flags[i]);
    }

    function _root(uint256 id) private view returns (bytes32) {
        return _pair(_pair(_leaf(id, 0), _leaf(id, 1)), _pair(_leaf(id, 2), _leaf(id, 3)));
    }

    /// @notice The proof of leaf `i` in the four-leaf table.
    function proof(uint256 i) public view returns (bytes32[] memory p) {
        p = new bytes32[](2);
        p[0] = _leaves[i ^ 1];
        p[1] = i < 2 ? _pair(_leaves[2], _leaves[3]) : _pair(_leaves[0], _leaves[1]);
    }

    function _pair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function listingCount() external view returns (uint256) {
        return listings.length;
    }

    function saleCount() external view returns (uint256) {
        return sales.length;
    }
}
