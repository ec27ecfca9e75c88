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
import {Vm} from "./Vm.sol";

/// @notice Drives every phase of the market with random actors. Every action is a real call that
///         may revert (a revert is a no-op for the invariants). Oracle 3 never accepts a seat and
///         trainer 5 never joins: their stake must never be reserved or slashed.
contract MarketHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    RewardToken public immutable token;
    ParticipantRegistry public immutable registry;
    TaskMarket public immutable market;
    address public immutable requester = address(0xAA01);
    address[4] public oracles = [address(0xB001), address(0xB002), address(0xB003), address(0xB004)];
    address[6] public trainers =
        [address(0xC001), address(0xC002), address(0xC003), address(0xC004), address(0xC005), address(0xC006)];

    mapping(uint256 taskId => mapping(address oracle => bytes32)) public committedRoot;
    uint256 public calls;

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
        vm.startPrank(who);
        token.approve(address(market), type(uint256).max);
        token.approve(address(registry), type(uint256).max);
        vm.stopPrank();
    }

    // --- the fuzzed actions ------------------------------------------------------------------

    function createTask(uint256 seed) external {
        calls++;
        address[] memory committee = new address[](3);
        uint256 skip = seed % 4; // a committee of 3 of the 4 oracles; oracle 3 never accepts
        uint256 k;
        for (uint256 i; i < 4; ++i) {
            if (i != skip) committee[k++] = oracles[i];
        }
        ITaskMarket.TaskParams memory p;
        p.token = IERC20(address(token));
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
        vm.prank(oracles[seed % 3]);
        try market.acceptSeat(_task(seed >> 8)) {} catch {}
    }

    function join(uint256 seed) external {
        calls++;
        vm.prank(trainers[seed % 5]);
        try market.join(_task(seed >> 8)) {} catch {}
    }

    function commitUpdate(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        uint16 round = _round(id);
        vm.prank(trainers[seed % 5]);
        try market.commitUpdate(id, round, "u", keccak256(abi.encode(seed)), uint64(1 + seed % 1000)) {} catch {}
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
        try market.challengeLeaf(id, b.round, b.closer, b.root, b.leaf, signature, new bytes32[](0)) {} catch {}
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
        try market.commitScore(id, commitment) {} catch {}
    }

    mapping(uint256 taskId => mapping(address oracle => bytes32)) public committedSalt;

    function revealScore(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        address oracle = oracles[seed % 3];
        vm.prank(oracle);
        try market.revealScore(id, committedRoot[id][oracle], "r", committedSalt[id][oracle]) {} catch {}
    }

    function advance(uint256 seed) external {
        calls++;
        try market.advance(_task(seed)) {} catch {}
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
        try market.claim(id, 0, trainers[which], (which + 1) * 10e18, 500_000, which, proof) {} catch {}
    }

    function claimFallback(uint256 seed) external {
        calls++;
        vm.prank(trainers[seed % 5]);
        try market.claimFallback(_task(seed >> 8)) {} catch {}
    }

    function claimDeposit(uint256 seed) external {
        calls++;
        vm.prank(oracles[seed % 3]);
        try market.claimDeposit(_task(seed >> 8)) {} catch {}
    }

    function withdrawBond(uint256 seed) external {
        calls++;
        vm.prank(trainers[seed % 5]);
        try market.withdrawBond(_task(seed >> 8)) {} catch {}
    }

    function releaseStake(uint256 seed) external {
        calls++;
        vm.prank(trainers[seed % 5]);
        try market.releaseStake(_task(seed >> 8)) {} catch {}
    }

    function slashOracle(uint256 seed) external {
        calls++;
        try market.slashOracle(_task(seed >> 8), oracles[seed % 4]) {} catch {}
    }

    function dispute(uint256 seed) external {
        calls++;
        vm.prank(seed % 2 == 0 ? trainers[seed % 5] : oracles[seed % 3]);
        try market.dispute(_task(seed >> 8)) {} catch {}
    }

    function resolveDispute(uint256 seed) external {
        calls++;
        uint256 id = _task(seed >> 8);
        try market.resolveDispute(id, _root(seed, id)) {} catch {}
    }

    function sweep(uint256 seed) external {
        calls++;
        try market.sweep(_task(seed)) {} catch {}
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
