// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "./libraries/PayoutLeaf.sol";
import {ReputationMath} from "./libraries/ReputationMath.sol";
import {ScoreCommitment} from "./libraries/ScoreCommitment.sol";

/// @title TaskMarket
/// @notice Escrow, rounds, update commitments, oracle commit-reveal, disputes and Merkle claims
///         for federated-learning tasks.
/// @dev Deadlines are anchored: each phase's deadline is `min(now, previous deadline) + duration`,
///      so however late anyone calls `advance`, every deadline is bounded by the schedule fixed at
///      creation, and the stake locks taken then (`stakeLockedUntil`) outlast every claim.
///      Invariant: this contract's balance of a token equals Σ over its tasks of
///      (budget − paid − refunded) + bondsHeld + the dispute bond held while Disputed.
contract TaskMarket is ITaskMarket, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The largest oracle committee; bounds the only loop (in `createTask`).
    uint256 public constant MAX_COMMITTEE = 16;
    /// @notice The most training rounds a task may have.
    uint16 public constant MAX_ROUNDS = 1000;
    /// @notice Where burned tokens go: OpenZeppelin's ERC20 refuses transfers to address(0).
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    enum TrainerStatus {
        None,
        Joined,
        Settled // bond returned, burned or withdrawn
    }

    // Packed so that hot paths touch few slots: slot 0 for every phase check, slot 1 for
    // commitUpdate, slot 8 for commitScore/revealScore, slots 2-3 for claim's accounting.
    struct Task {
        // slot 0
        address requester;
        Phase phase;
        uint16 currentRound;
        uint64 phaseDeadline;
        uint8 committeeSize;
        // slot 1
        IERC20 token;
        uint16 rounds;
        uint16 quorumBps;
        uint32 trainerCount;
        uint32 roundCommits; // updates committed in the current round
        // slot 2
        uint128 budget;
        uint128 paid;
        // slot 3: read together by join, claim and withdrawBond
        uint128 trainerBond;
        uint128 bondsHeld;
        // slot 4
        uint128 minStake;
        uint128 oracleSlash;
        // slot 5
        uint128 disputeBond;
        uint128 refunded;
        // slot 6
        uint64 roundDuration;
        uint64 commitDuration;
        uint64 revealDuration;
        uint64 disputeDuration;
        // slot 7
        uint64 claimDuration;
        uint64 joinDeadline;
        uint64 claimsOpenAt;
        uint64 stakeLockedUntil;
        // slot 8
        uint128 leadingStake;
        uint8 committedCount;
        uint8 revealedCount;
        uint8 leader; // seat (1-based) of the first oracle that revealed the leading root; 0 = none
        uint16 revealedMask; // bit (seat - 1) set once that oracle revealed
        bool scoringFailed; // cancelled because no oracle revealed: every member is slashable
        uint32 minTrainers;
        uint32 maxTrainers;
        // slot 9
        uint128 committeeStake;
        uint32 minReputationPpm;
        // slot 10
        address disputer;
        // slots 11-13
        bytes32 payoutRoot;
        bytes32 initialModelDigest;
        bytes32 validationCommitment;
    }

    struct Seat {
        uint128 weight; // registry stake at creation: fixed, so nobody can top up to win a vote
        uint8 number; // 1-based position in the committee; 0 = not a member
        bool slashed;
    }

    struct Update {
        bytes32 digest;
        uint64 numSamples;
    }

    IParticipantRegistry private immutable _registry;
    address private immutable _arbiter;

    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => address[]) private _committees;
    mapping(uint256 taskId => mapping(address oracle => Seat)) private _seats;
    // Commitment until the oracle reveals, then its revealed root (overwriting saves a fresh slot).
    mapping(uint256 taskId => mapping(address oracle => bytes32)) private _votes;
    mapping(uint256 taskId => mapping(bytes32 root => uint256)) private _rootStakes;
    mapping(uint256 taskId => mapping(address trainer => TrainerStatus)) private _trainers;
    mapping(uint256 taskId => mapping(uint16 round => mapping(address trainer => Update))) private _updates;
    mapping(uint256 taskId => mapping(uint16 round => uint256)) private _pastUpdateCounts;
    mapping(uint256 taskId => mapping(uint16 round => bytes32)) private _models;
    mapping(uint256 taskId => mapping(uint256 word => uint256)) private _claimedBitmap;

    /// @param registry_ The participant registry (must authorize this market).
    /// @param arbiter_ Resolves disputes by picking a revealed root; a multisig or DAO in production.
    constructor(IParticipantRegistry registry_, address arbiter_) {
        if (address(registry_) == address(0) || arbiter_ == address(0)) revert TaskMarketZeroAddress();
        _registry = registry_;
        _arbiter = arbiter_;
    }

    // --- requester ------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function createTask(TaskParams calldata p) external nonReentrant returns (uint256 taskId) {
        _checkParams(p);
        uint64 lockedUntil = _scheduleEnd(p);

        taskId = ++_taskCount;
        Task storage t = _tasks[taskId];
        t.requester = msg.sender;
        t.phase = Phase.Open;
        t.phaseDeadline = p.joinDeadline;
        t.committeeSize = uint8(p.oracles.length);
        t.token = p.token;
        t.rounds = p.rounds;
        t.quorumBps = p.quorumBps;
        t.budget = _u128(p.budget);
        t.trainerBond = _u128(p.trainerBond);
        t.disputeBond = _u128(p.disputeBond);
        t.minStake = _u128(p.minStake);
        t.oracleSlash = _u128(p.oracleSlash);
        t.roundDuration = p.roundDuration;
        t.commitDuration = p.commitDuration;
        t.revealDuration = p.revealDuration;
        t.disputeDuration = p.disputeDuration;
        t.claimDuration = p.claimDuration;
        t.joinDeadline = p.joinDeadline;
        t.stakeLockedUntil = lockedUntil;
        t.minTrainers = p.minTrainers;
        t.maxTrainers = p.maxTrainers;
        t.minReputationPpm = p.minReputationPpm;
        t.initialModelDigest = p.initialModelDigest;
        t.validationCommitment = p.validationCommitment;
        t.committeeStake = _seatCommittee(taskId, p);
        _emitTaskCreated(taskId, p);
        _lockCommittee(p, lockedUntil);
        _pull(p.token, msg.sender, p.budget);
    }

    /// @inheritdoc ITaskMarket
    function cancel(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        if (msg.sender != t.requester) revert TaskMarketNotRequester(taskId, msg.sender);
        if (t.phase != Phase.Open) revert TaskMarketWrongPhase(taskId, t.phase);
        _setPhase(taskId, t, Phase.Cancelled);
        _refundEscrow(taskId, t);
    }

    // --- trainers -------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function join(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Open) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        if (msg.sender == t.requester || _seats[taskId][msg.sender].number != 0) {
            revert TaskMarketConflictOfInterest(msg.sender);
        }
        if (_trainers[taskId][msg.sender] != TrainerStatus.None) revert TaskMarketAlreadyJoined(taskId, msg.sender);
        uint32 count = t.trainerCount;
        if (count >= t.maxTrainers) revert TaskMarketTaskFull(taskId, t.maxTrainers);
        (IParticipantRegistry.Role role,, uint256 staked,,,, uint32 reputation) = _registry.participant(msg.sender);
        if (role != IParticipantRegistry.Role.Trainer) {
            revert TaskMarketWrongRole(msg.sender, IParticipantRegistry.Role.Trainer);
        }
        if (staked < t.minStake) revert TaskMarketStakeTooLow(msg.sender, staked, t.minStake);
        if (reputation < t.minReputationPpm) {
            revert TaskMarketReputationTooLow(msg.sender, reputation, t.minReputationPpm);
        }

        uint128 bond = t.trainerBond;
        _trainers[taskId][msg.sender] = TrainerStatus.Joined;
        // count < maxTrainers (a uint32) was checked above.
        unchecked {
            t.trainerCount = count + 1;
        }
        t.bondsHeld += bond;
        emit TrainerJoined(taskId, msg.sender, bond);
        _registry.lockStake(msg.sender, t.stakeLockedUntil);
        _pull(t.token, msg.sender, bond);
    }

    /// @inheritdoc ITaskMarket
    function commitUpdate(uint256 taskId, uint16 round, string calldata cid, bytes32 digest, uint64 numSamples)
        external
    {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Training) revert TaskMarketWrongPhase(taskId, t.phase);
        if (round != t.currentRound) revert TaskMarketWrongRound(taskId, round, t.currentRound);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        if (_trainers[taskId][msg.sender] == TrainerStatus.None) revert TaskMarketNotJoined(taskId, msg.sender);
        if (digest == bytes32(0)) revert TaskMarketZeroHash();
        if (numSamples == 0) revert TaskMarketZeroSamples();
        Update storage u = _updates[taskId][round][msg.sender];
        if (u.numSamples != 0) revert TaskMarketUpdateAlreadyCommitted(taskId, round, msg.sender);

        u.digest = digest;
        u.numSamples = numSamples;
        // At most one commit per joined trainer per round, and trainerCount is a uint32.
        unchecked {
            t.roundCommits += 1;
        }
        emit UpdateCommitted(taskId, round, msg.sender, cid, digest, numSamples);
    }

    /// @inheritdoc ITaskMarket
    function postModel(uint256 taskId, uint16 round, string calldata cid, bytes32 digest) external {
        Task storage t = _task(taskId);
        if (round < 2 || round > uint256(t.rounds) + 1) revert TaskMarketInvalidModelRound(taskId, round);
        if (!_roundEnded(t, round - 1)) revert TaskMarketRoundNotEnded(taskId, round);
        if (_trainers[taskId][msg.sender] == TrainerStatus.None) revert TaskMarketNotJoined(taskId, msg.sender);
        if (digest == bytes32(0)) revert TaskMarketZeroHash();

        bytes32 recorded = _models[taskId][round];
        if (recorded == bytes32(0)) {
            _models[taskId][round] = digest;
            emit ModelPosted(taskId, round, msg.sender, cid, digest);
        } else if (recorded != digest) {
            emit ModelMismatchReported(taskId, round, msg.sender, cid, digest);
        }
    }

    /// @inheritdoc ITaskMarket
    function withdrawBond(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Cancelled) revert TaskMarketWrongPhase(taskId, t.phase);
        if (_trainers[taskId][msg.sender] != TrainerStatus.Joined) revert TaskMarketNoBond(taskId, msg.sender);

        uint128 bond = t.trainerBond;
        _trainers[taskId][msg.sender] = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        emit BondWithdrawn(taskId, msg.sender, bond);
        if (bond > 0) t.token.safeTransfer(msg.sender, bond);
    }

    // --- anyone: phases -------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function advance(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        Phase phase = t.phase;
        uint64 deadline = t.phaseDeadline;
        bool expired = block.timestamp > deadline;
        if (phase == Phase.Open) {
            if (t.trainerCount == t.maxTrainers || (expired && t.trainerCount >= t.minTrainers)) {
                t.currentRound = 1;
                t.phaseDeadline = _anchor(deadline) + t.roundDuration;
                _setPhase(taskId, t, Phase.Training);
            } else if (expired) {
                _setPhase(taskId, t, Phase.Cancelled);
                _refundEscrow(taskId, t);
            } else {
                revert TaskMarketTooEarly(taskId, deadline + 1);
            }
        } else if (phase == Phase.Training) {
            if (!expired && t.roundCommits < t.trainerCount) revert TaskMarketTooEarly(taskId, deadline + 1);
            uint16 round = t.currentRound;
            _pastUpdateCounts[taskId][round] = t.roundCommits;
            t.roundCommits = 0;
            if (round < t.rounds) {
                // round < rounds <= MAX_ROUNDS
                unchecked {
                    t.currentRound = round + 1;
                }
                t.phaseDeadline = _anchor(deadline) + t.roundDuration;
                emit PhaseAdvanced(taskId, Phase.Training, Phase.Training, round + 1);
            } else {
                t.phaseDeadline = _anchor(deadline) + t.commitDuration;
                _setPhase(taskId, t, Phase.Committing);
            }
        } else if (phase == Phase.Committing) {
            if (!expired && t.committedCount < t.committeeSize) revert TaskMarketTooEarly(taskId, deadline + 1);
            t.phaseDeadline = _anchor(deadline) + t.revealDuration;
            _setPhase(taskId, t, Phase.Revealing);
        } else if (phase == Phase.Revealing) {
            if (!expired && t.revealedCount < t.committedCount) revert TaskMarketTooEarly(taskId, deadline + 1);
            _closeScoring(taskId, t, _anchor(deadline));
        } else if (phase == Phase.Disputed) {
            if (!expired) revert TaskMarketTooEarly(taskId, deadline + 1);
            _endDispute(taskId, t, t.payoutRoot, deadline, false);
        } else {
            revert TaskMarketWrongPhase(taskId, phase);
        }
    }

    /// @inheritdoc ITaskMarket
    function sweep(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Finalized) revert TaskMarketWrongPhase(taskId, t.phase);
        uint64 claimDeadline = t.claimsOpenAt + t.claimDuration;
        if (block.timestamp < claimDeadline) revert TaskMarketTooEarly(taskId, claimDeadline);

        // paid <= budget is enforced by every claim.
        uint128 refund = t.budget - t.paid;
        uint128 unclaimedBonds = t.bondsHeld;
        t.refunded = refund;
        t.bondsHeld = 0;
        _setPhase(taskId, t, Phase.Closed);
        emit TaskSwept(taskId, refund, unclaimedBonds);
        if (refund > 0) {
            emit Refunded(taskId, t.requester, refund);
            t.token.safeTransfer(t.requester, refund);
        }
        if (unclaimedBonds > 0) {
            emit BondsBurned(taskId, unclaimedBonds);
            t.token.safeTransfer(BURN_ADDRESS, unclaimedBonds);
        }
    }

    // --- anyone: claims -------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function claim(
        uint256 taskId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external nonReentrant {
        Task storage t = _claimableTask(taskId);
        if (!MerkleProof.verifyCalldata(proof, t.payoutRoot, PayoutLeaf.hash(index, account, amount, scorePpm, flags)))
        {
            revert TaskMarketInvalidProof(taskId, index);
        }
        _markClaimed(taskId, index);
        _addPaid(taskId, t, amount);
        emit Claimed(taskId, index, account, amount, flags);
        uint256 bondBack = _settleTrainer(taskId, t, account, scorePpm, flags);
        if (amount + bondBack > 0) t.token.safeTransfer(account, amount + bondBack);
    }

    // --- oracles --------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function commitScore(uint256 taskId, bytes32 commitment) external {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Committing) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        if (_seats[taskId][msg.sender].number == 0) revert TaskMarketNotCommitteeMember(taskId, msg.sender);
        if (commitment == bytes32(0)) revert TaskMarketZeroHash();
        if (_votes[taskId][msg.sender] != bytes32(0)) revert TaskMarketScoreAlreadyCommitted(taskId, msg.sender);

        _votes[taskId][msg.sender] = commitment;
        // At most one commit per member, and the committee has at most 16 members.
        unchecked {
            t.committedCount += 1;
        }
        emit ScoreCommitted(taskId, msg.sender, commitment);
    }

    /// @inheritdoc ITaskMarket
    function revealScore(uint256 taskId, bytes32 payoutRoot, string calldata reportCid, bytes32 salt) external {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Revealing) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        Seat memory seat = _seats[taskId][msg.sender];
        if (seat.number == 0) revert TaskMarketNotCommitteeMember(taskId, msg.sender);
        uint16 seatBit = uint16(1 << (seat.number - 1));
        if (t.revealedMask & seatBit != 0) revert TaskMarketAlreadyRevealed(taskId, msg.sender);
        bytes32 commitment = _votes[taskId][msg.sender];
        if (commitment == bytes32(0)) revert TaskMarketNoCommitment(taskId, msg.sender);
        if (payoutRoot == bytes32(0)) revert TaskMarketZeroHash();
        if (ScoreCommitment.hash(taskId, msg.sender, payoutRoot, reportCid, salt) != commitment) {
            revert TaskMarketCommitmentMismatch(taskId, msg.sender);
        }

        _votes[taskId][msg.sender] = payoutRoot;
        uint256 tally = _rootStakes[taskId][payoutRoot] + seat.weight;
        _rootStakes[taskId][payoutRoot] = tally;
        t.revealedMask |= seatBit;
        // At most one reveal per member, and the committee has at most 16 members.
        unchecked {
            t.revealedCount += 1;
        }
        // Strictly greater: on a tie the root revealed first keeps the lead. tally is at most the
        // committee's total stake, which fits uint128 (checked at creation).
        if (tally > t.leadingStake) {
            t.leadingStake = uint128(tally);
            t.leader = seat.number;
        }
        emit ScoreRevealed(taskId, msg.sender, payoutRoot, reportCid);
    }

    /// @inheritdoc ITaskMarket
    function slashOracle(uint256 taskId, address oracle) external nonReentrant {
        Task storage t = _task(taskId);
        Phase phase = t.phase;
        if (phase == Phase.Finalized || phase == Phase.Closed) {
            // The root is final only once the dispute window is over.
            if (block.timestamp < t.claimsOpenAt) revert TaskMarketTooEarly(taskId, t.claimsOpenAt);
        } else if (!(phase == Phase.Cancelled && t.scoringFailed)) {
            revert TaskMarketWrongPhase(taskId, phase);
        }
        Seat storage seat = _seats[taskId][oracle];
        uint8 number = seat.number;
        if (number == 0) revert TaskMarketNotCommitteeMember(taskId, oracle);
        if (seat.slashed) revert TaskMarketOracleAlreadySlashed(taskId, oracle);
        bool revealed = t.revealedMask & (1 << (number - 1)) != 0;
        bytes32 finalRoot = t.payoutRoot;
        if (revealed && _votes[taskId][oracle] == finalRoot) revert TaskMarketOracleNotSlashable(taskId, oracle);

        seat.slashed = true;
        uint256 slashed =
            _registry.slash(oracle, t.oracleSlash, taskId, Strings.toHexString(uint256(finalRoot), 32));
        emit OracleSlashed(taskId, oracle, slashed);
    }

    // --- disputes -------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function dispute(uint256 taskId) external nonReentrant {
        Task storage t = _task(taskId);
        if (t.phase != Phase.Finalized) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp >= t.claimsOpenAt) revert TaskMarketDeadlinePassed(taskId, t.claimsOpenAt);
        if (_seats[taskId][msg.sender].number == 0 && _trainers[taskId][msg.sender] == TrainerStatus.None) {
            revert TaskMarketNotParticipant(taskId, msg.sender);
        }

        uint128 bond = t.disputeBond;
        t.disputer = msg.sender;
        t.phaseDeadline = uint64(block.timestamp) + t.disputeDuration;
        emit DisputeRaised(taskId, msg.sender, bond);
        _setPhase(taskId, t, Phase.Disputed);
        _pull(t.token, msg.sender, bond);
    }

    /// @inheritdoc ITaskMarket
    function resolveDispute(uint256 taskId, bytes32 root) external nonReentrant {
        if (msg.sender != _arbiter) revert TaskMarketNotArbiter(msg.sender);
        Task storage t = _task(taskId);
        if (t.phase != Phase.Disputed) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        if (_rootStakes[taskId][root] == 0) revert TaskMarketRootNotRevealed(taskId, root);
        _endDispute(taskId, t, root, uint64(block.timestamp), true);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function task(uint256 taskId) external view returns (TaskInfo memory info) {
        Task storage t = _task(taskId);
        info.requester = t.requester;
        info.token = t.token;
        info.phase = t.phase;
        info.currentRound = t.currentRound;
        info.rounds = t.rounds;
        info.budget = t.budget;
        info.paid = t.paid;
        info.refunded = t.refunded;
        info.trainerBond = t.trainerBond;
        info.disputeBond = t.disputeBond;
        info.bondsHeld = t.bondsHeld;
        info.minStake = t.minStake;
        info.minReputationPpm = t.minReputationPpm;
        info.minTrainers = t.minTrainers;
        info.maxTrainers = t.maxTrainers;
        info.trainerCount = t.trainerCount;
        info.roundCommits = t.roundCommits;
        info.joinDeadline = t.joinDeadline;
        info.phaseDeadline = t.phaseDeadline;
        info.claimsOpenAt = t.claimsOpenAt;
        info.claimDeadline = t.claimsOpenAt == 0 ? 0 : t.claimsOpenAt + t.claimDuration;
        info.stakeLockedUntil = t.stakeLockedUntil;
        info.roundDuration = t.roundDuration;
        info.commitDuration = t.commitDuration;
        info.revealDuration = t.revealDuration;
        info.disputeDuration = t.disputeDuration;
        info.claimDuration = t.claimDuration;
        info.initialModelDigest = t.initialModelDigest;
        info.validationCommitment = t.validationCommitment;
        info.payoutRoot = t.payoutRoot;
        info.leadingRoot = _leadingRoot(taskId, t);
        info.leadingStake = t.leadingStake;
        info.committeeStake = t.committeeStake;
        info.quorumBps = t.quorumBps;
        info.committeeSize = t.committeeSize;
        info.committedCount = t.committedCount;
        info.revealedCount = t.revealedCount;
        info.oracleSlash = t.oracleSlash;
        info.disputer = t.disputer;
        info.scoringFailed = t.scoringFailed;
    }

    /// @inheritdoc ITaskMarket
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @inheritdoc ITaskMarket
    function isTrainer(uint256 taskId, address account) external view returns (bool) {
        return _trainers[taskId][account] != TrainerStatus.None;
    }

    /// @inheritdoc ITaskMarket
    function isOracle(uint256 taskId, address account) external view returns (bool) {
        return _seats[taskId][account].number != 0;
    }

    /// @inheritdoc ITaskMarket
    function oracles(uint256 taskId) external view returns (address[] memory) {
        return _committees[taskId];
    }

    /// @inheritdoc ITaskMarket
    function trainerCount(uint256 taskId) external view returns (uint256) {
        return _tasks[taskId].trainerCount;
    }

    /// @inheritdoc ITaskMarket
    function update(uint256 taskId, uint16 round, address trainer)
        external
        view
        returns (bytes32 digest, uint64 numSamples)
    {
        Update storage u = _updates[taskId][round][trainer];
        return (u.digest, u.numSamples);
    }

    /// @inheritdoc ITaskMarket
    function updateCount(uint256 taskId, uint16 round) external view returns (uint256) {
        Task storage t = _tasks[taskId];
        if (t.phase == Phase.Training && round == t.currentRound) return t.roundCommits;
        return _pastUpdateCounts[taskId][round];
    }

    /// @inheritdoc ITaskMarket
    function modelDigest(uint256 taskId, uint16 round) external view returns (bytes32) {
        if (round == 1) return _tasks[taskId].initialModelDigest;
        return _models[taskId][round];
    }

    /// @inheritdoc ITaskMarket
    function commitmentOf(uint256 taskId, address oracle) external view returns (bytes32) {
        return _revealed(taskId, oracle) ? bytes32(0) : _votes[taskId][oracle];
    }

    /// @inheritdoc ITaskMarket
    function revealedRootOf(uint256 taskId, address oracle) external view returns (bytes32) {
        return _revealed(taskId, oracle) ? _votes[taskId][oracle] : bytes32(0);
    }

    /// @inheritdoc ITaskMarket
    function rootStake(uint256 taskId, bytes32 root) external view returns (uint256) {
        return _rootStakes[taskId][root];
    }

    /// @inheritdoc ITaskMarket
    function oracleWeight(uint256 taskId, address oracle) external view returns (uint256) {
        return _seats[taskId][oracle].weight;
    }

    /// @inheritdoc ITaskMarket
    function isOracleSlashed(uint256 taskId, address oracle) external view returns (bool) {
        return _seats[taskId][oracle].slashed;
    }

    /// @inheritdoc ITaskMarket
    function isClaimed(uint256 taskId, uint256 index) external view returns (bool) {
        return _claimedBitmap[taskId][index >> 8] & (1 << (index & 0xff)) != 0;
    }

    /// @inheritdoc ITaskMarket
    function registry() external view returns (IParticipantRegistry) {
        return _registry;
    }

    /// @inheritdoc ITaskMarket
    function arbiter() external view returns (address) {
        return _arbiter;
    }

    // --- internals: creation --------------------------------------------------------------------

    function _checkParams(TaskParams calldata p) private view {
        if (address(p.token) == address(0)) revert TaskMarketZeroAddress();
        if (p.budget == 0) revert TaskMarketZeroBudget();
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert TaskMarketInvalidRounds(p.rounds);
        if (p.minTrainers == 0 || p.minTrainers > p.maxTrainers) {
            revert TaskMarketInvalidTrainerBounds(p.minTrainers, p.maxTrainers);
        }
        if (p.minReputationPpm > ReputationMath.ONE) revert TaskMarketInvalidReputation(p.minReputationPpm);
        if (
            p.roundDuration == 0 || p.commitDuration == 0 || p.revealDuration == 0 || p.disputeDuration == 0
                || p.claimDuration == 0
        ) revert TaskMarketZeroDuration();
        if (p.joinDeadline <= block.timestamp) revert TaskMarketDeadlineInPast(p.joinDeadline);
        if (p.initialModelDigest == bytes32(0) || p.validationCommitment == bytes32(0)) revert TaskMarketZeroHash();
        if (p.quorumBps <= 5000 || p.quorumBps > 10_000) revert TaskMarketInvalidQuorum(p.quorumBps);
        if (p.oracles.length == 0 || p.oracles.length > MAX_COMMITTEE) {
            revert TaskMarketInvalidCommitteeSize(p.oracles.length);
        }
    }

    function _emitTaskCreated(uint256 taskId, TaskParams calldata p) private {
        emit TaskCreated(
            taskId, msg.sender, p.token, p.budget, p.modelSpecCid, p.initialModelCid, p.initialModelDigest, p.configCid
        );
    }

    /// @dev The latest time any claim of the task can happen: every deadline is anchored, so it is
    ///      at most the sum of the durations after the join deadline (a dispute adds one more
    ///      dispute duration). Stakes are locked until then.
    function _scheduleEnd(TaskParams calldata p) private pure returns (uint64) {
        uint256 end = uint256(p.joinDeadline) + uint256(p.rounds) * p.roundDuration + p.commitDuration
            + p.revealDuration + 2 * uint256(p.disputeDuration) + p.claimDuration;
        if (end > type(uint64).max) revert TaskMarketScheduleOverflow();
        return uint64(end);
    }

    /// @dev Seats the committee (at most MAX_COMMITTEE iterations) and snapshots each oracle's
    ///      stake as its voting weight. Returns the total weight. Only views are called here;
    ///      the stake locks come after every effect (`_lockCommittee`).
    function _seatCommittee(uint256 taskId, TaskParams calldata p) private returns (uint128 total) {
        uint256 required = p.oracleSlash > 0 ? p.oracleSlash : 1;
        uint256 sum = 0;
        for (uint256 i; i < p.oracles.length; ++i) {
            address oracle = p.oracles[i];
            if (oracle == msg.sender) revert TaskMarketConflictOfInterest(oracle);
            Seat storage seat = _seats[taskId][oracle];
            if (seat.number != 0) revert TaskMarketDuplicateOracle(oracle);
            (IParticipantRegistry.Role role,, uint256 staked,,,,) = _registry.participant(oracle);
            if (role != IParticipantRegistry.Role.Oracle) {
                revert TaskMarketWrongRole(oracle, IParticipantRegistry.Role.Oracle);
            }
            if (staked < required) revert TaskMarketStakeTooLow(oracle, staked, required);
            seat.weight = _u128(staked);
            // i < MAX_COMMITTEE = 16, so i + 1 fits uint8.
            seat.number = uint8(i + 1);
            _committees[taskId].push(oracle);
            sum += staked;
        }
        total = _u128(sum);
    }

    /// @dev Locks every committee member's stake until the task's latest possible end (bounded
    ///      by MAX_COMMITTEE).
    function _lockCommittee(TaskParams calldata p, uint64 lockedUntil) private {
        for (uint256 i; i < p.oracles.length; ++i) {
            _registry.lockStake(p.oracles[i], lockedUntil);
        }
    }

    // --- internals: phases ----------------------------------------------------------------------

    /// @dev Revealing → Finalized (quorum), Disputed (revealed roots, no quorum) or Cancelled
    ///      (nothing revealed).
    function _closeScoring(uint256 taskId, Task storage t, uint64 anchor) private {
        if (t.revealedCount == 0) {
            t.scoringFailed = true;
            _setPhase(taskId, t, Phase.Cancelled);
            _refundEscrow(taskId, t);
            return;
        }
        bytes32 leading = _leadingRoot(taskId, t);
        t.payoutRoot = leading;
        // Both factors are below 2^128 and 2^14: no overflow in uint256.
        if (uint256(t.leadingStake) * 10_000 >= uint256(t.quorumBps) * t.committeeStake) {
            _finalize(taskId, t, Phase.Revealing, anchor + t.disputeDuration);
        } else {
            t.phaseDeadline = anchor + t.disputeDuration;
            _setPhase(taskId, t, Phase.Disputed);
        }
    }

    function _finalize(uint256 taskId, Task storage t, Phase from, uint64 claimsOpenAt) private {
        t.phase = Phase.Finalized;
        t.phaseDeadline = claimsOpenAt;
        t.claimsOpenAt = claimsOpenAt;
        emit PhaseAdvanced(taskId, from, Phase.Finalized, t.currentRound);
        emit TaskFinalized(taskId, t.payoutRoot, claimsOpenAt, claimsOpenAt + t.claimDuration);
    }

    /// @dev Disputed → Finalized with `root`; settles the dispute bond (returned if the root
    ///      changed, burned otherwise).
    function _endDispute(uint256 taskId, Task storage t, bytes32 root, uint64 claimsOpenAt, bool byArbiter)
        private
    {
        bool changed = root != t.payoutRoot;
        t.payoutRoot = root;
        address disputer = t.disputer;
        uint128 bond = disputer == address(0) ? 0 : t.disputeBond;
        emit DisputeResolved(taskId, root, changed, byArbiter);
        _finalize(taskId, t, Phase.Disputed, claimsOpenAt);
        if (bond > 0) {
            if (changed) {
                t.token.safeTransfer(disputer, bond);
            } else {
                emit BondsBurned(taskId, bond);
                t.token.safeTransfer(BURN_ADDRESS, bond);
            }
        }
    }

    function _refundEscrow(uint256 taskId, Task storage t) private {
        uint128 refund = t.budget - t.paid - t.refunded;
        t.refunded += refund;
        emit Refunded(taskId, t.requester, refund);
        t.token.safeTransfer(t.requester, refund);
    }

    function _setPhase(uint256 taskId, Task storage t, Phase to) private {
        Phase from = t.phase;
        t.phase = to;
        emit PhaseAdvanced(taskId, from, to, t.currentRound);
    }

    // --- internals: claims ---------------------------------------------------------------------

    /// @dev The task, if its claim window is open: Finalized, dispute window over, before the deadline.
    function _claimableTask(uint256 taskId) private view returns (Task storage t) {
        t = _task(taskId);
        if (t.phase != Phase.Finalized) revert TaskMarketWrongPhase(taskId, t.phase);
        uint64 opensAt = t.claimsOpenAt;
        if (block.timestamp < opensAt) revert TaskMarketTooEarly(taskId, opensAt);
        uint64 claimDeadline = opensAt + t.claimDuration;
        if (block.timestamp >= claimDeadline) revert TaskMarketDeadlinePassed(taskId, claimDeadline);
    }

    function _markClaimed(uint256 taskId, uint256 index) private {
        uint256 word = index >> 8;
        uint256 bit = 1 << (index & 0xff);
        uint256 claimedWord = _claimedBitmap[taskId][word];
        if (claimedWord & bit != 0) revert TaskMarketAlreadyClaimed(taskId, index);
        _claimedBitmap[taskId][word] = claimedWord | bit;
    }

    /// @dev Never pays out more than the budget, whatever the tree says: a bad root cannot touch
    ///      other tasks' escrow.
    function _addPaid(uint256 taskId, Task storage t, uint256 amount) private {
        uint256 paid = uint256(t.paid) + amount;
        if (paid > t.budget) revert TaskMarketBudgetExceeded(taskId, paid, t.budget);
        t.paid = uint128(paid); // <= budget, a uint128
    }

    /// @dev A joined trainer's first claim settles its part in the task: its reputation moves
    ///      towards the score; a flagged trainer is slashed (up to minStake) and its bond burned,
    ///      an unflagged one gets its bond back with the payout (returned, for the caller to pay).
    function _settleTrainer(uint256 taskId, Task storage t, address account, uint32 scorePpm, uint256 flags)
        private
        returns (uint256 bondBack)
    {
        if (_trainers[taskId][account] != TrainerStatus.Joined) return 0;
        uint128 bond = t.trainerBond;
        _trainers[taskId][account] = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        if (flags == 0) {
            bondBack = bond;
        } else if (bond > 0) {
            emit BondsBurned(taskId, bond);
        }

        _registry.recordScore(account, scorePpm > ReputationMath.ONE ? ReputationMath.ONE : scorePpm);
        if (flags != 0) {
            if (t.minStake > 0) {
                // Evidence: the final payout root, which names the report (see ScoreRevealed).
                _registry.slash(account, t.minStake, taskId, Strings.toHexString(uint256(t.payoutRoot), 32));
            }
            if (bond > 0) t.token.safeTransfer(BURN_ADDRESS, bond);
        }
    }

    // --- internals: helpers ---------------------------------------------------------------------

    function _task(uint256 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (t.requester == address(0)) revert TaskMarketUnknownTask(taskId);
    }

    /// @dev The earlier of now and the deadline that just passed (or is being cut short).
    function _anchor(uint64 deadline) private view returns (uint64) {
        return block.timestamp < deadline ? uint64(block.timestamp) : deadline;
    }

    function _roundEnded(Task storage t, uint16 round) private view returns (bool) {
        Phase phase = t.phase;
        if (phase == Phase.Training) return t.currentRound > round;
        return phase != Phase.Open && !(phase == Phase.Cancelled && !t.scoringFailed);
    }

    function _revealed(uint256 taskId, address oracle) private view returns (bool) {
        uint8 number = _seats[taskId][oracle].number;
        return number != 0 && _tasks[taskId].revealedMask & (1 << (number - 1)) != 0;
    }

    function _leadingRoot(uint256 taskId, Task storage t) private view returns (bytes32) {
        uint8 leader = t.leader;
        return leader == 0 ? bytes32(0) : _votes[taskId][_committees[taskId][leader - 1]];
    }

    function _u128(uint256 amount) private pure returns (uint128) {
        if (amount > type(uint128).max) revert TaskMarketAmountTooLarge(amount);
        return uint128(amount);
    }

    /// @dev Pulls `amount` of `token` and insists the balance grew by exactly that much.
    function _pull(IERC20 token, address from, uint256 amount) private {
        if (amount == 0) return;
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(from, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert TaskMarketFeeOnTransfer(token, amount, received);
    }
}
