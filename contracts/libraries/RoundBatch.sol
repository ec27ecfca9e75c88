// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {ITaskMarket} from "../interfaces/ITaskMarket.sol";
import {TaskState} from "./TaskState.sol";

/// @title RoundBatch
/// @notice Batched round commitments: one transaction per round records a Merkle root over the
///         included trainers' signed leaves and a bitmap of who is included, so a round's gas
///         does not grow with its trainers; the end of a round; leaf proofs (forgery, credit).
/// @dev An external library (linked into TaskMarket, called by delegatecall: `address(this)` is
///      the market, `msg.sender` the market's caller) so the market stays under 24 KiB.
///      A leaf is the EIP-712 digest of `UpdateLeaf` under the domain {name "FedMarket",
///      version "1", chainId, verifyingContract: the market} — the domain of the peers' gossip
///      announcements — so it is bound to one chain, market, task and round; the tree is
///      OpenZeppelin's StandardMerkleTree with leaf type `bytes32` (double-hashed leaves).
library RoundBatch {
    /// @notice EIP-712 type a trainer signs for its leaf (`cid` is hashed as EIP-712 strings are).
    bytes32 internal constant UPDATE_LEAF_TYPEHASH = keccak256(
        "UpdateLeaf(uint256 chainId,uint256 taskId,uint256 round,string cid,bytes32 digest,address sender,uint256 numSamples)"
    );
    /// @notice After a partial batch, the left-out trainers have at least roundDuration / this.
    uint64 internal constant DIRECT_WINDOW_DIVISOR = 4;

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("FedMarket");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    /// @notice A task's batches.
    struct Batches {
        // keccak256(abi.encode(root, closer)) per batched round: one slot per round.
        mapping(uint16 round => bytes32) commits;
        // Bitmap of the latest batched round (Task.batchedRound), overwritten by the next batch:
        // only the current round's bitmap is ever needed (direct commits, challenges re-opening
        // a bit), so a batch rewrites a used slot instead of filling a fresh one.
        mapping(uint256 word => uint256) included;
        // Per trainer, bit r: its round-r leaf was credited, voided by a challenge, or
        // superseded by a direct commit — it never counts (again).
        mapping(address trainer => mapping(uint256 word => uint256)) settled;
    }

    /// @notice The body of `TaskMarket.commitRound` (see ITaskMarket); the caller checked that
    ///         `msg.sender` is a joined trainer.
    function commitRound(
        TaskState.Task storage t,
        Batches storage b,
        mapping(uint16 => bytes32) storage models,
        mapping(uint16 => uint256) storage shortfalls,
        uint256 taskId,
        uint16 round,
        bytes32 root,
        uint256[] calldata included,
        uint64 samples,
        string calldata leavesCid,
        bytes32 modelDigest,
        string calldata modelCid
    ) external {
        if (t.phase != ITaskMarket.Phase.Training) {
            (ITaskMarket.Phase phase,) = TaskState.phaseOf(t);
            revert ITaskMarket.TaskMarketWrongPhase(taskId, phase);
        }
        if (round != t.currentRound) revert ITaskMarket.TaskMarketWrongRound(taskId, round, t.currentRound);
        uint64 deadline = t.phaseDeadline;
        if (block.timestamp > deadline) revert ITaskMarket.TaskMarketDeadlinePassed(taskId, deadline);
        if (root == bytes32(0)) revert ITaskMarket.TaskMarketZeroHash();
        if (samples == 0) revert ITaskMarket.TaskMarketZeroSamples();
        if (t.batchedRound == round) revert ITaskMarket.TaskMarketRoundAlreadyBatched(taskId, round);
        uint32 direct = t.roundCommits;
        if (direct != 0) revert ITaskMarket.TaskMarketRoundHasDirectCommits(taskId, round, direct);
        uint32 trainers = t.trainerCount;
        uint32 count = _storeBitmap(b, taskId, included, trainers);

        t.batchedRound = round;
        t.roundCommits = count;
        t.totalSamples += samples; // checked: a uint64 sum
        b.commits[round] = keccak256(abi.encode(root, msg.sender));
        emit ITaskMarket.RoundCommitted(taskId, round, msg.sender, root, included, count, samples, leavesCid);
        if (round > 1 && modelDigest != bytes32(0)) {
            bytes32 recorded = models[round];
            if (recorded == bytes32(0)) {
                models[round] = modelDigest;
                emit ITaskMarket.ModelPosted(taskId, round, msg.sender, modelCid, modelDigest);
            } else if (recorded != modelDigest) {
                emit ITaskMarket.ModelMismatchReported(taskId, round, msg.sender, modelCid, modelDigest);
            }
        }
        if (count == trainers) {
            closeRound(t, shortfalls, taskId);
        } else {
            uint64 windowEnd = uint64(block.timestamp) + t.roundDuration / DIRECT_WINDOW_DIVISOR;
            if (windowEnd > deadline) t.phaseDeadline = windowEnd;
        }
    }

    /// @notice End the current training round: record how many trainers did not commit, then
    ///         start the next round or, after the last, the committee's commit phase.
    /// @param t The task (in Training).
    /// @param shortfalls The task's per-round count of missing updates (written only if any).
    /// @param taskId The task's id.
    function closeRound(TaskState.Task storage t, mapping(uint16 => uint256) storage shortfalls, uint256 taskId)
        public
    {
        uint16 round = t.currentRound;
        uint32 commits = t.roundCommits;
        uint32 trainers = t.trainerCount;
        // commits <= trainers: one commit per joined trainer per round.
        if (commits < trainers) shortfalls[round] = trainers - commits;
        t.roundCommits = 0;
        uint64 now_ = uint64(block.timestamp);
        if (round < t.rounds) {
            // round < rounds <= MAX_ROUNDS
            unchecked {
                t.currentRound = round + 1;
            }
            t.phaseDeadline = now_ + t.roundDuration;
            emit ITaskMarket.PhaseAdvanced(taskId, ITaskMarket.Phase.Training, ITaskMarket.Phase.Training, round + 1);
        } else {
            t.phaseDeadline = now_ + t.commitDuration;
            t.phase = ITaskMarket.Phase.Committing;
            emit ITaskMarket.PhaseAdvanced(taskId, ITaskMarket.Phase.Training, ITaskMarket.Phase.Committing, round);
        }
    }

    /// @notice A direct commit in a batched round: reverts if the trainer is in the batch, and
    ///         makes sure its leaf (if the closer put one in without setting its bit) never counts.
    function commitDirect(Batches storage b, uint256 taskId, uint16 round, address trainer, uint32 index)
        external
    {
        if (b.included[index >> 8] & (1 << (index & 0xff)) != 0) {
            revert ITaskMarket.TaskMarketUpdateAlreadyCommitted(taskId, round, trainer);
        }
        b.settled[trainer][round >> 8] |= 1 << (round & 0xff);
    }

    /// @notice Check that `leaf` is in the batch named by (`round`, `closer`, `root`) and mark
    ///         its trainer's round settled (a forged leaf is voided, a proven one counted once;
    ///         the caller reverts in every other case, which undoes the mark).
    /// @return digest The leaf's EIP-712 digest.
    /// @return signed Whether `signature` recovers to the leaf's trainer.
    /// @return settled Whether the trainer's round was already settled.
    function useLeaf(
        Batches storage b,
        uint256 taskId,
        uint16 round,
        address closer,
        bytes32 root,
        ITaskMarket.UpdateLeaf calldata leaf,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external returns (bytes32 digest, bool signed, bool settled) {
        digest = leafDigest(taskId, round, leaf);
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(digest))));
        if (
            b.commits[round] != keccak256(abi.encode(root, closer))
                || !MerkleProof.verifyCalldata(proof, root, node)
        ) {
            revert ITaskMarket.TaskMarketLeafNotInBatch(taskId, round, leaf.trainer);
        }
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        signed = err == ECDSA.RecoverError.NoError && recovered == leaf.trainer;
        mapping(uint256 => uint256) storage rounds = b.settled[leaf.trainer];
        uint256 bit = 1 << (round & 0xff);
        uint256 word = rounds[round >> 8];
        settled = word & bit != 0;
        rounds[round >> 8] = word | bit;
    }

    /// @notice Clear the bit at `index` in the current batch's bitmap; returns whether it was set.
    function exclude(Batches storage b, uint32 index) external returns (bool cleared) {
        uint256 word = b.included[index >> 8];
        uint256 bit = 1 << (index & 0xff);
        cleared = word & bit != 0;
        if (cleared) b.included[index >> 8] = word & ~bit;
    }

    /// @notice The EIP-712 digest a trainer signs for `leaf` in round `round` of task `taskId`.
    function leafDigest(uint256 taskId, uint16 round, ITaskMarket.UpdateLeaf calldata leaf)
        internal
        view
        returns (bytes32)
    {
        bytes32 domain =
            keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
        bytes32 structHash = keccak256(
            abi.encode(
                UPDATE_LEAF_TYPEHASH,
                block.chainid,
                taskId,
                uint256(round),
                leaf.cidHash,
                leaf.digest,
                leaf.trainer,
                uint256(leaf.numSamples)
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    /// @notice Number of set bits of `x` (SWAR; the last step sums 16-bit lanes, so 256 fits).
    function popcount(uint256 x) internal pure returns (uint256) {
        // Every step keeps each lane's count below its lane's size: no lane overflows into the
        // next, and the final multiplication's wrap-around only drops lanes above the top one.
        unchecked {
            x -= (x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555;
            x = (x & 0x3333333333333333333333333333333333333333333333333333333333333333)
                + ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            x = (x + (x >> 8)) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;
            return (x * 0x0001000100010001000100010001000100010001000100010001000100010001) >> 240;
        }
    }

    /// @dev Writes the bitmap (one word per 256 trainers, so the loop is bounded by the task's
    ///      trainer cap / 256) and returns how many trainers it includes.
    function _storeBitmap(Batches storage b, uint256 taskId, uint256[] calldata included, uint32 trainers)
        private
        returns (uint32 count)
    {
        uint256 words = (uint256(trainers) + 255) >> 8;
        if (included.length != words) revert ITaskMarket.TaskMarketInvalidBitmap(taskId, words);
        uint256 tail = trainers & 0xff; // bits used in the last word (0: all 256)
        // slither-disable-next-line uninitialized-local
        uint256 total;
        for (uint256 w; w < words; ++w) {
            uint256 bits = included[w];
            if (w == words - 1 && tail != 0 && bits >> tail != 0) {
                revert ITaskMarket.TaskMarketInvalidBitmap(taskId, words);
            }
            b.included[w] = bits;
            total += popcount(bits);
        }
        if (total == 0) revert ITaskMarket.TaskMarketInvalidBitmap(taskId, words);
        count = uint32(total); // <= trainers, a uint32
    }
}
