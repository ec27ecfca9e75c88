// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ModelMarket} from "../../ModelMarket.sol";
import {RewardToken} from "../../RewardToken.sol";
import {IModelMarket} from "../../interfaces/IModelMarket.sol";
import {IModelVersions} from "../../interfaces/IModelVersions.sol";
import {ITaskMarket} from "../../interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "../../libraries/PayoutLeaf.sol";

/// @title FinishedTaskStub
/// @notice The ITaskMarket views ModelMarket reads, for one finished task (id 1) whose requester,
///         only oracle and key holder is the handler. Stands in for a whole TaskMarket run in the
///         invariant harness; the Anvil tests use the real TaskMarket.
contract FinishedTaskStub {
    /// @notice Only the handler sets the root.
    error FinishedTaskStubNotHandler(address caller);

    address private immutable _handler;
    IERC20 private immutable _token;
    bytes32 private _root;

    /// @param handler_ The handler (requester, oracle).
    /// @param token_ The task's token.
    constructor(address handler_, IERC20 token_) {
        _handler = handler_;
        _token = token_;
    }

    /// @notice Set the final payout root (its leaves bind this stub's address, so the handler
    ///         builds them once the stub exists).
    /// @param root_ The root.
    function setRoot(bytes32 root_) external {
        if (msg.sender != _handler) revert FinishedTaskStubNotHandler(msg.sender);
        _root = root_;
    }

    /// @notice The task, Finalized with claims open since time 0.
    /// @return t The task.
    function task(uint256) external view returns (ITaskMarket.TaskInfo memory t) {
        t.requester = _handler;
        t.token = _token;
        t.phase = ITaskMarket.Phase.Finalized;
        t.rounds = 1;
        t.payoutRoot = _root;
        t.quorumBps = 6600;
        t.committeeStake = 1;
        t.committeeSize = 1;
    }

    /// @notice The handler is the only oracle.
    /// @param account The address.
    /// @return Whether it is the handler.
    function isOracle(uint256, address account) external view returns (bool) {
        return account == _handler;
    }

    /// @notice Nobody is a trainer (auditors are not used here).
    /// @return False.
    function isTrainer(uint256, address) external pure returns (bool) {
        return false;
    }

    /// @notice The handler's weight is 1.
    /// @param account The address.
    /// @return 1 for the handler, else 0.
    function oracleWeight(uint256, address account) external view returns (uint256) {
        return account == _handler ? 1 : 0;
    }

    /// @notice The stub is its own registry (ModelMarket reserves evaluation stake there).
    /// @return This stub.
    function registry() external view returns (address) {
        return address(this);
    }

    /// @notice Accepts the evaluation stake reservation (the stub task's oracleSlash is 0).
    function reserve(address, uint256) external pure {}

    /// @notice A fixed final model digest.
    /// @return The digest.
    function modelDigest(uint256, uint16) external pure returns (bytes32) {
        return keccak256("final model");
    }
}

/// @notice The hevm cheat codes the handler uses (forge's `vm`; absent on a plain devnet).
interface IHevm {
    /// @notice Set block.timestamp.
    /// @param timestamp The new time.
    function warp(uint256 timestamp) external;
}

