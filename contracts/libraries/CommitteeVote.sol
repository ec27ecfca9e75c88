// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ITaskMarket} from "../interfaces/ITaskMarket.sol";
import {ScoreCommitment} from "./ScoreCommitment.sol";

/// @title CommitteeVote
/// @notice One task's oracle committee as a state machine over a storage struct (the shape of
///         Uniswap v4's `Pool.State`): seats proposed by the requester, consent (each member
///         accepts its own seat), commit-reveal of payout roots, the stake tally, quorum, and who
///         may be slashed. Every seat carries the same reserved weight (the task's `oracleSlash`):
///         a member votes with, and risks, exactly what it reserved when it accepted.
/// @dev Reverts with `ITaskMarket` errors so callers see one error vocabulary. Loops only over the
///      committee (at most `MAX_COMMITTEE` members).
library CommitteeVote {
    /// @notice The root an oracle reveals when the sealed validation set does not match the task's
    ///         validation commitment: if it wins the vote (or the arbiter picks it), the requester
    ///         is at fault.
    bytes32 internal constant VALIDATION_MISMATCH = keccak256("fedmarket.validation-mismatch");

    /// @notice The largest committee.
    uint256 internal constant MAX_COMMITTEE = 16;

    struct Seat {
        uint8 number; // 1-based position; 0 = not a member
        bool released; // its reservation ended (released at the task's end, or slashed)
        bool slashed;
        bool depositClaimed;
    }

    struct State {
        address[] members;
        mapping(address oracle => Seat) seats;
        // Commitment until the member reveals, then its revealed root.
        mapping(address oracle => bytes32) votes;
        mapping(bytes32 root => uint256) rootStakes;
        // One slot: everything accept, commit and reveal read and write (29 bytes).
        uint96 weight; // each accepted seat's reserved stake and vote weight
        uint8 leadingVotes; // seats behind the leading root (its stake is leadingVotes * weight)
        uint64 completedAt; // when the last seat was accepted (the task opened then); 0 before
        uint8 size;
        uint8 committedCount;
        uint8 revealedCount;
        uint8 leader; // seat of the first member that revealed the leading root; 0 = none
        uint16 revealedMask; // bit (seat - 1) set once that member revealed
        uint16 acceptedMask; // bit (seat - 1) set once that member took its seat (stake reserved)
    }

    /// @notice Propose the committee (no stake is touched: members accept later).
    /// @param s The committee.
    /// @param oracles The proposed members (1..MAX_COMMITTEE, distinct, not the requester).
    /// @param requester The task's requester.
    /// @param weight Each seat's reserved stake.
    function propose(State storage s, address[] calldata oracles, address requester, uint128 weight) external {
        uint256 n = oracles.length;
        if (n == 0 || n > MAX_COMMITTEE) revert ITaskMarket.TaskMarketInvalidCommitteeSize(n);
        for (uint256 i; i < n; ++i) {
            address oracle = oracles[i];
            if (oracle == requester) revert ITaskMarket.TaskMarketConflictOfInterest(oracle);
            Seat storage seat = s.seats[oracle];
            if (seat.number != 0) revert ITaskMarket.TaskMarketDuplicateOracle(oracle);
            // i < MAX_COMMITTEE = 16, so i + 1 fits uint8.
            seat.number = uint8(i + 1);
            s.members.push(oracle);
        }
        if (uint256(weight) * n > type(uint96).max) revert ITaskMarket.TaskMarketAmountTooLarge(uint256(weight) * n);
        s.size = uint8(n);
        s.weight = uint96(weight);
    }

    /// @notice `oracle` takes its seat.
    /// @param s The committee.
    /// @param taskId The task (for errors).
    /// @param oracle The member.
    /// @return complete Whether every seat is now accepted (the committee completed now).
    /// @return weight The seat's stake to reserve.
    function accept(State storage s, uint256 taskId, address oracle) internal returns (bool complete, uint96 weight) {
        uint8 number = s.seats[oracle].number;
        if (number == 0) revert ITaskMarket.TaskMarketNotCommitteeMember(taskId, oracle);
        uint16 bit = uint16(1 << (number - 1));
        uint16 mask = s.acceptedMask;
        // Also once the committee completed (every bit set): no seat is taken twice.
        if (mask & bit != 0) revert ITaskMarket.TaskMarketSeatAlreadyAccepted(taskId, oracle);
        // One slot written: the mask and the completion time live beside the weight.
        mask |= bit;
        complete = mask == (1 << s.size) - 1;
        if (complete) s.completedAt = uint64(block.timestamp);
        s.acceptedMask = mask;
        weight = s.weight;
    }

    /// @notice Record `oracle`'s commitment.
    /// @param s The committee.
    /// @param taskId The task (for errors).
    /// @param oracle The member.
    /// @param commitment Its commitment (nonzero).
    function commit(State storage s, uint256 taskId, address oracle, bytes32 commitment) external {
        if (s.seats[oracle].number == 0) revert ITaskMarket.TaskMarketNotCommitteeMember(taskId, oracle);
        if (commitment == bytes32(0)) revert ITaskMarket.TaskMarketZeroHash();
        if (s.votes[oracle] != bytes32(0)) revert ITaskMarket.TaskMarketScoreAlreadyCommitted(taskId, oracle);
        s.votes[oracle] = commitment;
        // At most one commit per member, and at most 16 members.
        unchecked {
            s.committedCount += 1;
        }
    }

    /// @notice Check `oracle`'s reveal against its commitment and add its weight to `root`.
    /// @param s The committee.
    /// @param taskId The task.
    /// @param oracle The member.
    /// @param root The revealed payout root (or `VALIDATION_MISMATCH`).
    /// @param reportCid The committed report's CID.
    /// @param salt The commitment's salt.
    function reveal(
        State storage s,
        uint256 taskId,
        address oracle,
        bytes32 root,
        string calldata reportCid,
        bytes32 salt
    ) external {
        uint8 number = s.seats[oracle].number;
        if (number == 0) revert ITaskMarket.TaskMarketNotCommitteeMember(taskId, oracle);
        uint16 bit = uint16(1 << (number - 1));
        if (s.revealedMask & bit != 0) revert ITaskMarket.TaskMarketAlreadyRevealed(taskId, oracle);
        bytes32 commitment = s.votes[oracle];
        if (commitment == bytes32(0)) revert ITaskMarket.TaskMarketNoCommitment(taskId, oracle);
        if (root == bytes32(0)) revert ITaskMarket.TaskMarketZeroHash();
        if (ScoreCommitment.hash(taskId, oracle, root, reportCid, salt) != commitment) {
            revert ITaskMarket.TaskMarketCommitmentMismatch(taskId, oracle);
        }
        s.votes[oracle] = root;
        uint96 weight = s.weight;
        uint256 tally = s.rootStakes[root] + weight;
        s.rootStakes[root] = tally;
        s.revealedMask |= bit;
        // At most one reveal per member, and at most 16 members.
        unchecked {
            s.revealedCount += 1;
        }
        // Strictly greater: on a tie the root revealed first keeps the lead. Every seat weighs
        // `weight` (> 0), so a tally is a whole number of seats, at most size <= 16.
        if (tally > uint256(s.leadingVotes) * weight) {
            s.leadingVotes = uint8(tally / weight);
            s.leader = number;
        }
    }

    /// @notice Total reserved weight of the committee.
    /// @param s The committee.
    /// @return The stake.
    function totalStake(State storage s) internal view returns (uint256) {
        return uint256(s.weight) * s.size;
    }

    /// @notice Whether the leading root holds at least `quorumBps` of the committee's stake.
    /// @param s The committee.
    /// @param quorumBps The quorum in basis points.
    /// @return True on quorum.
    function hasQuorum(State storage s, uint16 quorumBps) external view returns (bool) {
        // leadingStake < 2^128 and quorumBps < 2^14: no overflow in uint256.
        return leadingStake(s) * 10_000 >= uint256(quorumBps) * totalStake(s);
    }

    /// @notice The stake behind the leading root.
    /// @param s The committee.
    /// @return The stake (leadingVotes × weight).
    function leadingStake(State storage s) internal view returns (uint256) {
        return uint256(s.leadingVotes) * s.weight;
    }

    /// @notice The root with the most stake (first revealed on a tie); zero if none.
    /// @param s The committee.
    /// @return The root.
    function leadingRoot(State storage s) external view returns (bytes32) {
        uint8 leader = s.leader;
        return leader == 0 ? bytes32(0) : s.votes[s.members[leader - 1]];
    }

    /// @notice How many members took their seats.
    /// @param s The committee.
    /// @return count The number of accepted seats.
    function acceptedCount(State storage s) internal view returns (uint256 count) {
        for (uint16 mask = s.acceptedMask; mask != 0; mask &= mask - 1) {
            ++count;
        }
    }

    /// @notice Whether `oracle` took its seat.
    /// @param s The committee.
    /// @param oracle The member.
    /// @return True if it accepted.
    function accepted(State storage s, address oracle) internal view returns (bool) {
        uint8 number = s.seats[oracle].number;
        return number != 0 && s.acceptedMask & (1 << (number - 1)) != 0;
    }

    /// @notice Whether `oracle` revealed.
    /// @param s The committee.
    /// @param oracle The member.
    /// @return True if it revealed.
    function revealed(State storage s, address oracle) public view returns (bool) {
        uint8 number = s.seats[oracle].number;
        return number != 0 && s.revealedMask & (1 << (number - 1)) != 0;
    }

    /// @notice Mark `oracle` slashed, reverting unless it may be: it accepted its seat, its
    ///         reservation is still held, and it either did not reveal or revealed a root the
    ///         arbiter ruled against. Dissent alone (another root, when a quorum decided without
    ///         the arbiter) is never slashable.
    /// @param s The committee.
    /// @param taskId The task (for errors).
    /// @param oracle The member.
    /// @param finalRoot The root that became final (or `VALIDATION_MISMATCH`, or zero on failure).
    /// @param arbiterRuled Whether the arbiter picked `finalRoot`.
    function markSlashed(State storage s, uint256 taskId, address oracle, bytes32 finalRoot, bool arbiterRuled)
        external
    {
        Seat storage seat = s.seats[oracle];
        if (seat.number == 0) revert ITaskMarket.TaskMarketNotCommitteeMember(taskId, oracle);
        if (seat.slashed) revert ITaskMarket.TaskMarketOracleAlreadySlashed(taskId, oracle);
        if (!accepted(s, oracle) || seat.released) revert ITaskMarket.TaskMarketOracleNotSlashable(taskId, oracle);
        if (revealed(s, oracle) && (!arbiterRuled || s.votes[oracle] == finalRoot)) {
            revert ITaskMarket.TaskMarketOracleNotSlashable(taskId, oracle);
        }
        seat.slashed = true;
        seat.released = true;
    }
}
