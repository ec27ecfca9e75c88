// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {DataSourcing} from "../../contracts/DataSourcing.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IDataSourcing} from "../../contracts/interfaces/IDataSourcing.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "../../contracts/libraries/PayoutLeaf.sol";
import {Vm} from "./Vm.sol";

/// @notice Drives DataSourcing (issue 14) against a real TaskMarket whose tasks it gates: requests
///         (each for a new task), seats, sealed offers (commit-reveal), selection commit-reveal by
///         a 2-of-3 quorum (an honest root, an under-declared total, or a split vote), winners'
///         leaf registration, the task's training (joins through the gate, one round), its
///         scoring (a payout table flagging random owners, or no reveal: scoring fails),
///         threshold payment claims (with the owner's row, sometimes with its flags forged to 0),
///         refunds, cancellations and time. Every action is a real call that may
///         revert (a revert is a no-op for the invariants); the ghosts record only what moved.
contract DataSourcingHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant OWNERS = 4;
    uint256 public constant MAX_REQUESTS = 4;

    RewardToken public immutable token;
    TaskMarket public immutable taskMarket;
    DataSourcing public immutable sourcing;

    address public immutable requester = address(0xAA01);
    address[3] public oracles = [address(0xB001), address(0xB002), address(0xB003)];
    address[OWNERS] public owners = [address(0xC001), address(0xC002), address(0xC003), address(0xC004)];

    uint256[] public requests;

    struct Offer {
        uint256 ask;
        bytes32 salt;
    }

    struct Vote {
        uint8 variant;
        bytes32 salt;
    }

    mapping(uint256 requestId => mapping(address owner => Offer)) private _offers;
    mapping(uint256 requestId => mapping(address oracle => Vote)) private _votes;
    /// @notice Per task: bit i set = owner i is flagged in the payout table the oracles commit.
    mapping(uint256 taskId => uint256) private _flagBits;

    /// @notice Ghosts: tokens received by winners and by the requester (refunds, cancellations).
    mapping(uint256 requestId => uint256) public ghostPaid;
    mapping(uint256 requestId => uint256) public ghostRefunded;
    /// @notice Tokens paid to winners the final payout table flags (must stay 0).
    uint256 public ghostFlaggedPaid;
    uint256 public calls;
    /// @notice Successful actions (coverage: request, selection final, register, claim, refund,
    ///         cancel, task scored, flagged claim refused).
    uint256[8] public succeeded;

    constructor(RewardToken token_, TaskMarket taskMarket_, DataSourcing sourcing_) {
        token = token_;
        taskMarket = taskMarket_;
        sourcing = sourcing_;
    }

    /// @notice Fund and register the committee and the data owners (once, by the test).
    function setUp(IParticipantRegistry registry) external {
        _fund(requester, address(registry));
        for (uint256 i; i < 3; ++i) {
            _fund(oracles[i], address(registry));
            vm.prank(oracles[i]);
            registry.register(IParticipantRegistry.Role.Oracle, bytes32(uint256(i + 1)), 100e18);
        }
        for (uint256 i; i < OWNERS; ++i) {
            _fund(owners[i], address(registry));
            vm.prank(owners[i]);
            registry.register(IParticipantRegistry.Role.Trainer, bytes32(uint256(i + 11)), 100e18);
        }
    }

    function _fund(address who, address registry) private {
        token.mint(who, 1_000_000e18);
        vm.startPrank(who);
        token.approve(address(taskMarket), type(uint256).max);
        token.approve(registry, type(uint256).max);
        token.approve(address(sourcing), type(uint256).max);
        vm.stopPrank();
    }

    // --- the fuzzed actions ------------------------------------------------------------------

    /// @notice A new task gated by DataSourcing (committee accepted) and its data request.
    function createRequest(uint256 seed) external {
        calls++;
        if (requests.length >= MAX_REQUESTS) return;
        uint256 taskId = _createTask();
        IDataSourcing.RequestParams memory p;
        p.taskId = taskId;
        p.token = IERC20(address(token));
        p.budget = 1e18 + seed % 20e18;
        p.schemaCid = "schema";
        p.validationCommitment = keccak256("val");
        p.oracles = new address[](3);
        for (uint256 i; i < 3; ++i) {
            p.oracles[i] = oracles[i];
        }
        p.quorum = 2;
        uint64 now_ = uint64(block.timestamp);
        p.offerDeadline = now_ + 1 hours;
        p.revealDeadline = now_ + 2 hours;
        p.selectCommitDeadline = now_ + 3 hours;
        p.selectRevealDeadline = now_ + 4 hours;
        p.claimDeadline = now_ + 24 hours;
        vm.prank(requester);
        requests.push(sourcing.createRequest(p));
        succeeded[0]++;
    }

    /// @notice Every member still offered a seat on the request accepts it.
    function acceptSeat(uint256 seed) external {
        calls++;
        uint256 id = _request(seed >> 8);
        for (uint256 k; k < 3; ++k) {
            vm.prank(oracles[k]);
            try sourcing.acceptSeat(id) {} catch {}
        }
    }

    /// @notice A data owner seals an ask (0.1 .. 8 tokens) and a sample count.
    function commitOffer(uint256 seed) external {
        calls++;
        uint256 id = _request(seed >> 8);
        address owner = owners[seed % OWNERS];
        uint256 ask = 1e17 + (seed >> 16) % 8e18;
        bytes32 salt = keccak256(abi.encode(seed));
        bytes32 commitment = sourcing.offerCommitment(id, owner, ask, 100, "sketch", salt);
        vm.prank(owner); // after the view call above: a prank applies to the next call only
        try sourcing.commitOffer(id, commitment) {
            _offers[id][owner] = Offer(ask, salt);
        } catch {}
    }

    /// @notice Every owner that committed reveals, except (sometimes) one that stays sealed.
    function revealOffer(uint256 seed) external {
        calls++;
        for (uint256 j; j < requests.length; ++j) {
            _revealOffers(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    function _revealOffers(uint256 id, uint256 seed) private {
        for (uint256 k; k < OWNERS; ++k) {
            if (seed % 8 == k) continue;
            address owner = owners[k];
            Offer memory o = _offers[id][owner];
            vm.prank(owner);
            try sourcing.revealOffer(id, o.ask, 100, "sketch", o.salt) {} catch {}
        }
    }

    /// @notice An oracle commits the honest selection (variant 0), the same leaves with a total
    ///         declared one wei short (variant 1), or the honest leaves without the first winner
    ///         (variant 2, a split vote).
    function commitSelection(uint256 seed) external {
        calls++;
        // Every request at once: the selection windows are an hour each, and one random request
        // per call let most windows pass with no vote at all.
        for (uint256 j; j < requests.length; ++j) {
            _commitSelection(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    function _commitSelection(uint256 id, uint256 seed) private {
        for (uint256 k; k < 3; ++k) {
            address oracle = oracles[k];
            uint256 pick = (seed >> (4 + 3 * k)) % 8;
            uint8 variant = pick < 5 ? 0 : pick < 7 ? 1 : 2;
            bytes32 salt = keccak256(abi.encode("selection", seed, k));
            (bytes32 root, uint256 total) = selection(id, variant);
            bytes32 commitment = sourcing.selectionCommitment(id, oracle, root, total, "report", salt);
            vm.prank(oracle);
            try sourcing.commitSelection(id, commitment) {
                _votes[id][oracle] = Vote(variant, salt);
            } catch {}
        }
    }

    /// @notice Committed members reveal (one of them, sometimes, does not).
    function revealSelection(uint256 seed) external {
        calls++;
        for (uint256 j; j < requests.length; ++j) {
            _revealSelection(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    function _revealSelection(uint256 id, uint256 seed) private {
        for (uint256 k; k < 3; ++k) {
            if (seed % 6 == k) continue;
            address oracle = oracles[k];
            Vote memory v = _votes[id][oracle];
            (bytes32 root, uint256 total) = selection(id, v.variant);
            vm.prank(oracle);
            try sourcing.revealSelection(id, root, total, "report", v.salt) {
                if (sourcing.request(id).selectionRoot != bytes32(0)) succeeded[1]++;
            } catch {}
        }
    }

    /// @notice A data owner proves its leaf in the finalized selection.
    function registerWinner(uint256 seed) external {
        calls++;
        uint256 id = _request(seed >> 8);
        uint256 i = seed % OWNERS;
        bytes32 finalRoot = _selectionRoot(id);
        uint8 variant = 0;
        for (uint8 k = 1; k < 3; ++k) {
            (bytes32 root,) = selection(id, k);
            if (root == finalRoot) variant = k;
        }
        uint256[OWNERS] memory pay = _payments(id, variant);
        bytes32[] memory proof = _proof(id, variant, i); // view calls: before the prank
        vm.prank(owners[i]);
        try sourcing.registerWinner(id, pay[i], proof) {
            succeeded[2]++;
        } catch {}
    }

    /// @notice The request's task: registered winners join through the gate, the round is
    ///         trained (one update each) and training ends; each step may revert.
    function train(uint256 seed) external {
        calls++;
        uint256 taskId = _taskOf(_request(seed));
        if (taskId == 0) return;
        for (uint256 i; i < OWNERS; ++i) {
            vm.prank(owners[i]);
            try taskMarket.join(taskId) {} catch {}
        }
        try taskMarket.advance(taskId) {} catch {}
        for (uint256 i; i < OWNERS; ++i) {
            vm.prank(owners[i]);
            try taskMarket.commitUpdate(taskId, 1, "u", keccak256(abi.encode(taskId, i)), 100) {} catch {}
        }
        try taskMarket.advance(taskId) {} catch {}
    }

    /// @notice The task's committee scores it: each oracle commits (unless scoring is to fail)
    ///         the payout table that flags the owners of a random bit set; then reveals; each
    ///         step may revert (wrong phase, too early) and is retried by later calls.
    function score(uint256 seed) external {
        calls++;
        uint256 taskId = _taskOf(_request(seed >> 8));
        if (taskId == 0) return;
        ITaskMarket.TaskInfo memory t = taskMarket.task(taskId);
        if (t.phase == ITaskMarket.Phase.Committing && t.committedCount == 0 && seed % 5 != 0) {
            _flagBits[taskId] = (seed >> 16) % 16;
        }
        bytes32 root = _payoutRoot(taskId);
        bool fail = seed % 5 == 0 && t.committedCount == 0;
        for (uint256 k; k < 3 && !fail; ++k) {
            bytes32 c = keccak256(abi.encode(taskId, oracles[k], root, keccak256(bytes("r")), bytes32(k + 1)));
            vm.prank(oracles[k]);
            try taskMarket.commitScore(taskId, c) {} catch {}
        }
        try taskMarket.advance(taskId) {} catch {}
        for (uint256 k; k < 3; ++k) {
            vm.prank(oracles[k]);
            try taskMarket.revealScore(taskId, root, "r", bytes32(k + 1)) {} catch {}
        }
        try taskMarket.advance(taskId) {
            if (taskMarket.task(taskId).outcome != ITaskMarket.Outcome.None) succeeded[6]++;
        } catch {}
    }

    /// @notice A winner claims with its row of the task's payout table (leaf arguments ignored if
    ///         scoring failed); now and then a flagged owner forges its flags to 0.
    function claimPayment(uint256 seed) external {
        calls++;
        uint256 id = _request(seed >> 8);
        uint256 i = seed % OWNERS;
        address owner = owners[i];
        uint256 taskId = _taskOf(id);
        bool flagged = (_flagBits[taskId] >> i) & 1 == 1;
        uint256 flags = flagged && (seed >> 4) % 4 != 0 ? PayoutLeaf.FLAG_FREE_RIDER : 0;
        bytes32[] memory proof = _payoutProof(taskId, i);
        bool scored = taskId != 0 && taskMarket.task(taskId).outcome == ITaskMarket.Outcome.Scored;
        uint256 before = token.balanceOf(owner);
        vm.prank(owner);
        try sourcing.claimPayment(id, i, 0, 0, flags, proof) {
            succeeded[3]++;
            uint256 got = token.balanceOf(owner) - before;
            ghostPaid[id] += got;
            if (scored && flagged) ghostFlaggedPaid += got;
        } catch (bytes memory reason) {
            if (bytes4(reason) == IDataSourcing.DataSourcingWinnerFlagged.selector) succeeded[7]++;
        }
    }

    function refund(uint256 seed) external {
        calls++;
        uint256 id = _request(seed);
        uint256 before = token.balanceOf(requester);
        try sourcing.refund(id) {
            succeeded[4]++;
            ghostRefunded[id] += token.balanceOf(requester) - before;
        } catch {}
    }

    /// @notice The requester cancels, rarely: a cancel is accepted until a selection is final,
    ///         so at the fuzzer's even odds every request died before its selection window.
    function cancel(uint256 seed) external {
        calls++;
        if (uint256(keccak256(abi.encode(seed))) % 64 != 0) return;
        uint256 id = _request(seed);
        uint256 before = token.balanceOf(requester);
        try sourcing.cancel(id) {
            succeeded[5]++;
            ghostRefunded[id] += token.balanceOf(requester) - before;
        } catch {}
    }

    function warp(uint256 seed) external {
        calls++;
        // Mostly short steps, so each one-hour window (offers, reveals, selection commit and
        // reveal) sees a dozen steps of actions; now and then a jump past a whole window.
        // (Hashed: the fuzzer favours edge values such as 0, which would always pick the jump.)
        uint256 r = uint256(keccak256(abi.encode("warp", seed)));
        vm.warp(block.timestamp + (r % 32 == 0 ? 3 hours : 1 + (r >> 8) % 20 minutes));
    }

    // --- the selection ----------------------------------------------------------------------

    /// @notice The root and declared total of a selection variant over the revealed offers:
    ///         winners in owner order while their asks fit the budget, each paid its ask (a leaf
    ///         per owner; a loser's payment is 0).
    function selection(uint256 id, uint8 variant) public view returns (bytes32 root, uint256 total) {
        uint256[OWNERS] memory pay = _payments(id, variant);
        bytes32[OWNERS] memory leaves;
        for (uint256 i; i < OWNERS; ++i) {
            leaves[i] = _leaf(id, owners[i], pay[i]);
            total += pay[i];
        }
        root = _pair(_pair(leaves[0], leaves[1]), _pair(leaves[2], leaves[3]));
        if (variant == 1 && total != 0) total -= 1;
    }

    function _payments(uint256 id, uint8 variant) private view returns (uint256[OWNERS] memory pay) {
        if (id == 0) return pay;
        uint256 budget;
        try sourcing.request(id) returns (IDataSourcing.RequestInfo memory r) {
            budget = r.budget;
        } catch {
            return pay;
        }
        uint256 spent;
        bool skipped = variant != 2;
        for (uint256 i; i < OWNERS; ++i) {
            (uint256 ask, uint64 samples) = sourcing.offer(id, owners[i]);
            if (samples == 0 || spent + ask > budget) continue;
            if (!skipped) {
                skipped = true;
                continue;
            }
            pay[i] = ask;
            spent += ask;
        }
    }

    function _proof(uint256 id, uint8 variant, uint256 i) private view returns (bytes32[] memory p) {
        uint256[OWNERS] memory pay = _payments(id, variant);
        bytes32[OWNERS] memory leaves;
        for (uint256 k; k < OWNERS; ++k) {
            leaves[k] = _leaf(id, owners[k], pay[k]);
        }
        p = new bytes32[](2);
        p[0] = leaves[i ^ 1];
        p[1] = i < 2 ? _pair(leaves[2], leaves[3]) : _pair(leaves[0], leaves[1]);
    }

    /// @dev The selection leaf, as DataSourcing.registerWinner hashes it.
    function _leaf(uint256 id, address owner, uint256 payment) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(id, owner, payment))));
    }

    function _pair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    // --- the payout table -------------------------------------------------------------------

    /// @dev One row per owner (amount and score 0: only the flags matter here).
    function _payoutLeaves(uint256 taskId) private view returns (bytes32[OWNERS] memory leaves) {
        uint256 bits = _flagBits[taskId];
        for (uint256 i; i < OWNERS; ++i) {
            uint256 flags = (bits >> i) & 1 == 1 ? PayoutLeaf.FLAG_FREE_RIDER : 0;
            leaves[i] = PayoutLeaf.hash(block.chainid, address(taskMarket), taskId, i, owners[i], 0, 0, flags);
        }
    }

    function _payoutRoot(uint256 taskId) private view returns (bytes32) {
        bytes32[OWNERS] memory l = _payoutLeaves(taskId);
        return _pair(_pair(l[0], l[1]), _pair(l[2], l[3]));
    }

    function _payoutProof(uint256 taskId, uint256 i) private view returns (bytes32[] memory p) {
        bytes32[OWNERS] memory l = _payoutLeaves(taskId);
        p = new bytes32[](2);
        p[0] = l[i ^ 1];
        p[1] = i < 2 ? _pair(l[2], l[3]) : _pair(l[0], l[1]);
    }

    // --- helpers --------------------------------------------------------------------------------

    function _createTask() private returns (uint256 id) {
        ITaskMarket.TaskParams memory p;
        p.token = IERC20(address(token));
        p.budget = 10e18;
        p.modelSpecCid = "spec";
        p.initialModelCid = "m0";
        p.initialModelDigest = keccak256("m0");
        p.configCid = "cfg";
        p.validationCommitment = keccak256("val");
        p.rounds = 1;
        p.minTrainers = 1;
        p.maxTrainers = uint32(OWNERS);
        p.minStake = 10e18;
        p.trainerBond = 1e18;
        p.disputeBond = 2e18;
        p.joinDeadline = uint64(block.timestamp + 6 hours);
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
        p.joinGate = address(sourcing);
        vm.prank(requester);
        id = taskMarket.createTask(p);
        for (uint256 i; i < 3; ++i) {
            vm.prank(oracles[i]);
            taskMarket.acceptSeat(id);
        }
    }

    function _request(uint256 seed) private view returns (uint256) {
        uint256 n = requests.length;
        return n == 0 ? 0 : requests[seed % n];
    }

    function _taskOf(uint256 id) private view returns (uint256) {
        return id == 0 ? 0 : sourcing.request(id).taskId;
    }

    function _selectionRoot(uint256 id) private view returns (bytes32) {
        return id == 0 ? bytes32(0) : sourcing.request(id).selectionRoot;
    }

    function requestCount() external view returns (uint256) {
        return requests.length;
    }
}