/// @title ModelMarketRoyaltyHandler
/// @notice Foundry-style invariant handler for ModelMarket's royalty accounting: random sales,
///         deliveries, refunds, royalty claims with real payout leaves, share claims, sweeps and
///         time jumps on one listing of four leaves (one flagged). The `check*` views are the
///         invariants (they revert with a reason when broken); a forge invariant test targets
///         this contract and calls them, and the Anvil test drives it from Python.
/// @dev Every action is total: it does nothing when its preconditions do not hold, so a fuzzer
///      never wastes a run on an expected revert. Sales are capped at MAX_SALES (no unbounded loop).
contract ModelMarketRoyaltyHandler {
    /// @notice Most sales the handler makes.
    uint256 public constant MAX_SALES = 64;
    /// @notice Leaves in the payout table.
    uint256 public constant LEAVES = 4;

    IHevm private constant VM = IHevm(address(uint160(uint256(keccak256("hevm cheat code")))));

    RewardToken public immutable token;
    ModelMarket public immutable market;
    uint256 public immutable listingId;
    uint256 public immutable totalScore;

    address[LEAVES] public accounts;
    uint32[LEAVES] public scores;
    uint256[LEAVES] public flags;
    bytes32[LEAVES] private _leaves;
    uint256[] public sales;

    /// @notice Ghost: Σ prices of delivered sales.
    uint256 public ghostDelivered;
    /// @notice Ghost: Σ royalties paid to leaves.
    uint256 public ghostRoyalties;
    /// @notice Ghost: tokens swept back from the trainers' pool.
    uint256 public ghostSwept;
    /// @notice Ghost: tokens taken by claimShare.
    uint256 public ghostShares;

    constructor() {
        token = new RewardToken("Royalty", "ROY", address(this));
        scores = [uint32(1_000_000), 640_000, 333_333, 0];
        flags = [uint256(0), 0, 0, 2];
        FinishedTaskStub stub = new FinishedTaskStub(address(this), token);
        uint256 total;
        for (uint256 i; i < LEAVES; ++i) {
            accounts[i] = address(uint160(0xA11CE + i));
            _leaves[i] = PayoutLeaf.hash(block.chainid, address(stub), 1, i, accounts[i], 100 ether, scores[i], flags[i]);
            total += scores[i];
        }
        totalScore = total;
        stub.setRoot(_pair(_pair(_leaves[0], _leaves[1]), _pair(_leaves[2], _leaves[3])));
        market = new ModelMarket(ITaskMarket(address(stub)));
        token.mint(address(this), 1e30);
        token.approve(address(market), type(uint256).max);
        market.configure(1, IModelMarket.ProductParams(1, 500_000, 0, 0, 0, 100, 100));
        market.submitFinalModel(1, "bafy-final");
        market.commitEvaluation(1, 1, market.evaluationCommitment(1, 1, address(this), 900_000, bytes32(0)));
        market.revealEvaluation(1, 1, 900_000, bytes32(0));
        market.approve(1, 1);
        market.attestTotalScore(1, total);
        listingId = market.list(
            IModelMarket.ListingParams({
                taskId: 1,
                submission: 1,
                price: 7_777_777_777_777_777_777,
                licenseCid: "bafy-license",
                expiry: uint64(block.timestamp + 20_000),
                deliveryWindow: 1000,
                royaltyWindow: 5000,
                keyHolder: address(this),
                requesterBps: 1000,
                developerBps: 500,
                auditorBps: 0,
                versions: IModelVersions(address(0)),
                version: 0
            })
        );
    }

    // --- actions --------------------------------------------------------------------------------

    /// @notice Buy once more while the listing is open.
    function buy() external {
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        if (block.timestamp > l.expiry || sales.length >= MAX_SALES) return;
        sales.push(market.buy(listingId, keccak256(abi.encode(sales.length))));
    }

    /// @notice Deliver a paid sale before its deadline.
    /// @param seed Picks the sale.
    function deliver(uint256 seed) external {
        if (sales.length == 0) return;
        uint256 saleId = sales[seed % sales.length];
        IModelMarket.SaleInfo memory s = market.sale(saleId);
        if (s.status != IModelMarket.SaleStatus.Paid || block.timestamp > s.deliverBy) return;
        market.deliver(saleId, bytes("sealed key"));
        ghostDelivered += s.price;
    }

    /// @notice Refund an undelivered sale after its deadline.
    /// @param seed Picks the sale.
    function refund(uint256 seed) external {
        if (sales.length == 0) return;
        uint256 saleId = sales[seed % sales.length];
        IModelMarket.SaleInfo memory s = market.sale(saleId);
        if (s.status != IModelMarket.SaleStatus.Paid || block.timestamp <= s.deliverBy) return;
        market.refund(saleId);
    }

    /// @notice Claim a leaf's royalties with its proof.
    /// @param seed Picks the leaf.
    function claimRoyalty(uint256 seed) external {
        uint256 i = seed % LEAVES;
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        if (flags[i] != 0 || block.timestamp > l.royaltyDeadline) return;
        (uint256 accrued, uint256 paid) = market.royaltyOf(listingId, i, scores[i]);
        if (accrued == paid) return;
        uint256 before = token.balanceOf(accounts[i]);
        market.claimRoyalty(listingId, i, accounts[i], 100 ether, scores[i], flags[i], proof(i));
        ghostRoyalties += token.balanceOf(accounts[i]) - before;
    }

    /// @notice The requester (= developer of submission 1) takes its shares.
    function claimShare() external {
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        uint256 owed = l.gross - l.trainerPool - l.auditorPool;
        if (owed == l.requesterPaid + l.developerPaid) return;
        uint256 before = token.balanceOf(address(this));
        market.claimShare(listingId);
        ghostShares += token.balanceOf(address(this)) - before;
    }

    /// @notice Sweep the trainers' remainder after the royalty deadline.
    function sweep() external {
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        if (block.timestamp <= l.royaltyDeadline || l.swept) return;
        uint256 before = token.balanceOf(address(this));
        market.sweepRoyalties(listingId);
        ghostSwept += token.balanceOf(address(this)) - before;
    }

    /// @notice Move time forward (forge only: uses the hevm cheat code).
    /// @param secondsAhead How far, bounded to 1..3000.
    function warp(uint256 secondsAhead) external {
        VM.warp(block.timestamp + 1 + (secondsAhead % 3000));
    }

    // --- invariants -----------------------------------------------------------------------------

    /// @notice Σ royalties paid + swept = the listing's trainerClaimed ≤ trainerGross; after the
    ///         sweep, = trainerGross exactly; each leaf paid ≤ its entitlement; the dust is less
    ///         than the number of leaves.
    function checkRoyaltyConservation() external view {
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        uint256 pool = market.trainerGross(listingId);
        require(l.gross == ghostDelivered, "gross != delivered sales");
        require(pool == l.trainerPool && pool <= l.gross, "trainer pool out of bounds");
        require(ghostRoyalties + ghostSwept == l.trainerClaimed, "paid + swept != trainerClaimed");
        require(l.trainerClaimed <= pool, "trainers paid above their pool");
        if (l.swept) require(l.trainerClaimed == pool, "sweep left trainer money behind");
        uint256 entitled;
        for (uint256 i; i < LEAVES; ++i) {
            uint256 due = flags[i] == 0 ? pool * scores[i] / totalScore : 0;
            (, uint256 paid) = market.royaltyOf(listingId, i, scores[i]);
            require(paid <= due, "a leaf was paid above its entitlement");
            entitled += due;
        }
        require(entitled <= pool && pool - entitled < LEAVES, "rounding dust out of bounds");
    }

    /// @notice The market holds exactly the pending payments and what it still owes.
    function checkSolvency() external view {
        IModelMarket.ListingInfo memory l = market.listing(listingId);
        uint256 owed = l.pending + l.gross - ghostShares - l.trainerClaimed;
        require(token.balanceOf(address(market)) == owed, "market balance != obligations");
    }

    /// @notice The proof of leaf `i` in the four-leaf tree.
    /// @param i The leaf.
    /// @return p Its siblings, leaf to root.
    function proof(uint256 i) public view returns (bytes32[] memory p) {
        p = new bytes32[](2);
        p[0] = _leaves[i ^ 1];
        p[1] = i < 2 ? _pair(_leaves[2], _leaves[3]) : _pair(_leaves[0], _leaves[1]);
    }

    /// @notice The handler's action count so far.
    /// @return The number of sales.
    function saleCount() external view returns (uint256) {
        return sales.length;
    }

    function _pair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }
}
