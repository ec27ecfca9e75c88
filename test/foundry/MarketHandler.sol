// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ParticipantRegistry} from "../../contracts/ParticipantRegistry.sol";
import {RewardToken} from "../../contracts/RewardToken.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {IParticipantRegistry} from "../../contracts/interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "../../contracts/libraries/PayoutLeaf.sol";
import {RoundBatch} from "../../contracts/libraries/RoundBatch.sol";
import {ScoreCommitment} from "../../contracts/libraries/ScoreCommitment.sol";
import {SwitchableToken} from "../../contracts/test/SwitchableToken.sol";
import {Vm} from "./Vm.sol";

/// @notice Drives every phase of the market with random actors. Every action is a real call that
///         may revert (a revert is a no-op for the invariants). Oracle 3 never accepts a seat and
///         trainer 5 never joins: their stake must never be reserved or slashed. Half the tasks
///         escrow a `SwitchableToken` whose transfers to any actor (the requester, a disputer,
///         a trainer, the burn address) the `flipToken` action switches to revert, return false
///         or burn all their gas, and back.
contract MarketHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    RewardToken public immutable token;
    SwitchableToken public immutable switchable = new SwitchableToken();
    address public immutable tester = msg.sender;
    address public constant BURN = 0x000000000000000000000000000000000000dEaD;
    ParticipantRegistry public immutable registry;
    TaskMarket public immutable market;
    address public immutable requester = address(0xAA01);
    // Oracles have keys (0xB001..0xB004) so that they can sign seat acceptances; oracle 3's key
    // never signs.
    address[4] public oracles = [vm.addr(0xB001), vm.addr(0xB002), vm.addr(0xB003), vm.addr(0xB004)];
    address[6] public trainers =
        [address(0xC001), address(0xC002), address(0xC003), address(0xC004), address(0xC005), address(0xC006)];

    mapping(uint256 taskId => mapping(address oracle => bytes32)) public committedRoot;
    uint256 public calls;
    /// @notice Successful calls per action in this run (read by the test's coverage log):
    ///         accept, join, commitUpdate, commitScore, revealScore, claim, claimFallback,
    ///         claimDeposit, slashOracle, dispute, resolveDispute, sweep, withdrawBond,
    ///         releaseStake, advance, cancel.
    uint256[16] public succeeded;
    /// @notice Successful `sendOwed` calls and `flipToken` switches to a refusing mode.
    uint256 public owedSent;
    uint256 public flips;
    /// @notice Successful `acceptSeatsFor` batches.
    uint256 public seatBatches;

    constructor(RewardToken token_, ParticipantRegistry registry_) {
        token = token_;
        registry = registry_;
        market = new TaskMarket(IParticipantRegistry(address(registry_)), address(this));
    }

    /// @notice Register and fund every actor (called once by the test, which owns the token).
    function fund() external {
        _fund(requester);
        for (uint256 i; i < 4; ++i) {
            _fund(oracles[i]);
            vm.prank(oracles[i]);
            registry.register(IParticipantRegistry.Role.Oracle, bytes32(uint256(i + 1)), 100e18);
        }
        for (uint256 i; i < 6; ++i) {
            _fund(trainers[i]);
            vm.prank(trainers[i]);
            registry.register(IParticipantRegistry.Role.Trainer, bytes32(uint256(i + 11)), 100e18);
        }
    }

    function _fund(address who) private {
        token.mint(who, 1_000_000e18);
        switchable.mint(who, 1_000_000e18);
        vm.startPrank(who);
        token.approve(address(market), type(uint256).max);
        token.approve(address(registry), type(uint256).max);
        switchable.approve(address(market), type(uint256).max);
        vm.stopPrank();
    }

    /// @notice Every address the market may owe (payee of a push): the requester, the oracles
    ///         and trainers (disputers, withdrawn bonds) and the burn address.
    function payees() public view returns (address[] memory all) {
        all = new address[](12);
        all[0] = requester;
        all[1] = BURN;
        for (uint256 i; i < 4; ++i) all[2 + i] = oracles[i];
        for (uint256 i; i < 6; ++i) all[6 + i] = trainers[i];
    }

    // --- the fuzzed actions ------------------------------------------------------------------

    function createTask(uint256 seed) external {
        calls++;
        address[] memory committee = new address[](3);
        // A committee of 3 of the 4 oracles: a quarter of the tasks propose oracle 3, which never
        // accepts (those tasks can only cancel); the others can open.
        uint256 skip = seed % 4 == 0 ? (seed >> 2) % 3 : 3;
        uint256 k;
        for (uint256 i; i < 4; ++i) {
            if (i != skip) committee[k++] = oracles[i];
        }
        ITaskMarket.TaskParams memory p;
        p.token = (seed >> 32) % 2 == 0 ? IERC20(address(token)) : IERC20(address(switchable));
        p.budget = 100e18;
        p.modelSpecCid = "spec";
        p.initialModelCid = "m0";
        p.initialModelDigest = keccak256("m0");
        p.configCid = "cfg";
        p.validationCommitment = keccak256("val");
        p.rounds = uint16(1 + (seed >> 8) % 2);
        p.minTrainers = 1;
        p.maxTrainers = uint32(1 + (seed >> 16) % 3);
        p.minStake = 10e18;
        p.trainerBond = 1e18;
        p.disputeBond = 2e18;
        p.joinDeadline = uint64(block.timestamp + 1 hours);
        p.roundDuration = 1 hours;
        p.commitDuration = 1 hours;
        p.revealDuration = 1 hours;
        p.disputeDuration = 1 hours;
        p.claimDuration = 2 hours;
        p.oracles = committee;
        p.quorumBps = 6600;
        p.oracleSlash = 10e18;
        p.acceptDuration = 1 hours;
        p.requesterDeposit = (seed >> 24) % 2 == 0 ? 0 : 3e18;
        p.sealedValidationDigest = keccak256("sealed");
        vm.prank(requester);
        try market.createTask(p) {} catch {}
    }

    function acceptSeat(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(oracles[seed % 3]);
        try market.acceptSeat(id) { succeeded[0]++; } catch {}
    }

    /// @notice The requester submits 1-3 signed seat acceptances of oracles 0-2 in one batch (never
    ///         oracle 3's: it never consents); now and then one is expired, or signed by another
    ///         oracle's key (a forgery), or names an oracle twice: the market refuses the batch.
    function acceptSeatsFor(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        uint256 n = 1 + seed % 3;
        ITaskMarket.SeatSignature[] memory sigs = new ITaskMarket.SeatSignature[](n);
        for (uint256 i; i < n; ++i) {
            uint256 bits = seed >> (16 + 8 * i);
            uint256 who = bits % 3;
            uint256 signer = (bits >> 2) % 8 == 0 ? (who + 1) % 3 : who;
            uint256 deadline = (bits >> 5) % 8 == 0 ? block.timestamp - 1 : block.timestamp + 1 hours;
            bytes32 digest = market.seatAcceptanceDigest(id, oracles[who], deadline);
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(0xB001 + signer, digest);
            bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255)); // EIP-2098
            sigs[i] = ITaskMarket.SeatSignature(oracles[who], deadline, r, vs);
        }
        vm.prank(requester);
        try market.acceptSeatsFor(id, sigs) { seatBatches++; } catch {}
    }

    function join(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(trainers[seed % 5]);
        try market.join(id) { succeeded[1]++; } catch {}
    }

    function commitUpdate(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        uint16 round = _round(id);
        vm.prank(trainers[seed % 5]);
        try market.commitUpdate(id, round, "u", keccak256(abi.encode(seed)), uint64(1 + seed % 1000)) { succeeded[2]++; } catch {}
    }

    /// @notice The latest batch committed per task (what challengeLeaf attacks).
    struct SentBatch {
        uint16 round;
        address closer;
        bytes32 root;
        ITaskMarket.UpdateLeaf leaf;
    }

    mapping(uint256 taskId => SentBatch) internal _sent;

    /// @notice A one-leaf batch by a random trainer for a random trainer (member or not). The
    ///         handler has no trainer keys, so every leaf's signature is invalid: each batch is
    ///         forged and challengeLeaf slashes its closer.
    function commitRound(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        uint16 round = _round(id);
        address closer = trainers[seed % 5];
        ITaskMarket.UpdateLeaf memory leaf = ITaskMarket.UpdateLeaf(
            trainers[(seed >> 4) % 6], keccak256(abi.encode(seed)), keccak256("cid"), uint64(1 + (seed >> 32) % 1000)
        );
        bytes32 root = keccak256(bytes.concat(keccak256(abi.encode(_leafDigest(id, round, leaf)))));
        uint256[] memory included = new uint256[](1);
        included[0] = 1 + (seed >> 48) % 7;
        vm.prank(closer);
        try market.commitRound(id, round, root, included, leaf.numSamples, "l", keccak256(abi.encode(seed)), "m") {
            _sent[id] = SentBatch(round, closer, root, leaf);
        } catch {}
    }

    function challengeLeaf(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        SentBatch memory b = _sent[id];
        bytes memory signature = abi.encodePacked(bytes32(seed), bytes32(seed >> 1), uint8(27));
        vm.prank(trainers[seed % 6]);
        try market.challengeLeaf{gas: G}(id, b.round, b.closer, b.root, b.leaf, signature, new bytes32[](0)) {} catch {}
    }

    function _leafDigest(uint256 id, uint16 round, ITaskMarket.UpdateLeaf memory leaf)
        private
        view
        returns (bytes32)
    {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("FedMarket"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                RoundBatch.UPDATE_LEAF_TYPEHASH,
                block.chainid,
                id,
                uint256(round),
                leaf.cidHash,
                leaf.digest,
                leaf.trainer,
                uint256(leaf.numSamples)
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function commitScore(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        address oracle = oracles[seed % 3];
        bytes32 root = _root(seed >> 4, id);
        committedRoot[id][oracle] = root;
        bytes32 commitment = keccak256(abi.encode(id, oracle, root, keccak256(bytes("r")), bytes32(seed)));
        committedSalt[id][oracle] = bytes32(seed);
        vm.prank(oracle);
        try market.commitScore(id, commitment) { succeeded[3]++; } catch {}
    }

    mapping(uint256 taskId => mapping(address oracle => bytes32)) public committedSalt;

    function revealScore(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        address oracle = oracles[seed % 3];
        vm.prank(oracle);
        try market.revealScore(id, committedRoot[id][oracle], "r", committedSalt[id][oracle]) { succeeded[4]++; } catch {}
    }

    function advance(uint256 seed) external {
        calls++;
        try market.advance{gas: G}(_task(seed)) { succeeded[14]++; } catch {}
    }

    function warp(uint256 seed) external {
        calls++;
        vm.warp(block.timestamp + 1 + seed % 2 hours);
    }

    function claim(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        uint256 which = seed % 2;
        bytes32[] memory proof = new bytes32[](0);
        try market.claim{gas: G}(id, 0, trainers[which], (which + 1) * 10e18, 500_000, which, proof) { succeeded[5]++; } catch {}
    }

    function claimFallback(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(trainers[seed % 5]);
        try market.claimFallback{gas: G}(id) { succeeded[6]++; } catch {}
    }

    function claimDeposit(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(oracles[seed % 3]);
        try market.claimDeposit{gas: G}(id) { succeeded[7]++; } catch {}
    }

    function withdrawBond(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(trainers[seed % 5]);
        try market.withdrawBond{gas: G}(id) { succeeded[12]++; } catch {}
    }

    function releaseStake(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(trainers[seed % 5]);
        try market.releaseStake(id) { succeeded[13]++; } catch {}
    }

    function slashOracle(uint256 seed) external {
        calls++;
        try market.slashOracle(_task(seed >> 8), oracles[seed % 4]) { succeeded[8]++; } catch {}
    }

    function dispute(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8); // before the prank: _task calls the market
        vm.prank(seed % 2 == 0 ? trainers[seed % 5] : oracles[seed % 3]);
        try market.dispute(id) { succeeded[9]++; } catch {}
    }

    function resolveDispute(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        try market.resolveDispute{gas: G}(id, _root(seed, id)) { succeeded[10]++; } catch {}
    }

    function sweep(uint256 seed) external {
        calls++;
        try market.sweep{gas: G}(_task(seed)) { succeeded[11]++; } catch {}
    }

    /// @notice Switch how the switchable token's transfers to one payee behave (Normal, Revert,
    ///         ReturnFalse, BurnGas): a blacklist, a pause, or a hostile token, at any time.
    function flipToken(uint256 seed) external {
        calls++;
        address[] memory all = payees();
        SwitchableToken.Mode mode = SwitchableToken.Mode(seed % 4);
        switchable.setMode(all[(seed >> 8) % all.length], mode);
        if (mode != SwitchableToken.Mode.Normal) flips++;
    }

    /// @notice Anyone pays a payee what a task owes it (reverts while the token still refuses).
    function sendOwed(uint256 seed) external {
        calls++;
        address[] memory all = payees();
        try market.sendOwed{gas: G}(_task(seed >> 8), all[seed % all.length]) { owedSent++; } catch {}
    }

    /// @notice After a run (MarketInvariants.afterInvariant): with the switchable token refusing
    ///         the requester and the burn address (reverting) and burning all gas for trainer 0,
    ///         every task is driven to its end, every trainer settles, and then nobody may hold a
    ///         reservation. Returns the number of tasks left neither Closed nor Cancelled.
    function drainAll() external returns (uint256 unfinished) {
        if (msg.sender != tester) return 0; // not a fuzzed action: the test calls it after a run
        switchable.setMode(requester, SwitchableToken.Mode.Revert);
        switchable.setMode(BURN, SwitchableToken.Mode.Revert);
        switchable.setMode(trainers[0], SwitchableToken.Mode.BurnGas);
        uint256 n = market.taskCount();
        // Kept here: via-IR treats block.timestamp as constant within a transaction, so reading
        // it after a warp in the same call may give the old value.
        uint256 clock = block.timestamp;
        for (uint256 id = 1; id <= n; ++id) {
            for (uint256 k; k < 16 && !_ended(id); ++k) {
                clock += 200 days;
                vm.warp(clock);
                // Each call gets G gas, as a transaction would: a token burning all it is given
                // takes 63/64 of G, never the rest of this loop's gas.
                try market.advance{gas: G}(id) {} catch {}
                try market.sweep{gas: G}(id) {} catch (bytes memory err) { lastSweepError = err; }
                for (uint256 i; i < 5; ++i) {
                    vm.prank(trainers[i]);
                    try market.withdrawBond{gas: G}(id) {} catch {}
                    vm.prank(trainers[i]);
                    try market.claimFallback{gas: G}(id) {} catch {}
                }
            }
            // A task already cancelled before training counts as ended at once: its trainers'
            // bonds (and reservations) come back only when each calls withdrawBond.
            for (uint256 i; i < 5; ++i) {
                vm.prank(trainers[i]);
                try market.withdrawBond{gas: G}(id) {} catch {}
                vm.prank(trainers[i]);
                try market.releaseStake{gas: G}(id) {} catch {}
            }
            if (!_ended(id)) {
                unfinished++;
                lastUnfinished = id;
            }
        }
    }

    /// @notice Gas of each call in `drainAll` (a transaction's worth).
    uint256 internal constant G = 5_000_000;
    /// @notice The last task `drainAll` could not end (0: none), for the failure message.
    uint256 public lastUnfinished;
    bytes public lastSweepError;

    function _ended(uint256 id) private view returns (bool) {
        ITaskMarket.TaskInfo memory t = market.task(id);
        return t.phase == ITaskMarket.Phase.Closed
            || (t.phase == ITaskMarket.Phase.Cancelled && t.outcome == ITaskMarket.Outcome.None);
    }

    function requestUnstake(uint256 seed) external {
        calls++;
        address who = seed % 2 == 0 ? trainers[seed % 6] : oracles[seed % 4];
        vm.prank(who);
        try registry.requestUnstake(1 + (seed >> 8) % 20e18) {} catch {}
    }

    function withdraw(uint256 seed) external {
        calls++;
        address who = seed % 2 == 0 ? trainers[seed % 6] : oracles[seed % 4];
        vm.prank(who);
        try registry.withdraw() {} catch {}
    }

    /// @notice Takes one of the three latest tasks a step further along its lifecycle with random
    ///         choices (who acts, which roots, whether to dispute, claim or let time pass). The
    ///         single random actions above rarely line up into a whole task (three acceptances,
    ///         joins, a commit per trainer and per oracle, reveals); this keeps every phase, the
    ///         payout, failure, mismatch, dispute and slash paths reached in every campaign.
    function drive(uint256 seed) external {
        calls++;
        uint256 n = market.taskCount();
        if (n == 0) return;
        uint256 id = n - seed % (n < 3 ? n : 3);
        // Up to 8 steps of the same task; the fuzzer's seeds are often edge values: hash them.
        for (uint256 step; step < 8; ++step) {
            _step(id, uint256(keccak256(abi.encode(seed, calls, step))));
        }
    }

    function _step(uint256 id, uint256 seed) private {
        ITaskMarket.TaskInfo memory t = market.task(id);
        ITaskMarket.Phase phase = t.phase;
        if (phase == ITaskMarket.Phase.Forming) {
            for (uint256 i; i < 3; ++i) {
                vm.prank(oracles[i]);
                try market.acceptSeat(id) { succeeded[0]++; } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Open) {
            for (uint256 i; i <= (seed >> 8) % 5; ++i) {
                vm.prank(trainers[i]);
                try market.join(id) { succeeded[1]++; } catch {}
            }
            if ((seed >> 20) % 8 == 0) {
                vm.prank(requester); // the requester withdraws the task: joined trainers' bonds back
                try market.cancel{gas: G}(id) { succeeded[15]++; } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Training) {
            for (uint256 i; i < 5; ++i) {
                if ((seed >> (8 + i)) % 8 == 0) continue; // now and then a trainer misses a round
                vm.prank(trainers[i]);
                try market.commitUpdate(id, t.currentRound, "u", keccak256(abi.encode(seed, i)), uint64(1 + i)) {
                    succeeded[2]++;
                } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Committing) {
            // Mostly one root for all (quorum); sometimes each oracle its own (split, or mismatch).
            bool split = (seed >> 8) % 4 == 0;
            for (uint256 i; i < 3; ++i) {
                if ((seed >> (12 + i)) % 10 == 0) continue; // now and then an oracle stays silent
                address o = oracles[i];
                bytes32 root = _root(split ? seed >> (16 + 2 * i) : seed >> 16, id);
                committedRoot[id][o] = root;
                committedSalt[id][o] = bytes32(seed ^ i);
                vm.prank(o);
                try market.commitScore(id, keccak256(abi.encode(id, o, root, keccak256(bytes("r")), bytes32(seed ^ i)))) {
                    succeeded[3]++;
                } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Revealing) {
            for (uint256 i; i < 3; ++i) {
                if ((seed >> (12 + i)) % 10 == 0) continue;
                address o = oracles[i];
                vm.prank(o);
                try market.revealScore(id, committedRoot[id][o], "r", committedSalt[id][o]) { succeeded[4]++; } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Finalized) {
            if ((seed >> 8) % 5 == 0) {
                vm.prank(trainers[(seed >> 12) % 5]);
                try market.dispute(id) { succeeded[9]++; } catch {}
            }
            for (uint256 which; which < 2; ++which) {
                try market.claim{gas: G}(id, 0, trainers[which], (which + 1) * 10e18, 500_000, which, new bytes32[](0)) {
                    succeeded[5]++;
                } catch {}
            }
            try market.slashOracle(id, oracles[(seed >> 16) % 4]) { succeeded[8]++; } catch {}
        } else if (phase == ITaskMarket.Phase.Disputed) {
            if ((seed >> 8) % 2 == 0) {
                try market.resolveDispute{gas: G}(id, _root(seed >> 12, id)) { succeeded[10]++; } catch {}
            }
        } else if (phase == ITaskMarket.Phase.Cancelled) {
            for (uint256 i; i < 5; ++i) {
                vm.prank(trainers[i]);
                try market.claimFallback{gas: G}(id) { succeeded[6]++; } catch {}
                vm.prank(trainers[i]);
                try market.withdrawBond{gas: G}(id) { succeeded[12]++; } catch {}
            }
            for (uint256 i; i < 3; ++i) {
                vm.prank(oracles[i]);
                try market.claimDeposit{gas: G}(id) { succeeded[7]++; } catch {}
            }
            try market.slashOracle(id, oracles[(seed >> 16) % 4]) { succeeded[8]++; } catch {}
        } else if (phase == ITaskMarket.Phase.Closed) {
            for (uint256 i; i < 5; ++i) {
                vm.prank(trainers[i]);
                try market.releaseStake(id) { succeeded[13]++; } catch {}
            }
        }
        try market.sweep{gas: G}(id) { succeeded[11]++; } catch {}
        if ((seed >> 40) % 4 == 0) vm.warp(block.timestamp + 1 + (seed >> 44) % 90 minutes);
        try market.advance{gas: G}(id) { succeeded[14]++; } catch {}
    }

    // --- helpers --------------------------------------------------------------------------------

    /// @notice Payout root A pays trainer 0 ten tokens, B pays trainer 1 twenty (flagged): one leaf
    ///         each, so the proof is empty; or the validation-mismatch root.
    function _root(uint256 seed, uint256 id) private view returns (bytes32) {
        uint256 pick = seed % 3;
        if (pick == 0) return rootA(id);
        if (pick == 1) return rootB(id);
        return market.VALIDATION_MISMATCH();
    }

    /// @notice Task `id`'s root A: its one leaf pays trainer 0 ten tokens.
    /// @param id The task (the leaf's domain: this chain, this market, the task).
    /// @return The root.
    function rootA(uint256 id) public view returns (bytes32) {
        return PayoutLeaf.hash(block.chainid, address(market), id, 0, trainers[0], 10e18, 500_000, 0);
    }

    /// @notice Task `id`'s root B: its one leaf pays trainer 1 twenty tokens, flagged.
    /// @param id The task.
    /// @return The root.
    function rootB(uint256 id) public view returns (bytes32) {
        return PayoutLeaf.hash(block.chainid, address(market), id, 0, trainers[1], 20e18, 500_000, 1);
    }

    function _task(uint256 seed) private view returns (uint256) {
        uint256 n = market.taskCount();
        return n == 0 ? 1 : 1 + seed % n;
    }

    function _round(uint256 id) private view returns (uint16) {
        try market.task(id) returns (ITaskMarket.TaskInfo memory info) {
            return info.currentRound;
        } catch {
            return 1;
        }
    }

    function oracle(uint256 i) external view returns (address) {
        return oracles[i];
    }

    function trainer(uint256 i) external view returns (address) {
        return trainers[i];
    }
}
