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
///         refunds, cancellations, offer bonds (posted at commit, returned at reveal, forfeited
///         to the requester when never revealed) and time. Every action is a real call that may
///         revert (a revert is a no-op for the invariants); the ghosts record only what moved.
///         `drive` walks the live requests through every phase (the single random actions
///         rarely line up into a whole request: seats, offers and both commit-reveals must each
///         fall in their one-hour window, then registration, training, scoring and claims).
contract DataSourcingHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant OWNERS = 4;
    /// @notice Requests per run; the random actions and `drive` act on the latest LIVE, and a new
    ///         one opens only once the oldest of those is settled.
    uint256 public constant MAX_REQUESTS = 8;
    uint256 public constant LIVE = 4;

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
    /// @notice Requests `drive` has seen cancelled or refunded after their claim deadline: the
    ///         oldest of the latest LIVE must be, before a new request is opened.
    mapping(uint256 requestId => bool) private _settled;
    /// @notice Per request, what `drive` need not retry: bit k = owner k registered; bit 4 + k =
    ///         owner k paid; and 1 + the variant of the final selection once it is known.
    mapping(uint256 requestId => uint256) private _done;
    mapping(uint256 requestId => uint8) private _finalVariant;
    /// @notice Per request, the owner that never reveals (4..7: none), so that bonds are
    ///         forfeited in about half the requests (a skip per call alone is retried later).
    mapping(uint256 requestId => uint256) private _sealedOwner;
    /// @notice 1 + a task's outcome once it is Closed or Cancelled (nothing changes after).
    mapping(uint256 taskId => uint8) private _taskEnd;

    /// @notice Ghosts: tokens received by winners and by the requester (refunds, cancellations);
    ///         offer bonds posted by owners, returned to them, and forfeited to the requester.
    struct Ghost {
        uint256 paid;
        uint256 refunded;
        uint256 bondsPosted;
        uint256 bondsReturned;
        uint256 bondsForfeited;
    }

    mapping(uint256 requestId => Ghost) public ghost; // one getter: the invariant reads it per call
    /// @notice Tokens paid to winners the final payout table flags (must stay 0).
    uint256 public ghostFlaggedPaid;
    uint256 public calls;
    /// @notice Successful actions in this run (coverage, `COVERAGE` names them).
    uint256 public constant COUNTERS = 12;
    uint256[COUNTERS] public succeeded;
    string public constant COVERAGE = "requests selections registrations paid(scored) paid(failed)"
        " refused(flagged) refused(forged) refunds cancels scored failed forfeits";

    uint256 internal constant REQUESTS = 0;
    uint256 internal constant SELECTIONS = 1;
    uint256 internal constant REGISTRATIONS = 2;
    uint256 internal constant PAID_SCORED = 3;
    uint256 internal constant PAID_FAILED = 4;
    uint256 internal constant REFUSED_FLAGGED = 5;
    uint256 internal constant REFUSED_FORGED = 6;
    uint256 internal constant REFUNDS = 7;
    uint256 internal constant CANCELS = 8;
    uint256 internal constant TASKS_SCORED = 9;
    uint256 internal constant TASKS_FAILED = 10;
    uint256 internal constant FORFEITS = 11;

    constructor(RewardToken token_, TaskMarket taskMarket_, DataSourcing sourcing_) {
        token = token_;
        taskMarket = taskMarket_;
        sourcing = sourcing_;
    }

    /// @notice Fund and register the committee and the data owners (once, by the test). Stakes
    ///         of 1,000 tokens: every task reserves 10 of each seat's and each joiner's, and
    ///         nothing releases them within a run (MAX_REQUESTS tasks).
    function setUp(IParticipantRegistry registry) external {
        _fund(requester, address(registry));
        for (uint256 i; i < 3; ++i) {
            _fund(oracles[i], address(registry));
            vm.prank(oracles[i]);
            registry.register(IParticipantRegistry.Role.Oracle, bytes32(uint256(i + 1)), 1000e18);
        }
        for (uint256 i; i < OWNERS; ++i) {
            _fund(owners[i], address(registry));
            vm.prank(owners[i]);
            registry.register(IParticipantRegistry.Role.Trainer, bytes32(uint256(i + 11)), 1000e18);
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
        _createRequest(seed, block.timestamp);
    }

    /// @notice Every member still offered a seat on the request accepts it.
    function acceptSeat(uint256 seed) external {
        calls++;
        _acceptSeats(_request(seed >> 8), 3);
    }

    /// @notice A data owner seals an ask (0.1 .. 8 tokens) and a sample count.
    function commitOffer(uint256 seed) external {
        calls++;
        _commitOffer(_request(seed >> 8), seed % OWNERS, seed);
    }

    /// @notice Every owner that committed reveals, except (sometimes) one that stays sealed.
    function revealOffer(uint256 seed) external {
        calls++;
        for (uint256 j = _first(); j < requests.length; ++j) {
            _revealOffers(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    /// @notice An oracle commits the honest selection (variant 0), the same leaves with a total
    ///         declared one wei short (variant 1), or the honest leaves without the first winner
    ///         (variant 2, a split vote).
    function commitSelection(uint256 seed) external {
        calls++;
        // Every live request at once: the selection windows are an hour each, and one random
        // request per call let most windows pass with no vote at all.
        for (uint256 j = _first(); j < requests.length; ++j) {
            _commitSelection(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    /// @notice Committed members reveal (one of them, sometimes, does not).
    function revealSelection(uint256 seed) external {
        calls++;
        for (uint256 j = _first(); j < requests.length; ++j) {
            _revealSelection(requests[j], uint256(keccak256(abi.encode(seed, j))));
        }
    }

    /// @notice A data owner proves its leaf in the finalized selection.
    function registerWinner(uint256 seed) external {
        calls++;
        _registerWinner(_request(seed >> 8), seed % OWNERS);
    }

    /// @notice The request's task: registered winners join through the gate, the round is
    ///         trained (one update each) and training ends; each step may revert.
    function train(uint256 seed) external {
        calls++;
        _train(_taskOf(_request(seed)), type(uint256).max);
    }

    /// @notice The task's committee scores it (see `_score`).
    function score(uint256 seed) external {
        calls++;
        _score(_taskOf(_request(seed >> 8)), seed);
    }

    /// @notice A winner claims with its row of the task's payout table (see `_claimPayment`).
    function claimPayment(uint256 seed) external {
        calls++;
        _claimPayment(_request(seed >> 8), seed % OWNERS, seed >> 4);
    }

    function refund(uint256 seed) external {
        calls++;
        _refund(_request(seed));
    }

    /// @notice Anyone sends the bonds of never-revealed offers to the requester.
    function forfeitBonds(uint256 seed) external {
        calls++;
        _forfeit(_request(seed));
    }

    /// @notice The requester cancels, rarely: a cancel is accepted until a selection is final,
    ///         so at the fuzzer's even odds every request died before its selection window.
    function cancel(uint256 seed) external {
        calls++;
        if (uint256(keccak256(abi.encode(seed))) % 64 != 0) return;
        _cancel(_request(seed));
    }

    function warp(uint256 seed) external {
        calls++;
        // Mostly short steps, so each one-hour window (offers, reveals, selection commit and
        // reveal) sees a dozen steps of actions; now and then a jump past a whole window.
        // (Hashed: the fuzzer favours edge values such as 0, which would always pick the jump.)
        uint256 r = uint256(keccak256(abi.encode("warp", seed)));
        vm.warp(block.timestamp + (r % 32 == 0 ? 3 hours : 1 + (r >> 8) % 20 minutes));
    }

    /// @notice Takes every live request one step along its life with random choices (which
    ///         seats, offers, asks, votes and reveals; which owners register, train and are
    ///         flagged; whether scoring fails, a flagged owner forges its row, the requester takes
    ///         its unspent budget early or cancels), opens a new request when fewer than LIVE are
    ///         live, then warps once: to the nearest deadline of any live request or its task (so
    ///         no window is skipped), or now and then a shorter step inside the window; at most
    ///         3 hours.
    function drive(uint256 seed) external {
        calls++;
        uint256 now_ = block.timestamp; // read once: via-IR reuses it after a warp anyway
        uint256 r = uint256(keccak256(abi.encode("drive", seed, calls)));
        uint256 next = now_ + 3 hours;
        for (uint256 j = _first(); j < requests.length; ++j) {
            uint256 at = _driveRequest(requests[j], uint256(keccak256(abi.encode(r, j))), now_);
            if (at > now_ && at < next) next = at;
        }
        if (_createRequest(r, now_)) next = now_ + 1 + (r >> 216) % 20 minutes; // its offer window
        if ((r >> 200) % 3 == 0) next = now_ + 1 + (r >> 208) % (next - now_);
        vm.warp(next);
    }

    /// @dev One step of request `id` in the phase `now_` puts it in; returns the instant its next
    ///      phase (or its task's) starts, 0 if nothing is left to wait for.
    function _driveRequest(uint256 id, uint256 s, uint256 now_) private returns (uint256) {
        if (_settled[id]) return 0;
        IDataSourcing.RequestInfo memory q = sourcing.request(id);
        if (q.cancelled) {
            _settled[id] = true;
            return 0;
        }
        if (now_ < q.offerDeadline) {
            _acceptSeats(id, s % 8 == 0 ? (s >> 3) % 3 : 3); // now and then a seat stays empty
            for (uint256 k; k < OWNERS; ++k) {
                if ((s >> (8 + k)) % 4 != 0) _commitOffer(id, k, uint256(keccak256(abi.encode(s, k))));
            }
            return q.offerDeadline;
        }
        if (now_ < q.revealDeadline) {
            _revealOffers(id, s);
            return q.revealDeadline;
        }
        if (q.bondsHeld != 0 && s % 2 == 0) _forfeit(id); // past the reveal deadline
        if (now_ < q.selectCommitDeadline) {
            _commitSelection(id, s);
            return q.selectCommitDeadline;
        }
        if (now_ < q.selectRevealDeadline) {
            _revealSelection(id, s);
            return q.selectRevealDeadline;
        }
        if (q.selectionRoot == bytes32(0)) {
            if (s % 4 == 0) _cancel(id); // no selection: the requester takes the budget back
            return 0;
        }
        if (now_ > q.claimDeadline) {
            _refund(id); // withheld and unclaimed payments
            _settled[id] = true;
            return 0;
        }
        if (s % 8 == 0) _refund(id); // the unspent budget, early
        uint256 done = _done[id];
        for (uint256 k; k < OWNERS; ++k) {
            // now and then an owner does not register (yet: the join window may close first)
            if ((done >> k) & 1 == 0 && (s >> (12 + k)) % 4 != 0) _registerWinner(id, k);
        }
        (uint256 at, ITaskMarket.Outcome outcome) = _driveTask(q.taskId, s >> 16, now_);
        if (outcome != ITaskMarket.Outcome.None) {
            done = _done[id];
            for (uint256 k; k < OWNERS; ++k) {
                // registered, unpaid owners, each now and then (a refused one retries later)
                if ((done >> k) & 1 == 1 && (done >> (4 + k)) & 1 == 0 && (s >> (40 + 4 * k)) % 4 == 0) {
                    _claimPayment(id, q.taskId, outcome == ITaskMarket.Outcome.Scored, k, s >> (42 + 4 * k));
                }
            }
        }
        return at == 0 || at > q.claimDeadline ? q.claimDeadline + 1 : at;
    }

    /// @dev One step of task `taskId`; returns when its next step is due (0: nothing to wait for)
    ///      and, once its owners may claim (payout root final, or scoring failed), its outcome.
    function _driveTask(uint256 taskId, uint256 s, uint256 now_) private returns (uint256, ITaskMarket.Outcome) {
        uint8 ended = _taskEnd[taskId];
        if (ended != 0) return (0, ITaskMarket.Outcome(ended - 1));
        ITaskMarket.Phase phase = taskMarket.task(taskId).phase;
        if (phase == ITaskMarket.Phase.Open || phase == ITaskMarket.Phase.Training) {
            _train(taskId, s);
        } else if (phase == ITaskMarket.Phase.Committing || phase == ITaskMarket.Phase.Revealing) {
            _score(taskId, s >> 12);
        } else if (phase == ITaskMarket.Phase.Finalized) {
            try taskMarket.sweep(taskId) {} catch {} // after the task's claim window: Closed
        }
        ITaskMarket.TaskInfo memory t = taskMarket.task(taskId); // where that step left it
        phase = t.phase;
        if (phase == ITaskMarket.Phase.Finalized) {
            if (now_ < t.claimsOpenAt) return (t.claimsOpenAt, ITaskMarket.Outcome.None);
            return (t.claimDeadline, t.outcome);
        }
        if (uint8(phase) <= uint8(ITaskMarket.Phase.Revealing)) return (t.phaseDeadline + 1, ITaskMarket.Outcome.None);
        if (phase == ITaskMarket.Phase.Closed || phase == ITaskMarket.Phase.Cancelled) {
            _taskEnd[taskId] = uint8(t.outcome) + 1; // Scored; Failed, or None (never trained)
        }
        return (0, t.outcome);
    }

    // --- the actions' bodies -------------------------------------------------------------------

    function _createRequest(uint256 seed, uint256 now_) private returns (bool) {
        uint256 n = requests.length;
        if (n >= MAX_REQUESTS || (n >= LIVE && !_settled[requests[n - LIVE]])) return false;
        uint256 taskId = _createTask(now_);
        IDataSourcing.RequestParams memory p;
        p.taskId = taskId;
        p.token = IERC20(address(token));
        p.budget = 1e18 + seed % 20e18;
        p.offerBond = 1e18 + (seed >> 64) % 2e18;
        p.schemaCid = "schema";
        p.validationCommitment = keccak256("val");
        p.oracles = new address[](3);
        for (uint256 i; i < 3; ++i) {
            p.oracles[i] = oracles[i];
        }
        p.quorum = 2;
        uint64 t = uint64(now_);
        p.offerDeadline = t + 1 hours;
        p.revealDeadline = t + 2 hours;
        p.selectCommitDeadline = t + 3 hours;
        p.selectRevealDeadline = t + 4 hours;
        p.claimDeadline = t + 24 hours;
        vm.prank(requester);
        uint256 id = sourcing.createRequest(p);
        requests.push(id);
        _sealedOwner[id] = 7 - (seed >> 128) % 8; // the scripted test's seed 5 seals nobody
        succeeded[REQUESTS]++;
        return true;
    }

    /// @dev Every member but `skip` (3: none skipped) still offered a seat accepts it.
    function _acceptSeats(uint256 id, uint256 skip) private {
        for (uint256 k; k < 3; ++k) {
            if (k == skip) continue;
            vm.prank(oracles[k]);
            try sourcing.acceptSeat(id) {} catch {}
        }
    }

    function _commitOffer(uint256 id, uint256 k, uint256 seed) private {
        address owner = owners[k];
        uint256 ask = 1e17 + (seed >> 16) % 8e18;
        bytes32 salt = keccak256(abi.encode(seed));
        bytes32 commitment = sourcing.offerCommitment(id, owner, ask, 100, "sketch", salt);
        uint256 before = token.balanceOf(owner);
        vm.prank(owner); // after the view calls above: a prank applies to the next call only
        try sourcing.commitOffer(id, commitment) {
            _offers[id][owner] = Offer(ask, salt);
            ghost[id].bondsPosted += before - token.balanceOf(owner);
        } catch {}
    }

    function _revealOffers(uint256 id, uint256 seed) private {
        for (uint256 k; k < OWNERS; ++k) {
            if (seed % 8 == k || _sealedOwner[id] == k) continue;
            address owner = owners[k];
            Offer memory o = _offers[id][owner];
            uint256 before = token.balanceOf(owner);
            vm.prank(owner);
            try sourcing.revealOffer(id, o.ask, 100, "sketch", o.salt) {
                ghost[id].bondsReturned += token.balanceOf(owner) - before;
            } catch {}
        }
    }

    function _commitSelection(uint256 id, uint256 seed) private {
        (bytes32[3] memory roots, uint256[3] memory totals) = _selections(id);
        for (uint256 k; k < 3; ++k) {
            address oracle = oracles[k];
            uint256 pick = (seed >> (4 + 3 * k)) % 8;
            uint8 variant = pick < 5 ? 0 : pick < 7 ? 1 : 2;
            bytes32 salt = keccak256(abi.encode("selection", seed, k));
            bytes32 commitment =
                sourcing.selectionCommitment(id, oracle, roots[variant], totals[variant], "report", salt);
            vm.prank(oracle);
            try sourcing.commitSelection(id, commitment) {
                _votes[id][oracle] = Vote(variant, salt);
            } catch {}
        }
    }

    function _revealSelection(uint256 id, uint256 seed) private {
        (bytes32[3] memory roots, uint256[3] memory totals) = _selections(id);
        for (uint256 k; k < 3; ++k) {
            if (seed % 6 == k) continue;
            address oracle = oracles[k];
            Vote memory v = _votes[id][oracle];
            vm.prank(oracle);
            try sourcing.revealSelection(id, roots[v.variant], totals[v.variant], "report", v.salt) {
                if (sourcing.request(id).selectionRoot != bytes32(0)) succeeded[SELECTIONS]++;
            } catch {}
        }
    }

    function _registerWinner(uint256 id, uint256 i) private {
        uint8 known = _finalVariant[id];
        if (known == 0) {
            bytes32 finalRoot = _selectionRoot(id);
            if (finalRoot == bytes32(0)) return;
            known = 1;
            for (uint8 k = 1; k < 3; ++k) {
                (bytes32 root,) = selection(id, k);
                if (root == finalRoot) known = k + 1;
            }
            _finalVariant[id] = known; // the offers are final once a selection is
        }
        uint256[OWNERS] memory pay = _payments(id, known - 1);
        bytes32[] memory proof = _proof(id, pay, i); // view calls: before the prank
        vm.prank(owners[i]);
        try sourcing.registerWinner(id, pay[i], proof) {
            succeeded[REGISTRATIONS]++;
            _done[id] |= 1 << i;
        } catch {}
    }

    /// @dev Registered winners join through the gate, the task's round is trained (one update
    ///      per joined owner, except those whose bit in `miss` is 0 mod 8) and training ends.
    function _train(uint256 taskId, uint256 miss) private {
        if (taskId == 0) return;
        for (uint256 i; i < OWNERS; ++i) {
            vm.prank(owners[i]);
            try taskMarket.join(taskId) {} catch {}
        }
        try taskMarket.advance(taskId) {} catch {}
        for (uint256 i; i < OWNERS; ++i) {
            if (miss != type(uint256).max && (miss >> (3 * i)) % 8 == 0) continue;
            vm.prank(owners[i]);
            try taskMarket.commitUpdate(taskId, 1, "u", keccak256(abi.encode(taskId, i)), 100) {} catch {}
        }
        try taskMarket.advance(taskId) {} catch {}
    }

    /// @dev Each oracle commits (unless scoring is to fail) the payout table that flags the
    ///      owners of a random bit set; then reveals; each step may revert (wrong phase, too
    ///      early) and is retried by later calls.
    function _score(uint256 taskId, uint256 seed) private {
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
            ITaskMarket.Outcome outcome = taskMarket.task(taskId).outcome;
            if (outcome == ITaskMarket.Outcome.Scored) succeeded[TASKS_SCORED]++;
            else if (outcome != ITaskMarket.Outcome.None) succeeded[TASKS_FAILED]++;
        } catch {}
    }

    /// @dev Owner `i` claims with its row of the task's payout table (leaf arguments ignored if
    ///      scoring failed); a flagged owner forges its flags to 0 one time in four.
    function _claimPayment(uint256 id, uint256 i, uint256 seed) private {
        if (id == 0) return;
        uint256 taskId = _taskOf(id);
        _claimPayment(id, taskId, taskMarket.task(taskId).outcome == ITaskMarket.Outcome.Scored, i, seed);
    }

    function _claimPayment(uint256 id, uint256 taskId, bool scored, uint256 i, uint256 seed) private {
        address owner = owners[i];
        bool flagged = (_flagBits[taskId] >> i) & 1 == 1;
        uint256 flags = flagged && seed % 4 != 0 ? PayoutLeaf.FLAG_FREE_RIDER : 0;
        bytes32[] memory proof = _payoutProof(taskId, i); // view calls: before the prank
        uint256 before = token.balanceOf(owner);
        vm.prank(owner);
        try sourcing.claimPayment(id, i, 0, 0, flags, proof) {
            succeeded[scored ? PAID_SCORED : PAID_FAILED]++;
            _done[id] |= 1 << (4 + i);
            uint256 got = token.balanceOf(owner) - before;
            ghost[id].paid += got;
            if (scored && flagged) ghostFlaggedPaid += got;
        } catch (bytes memory reason) {
            bytes4 err = bytes4(reason);
            if (err == IDataSourcing.DataSourcingWinnerFlagged.selector) succeeded[REFUSED_FLAGGED]++;
            if (err == IDataSourcing.DataSourcingBadPayoutLeaf.selector && flagged) succeeded[REFUSED_FORGED]++;
        }
    }

    function _refund(uint256 id) private {
        uint256 before = token.balanceOf(requester);
        try sourcing.refund(id) {
            succeeded[REFUNDS]++;
            ghost[id].refunded += token.balanceOf(requester) - before;
        } catch {}
    }

    function _forfeit(uint256 id) private {
        if (id == 0) return;
        uint256 before = token.balanceOf(requester);
        try sourcing.forfeitBonds(id) {
            succeeded[FORFEITS]++;
            ghost[id].bondsForfeited += token.balanceOf(requester) - before;
        } catch {}
    }

    function _cancel(uint256 id) private {
        uint256 before = token.balanceOf(requester);
        try sourcing.cancel(id) {
            succeeded[CANCELS]++;
            ghost[id].refunded += token.balanceOf(requester) - before;
        } catch {}
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

    /// @dev All three variants (variant 1 is variant 0's root with its total one wei short).
    function _selections(uint256 id) private view returns (bytes32[3] memory roots, uint256[3] memory totals) {
        (roots[0], totals[0]) = selection(id, 0);
        (roots[2], totals[2]) = selection(id, 2);
        roots[1] = roots[0];
        totals[1] = totals[0] == 0 ? 0 : totals[0] - 1;
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

    function _proof(uint256 id, uint256[OWNERS] memory pay, uint256 i) private view returns (bytes32[] memory p) {
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

    function _createTask(uint256 now_) private returns (uint256 id) {
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
        p.joinDeadline = uint64(now_ + 6 hours);
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

    /// @dev One of the latest LIVE requests (0: none yet).
    function _request(uint256 seed) private view returns (uint256) {
        uint256 n = requests.length;
        return n == 0 ? 0 : requests[n - 1 - seed % (n < LIVE ? n : LIVE)];
    }

    /// @dev The index of the oldest of the latest LIVE requests.
    function _first() private view returns (uint256) {
        return requests.length > LIVE ? requests.length - LIVE : 0;
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

    /// @notice Every request of this run (one call: the invariant reads them after every call).
    function requestIds() external view returns (uint256[] memory) {
        return requests;
    }
}
