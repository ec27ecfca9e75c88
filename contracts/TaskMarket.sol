// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IJoinGate} from "./interfaces/IJoinGate.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {CommitteeVote} from "./libraries/CommitteeVote.sol";
import {TaskState} from "./libraries/TaskState.sol";
import {PayoutLeaf} from "./libraries/PayoutLeaf.sol";
import {ReputationMath} from "./libraries/ReputationMath.sol";
import {RoundBatch} from "./libraries/RoundBatch.sol";

/// @title TaskMarket
/// @notice Escrow, committee consent, rounds, update commitments, oracle commit-reveal, disputes,
///         Merkle claims and fallback pay for federated-learning tasks.
/// @dev Consent: nobody's stake is reserved by a task it did not accept (an oracle's seat, a
///      trainer's join); a reservation ends when the task ends for that account (cancel releases
///      the committee at once). Every phase's deadline is `now + duration` when the phase starts,
///      so a late `advance` never eats the next phase's window; durations are capped, and since
///      anyone may advance, every staker can drive its task to its end within the caps.
///      No token transfer to a third party (requester, disputer, burn address) can block a phase
///      transition or a reservation release: those are pushed with a try and, if the token
///      refuses, owed (`owedTo`, `sendOwed`), after every state change and registry release.
///      Invariant: this contract's balance of a token equals Σ over its tasks of
///      (budget − paid − refunded) + bondsHeld + depositHeld + the dispute bond held while Disputed
///      + Σ owed.
contract TaskMarket is ITaskMarket, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using CommitteeVote for CommitteeVote.State;

    /// @notice The largest oracle committee.
    uint256 public constant MAX_COMMITTEE = CommitteeVote.MAX_COMMITTEE;
    /// @notice The most training rounds a task may have.
    uint16 public constant MAX_ROUNDS = TaskState.MAX_ROUNDS;
    /// @notice Cap on every phase duration (accept, join, round, commit, reveal, dispute).
    uint64 public constant MAX_PHASE_DURATION = TaskState.MAX_PHASE_DURATION;
    /// @notice Cap on the claim window.
    uint64 public constant MAX_CLAIM_DURATION = TaskState.MAX_CLAIM_DURATION;
    /// @notice Protocol minimum of a trainer's `minStake` and of an oracle seat's reserved stake
    ///         (registry token units): empty accounts cannot fill seats.
    uint256 public constant MIN_STAKE = TaskState.MIN_STAKE;
    /// @notice Protocol minimum of a task's `trainerBond` for an 18-decimal token (one whole token:
    ///         `10 ** decimals()` of the task's token in general): every trainer posts a bond it
    ///         can lose, so an empty account cannot fill a seat at no risk.
    uint256 public constant MIN_TRAINER_BOND = TaskState.MIN_TRAINER_BOND;
    /// @notice Reserved stake at which a task moves reputation by the full EMA step; less stake at
    ///         risk moves it proportionally less.
    uint256 public constant REPUTATION_FULL_STAKE = 100e18;
    /// @notice The arbiter may only pick a root revealed by at least this share of committee stake.
    uint16 public constant ARBITER_MIN_ROOT_BPS = TaskState.ARBITER_MIN_ROOT_BPS;
    /// @notice The root that declares the sealed validation set not matching its commitment.
    bytes32 public constant VALIDATION_MISMATCH = CommitteeVote.VALIDATION_MISMATCH;
    /// @notice Where burned tokens go: OpenZeppelin's ERC20 refuses transfers to address(0).
    address public constant BURN_ADDRESS = TaskState.BURN_ADDRESS;
    /// @notice EIP-712 type of a seat acceptance signed by an oracle.
    bytes32 public constant SEAT_ACCEPTANCE_TYPEHASH =
        keccak256("SeatAcceptance(uint256 taskId,address oracle,uint256 deadline)");

    bytes32 private constant _EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("FedMarket TaskMarket");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    enum TrainerStatus {
        None,
        Joined,
        Settled // bond and reservation returned, burned or slashed
    }

    struct Trainer {
        TrainerStatus status;
        uint64 samples; // committed directly or proven from batches (fallback pay weight)
        uint128 reserved; // the task's minStake, reserved at join (read with the status)
        uint32 index; // join order from 0: the trainer's bit in a batch's bitmap
    }

    struct Update {
        bytes32 digest;
        uint64 numSamples;
    }

    IParticipantRegistry private immutable _registry;
    address private immutable _arbiter;
    // EIP-712 domain separator, computed once for the deployment's chain id and address; rebuilt
    // per call on any other chain (a fork) or address (a delegatecall).
    bytes32 private immutable _domainSeparator;
    uint256 private immutable _domainChainId;
    address private immutable _domainThis;

    uint256 private _taskCount;
    mapping(uint256 taskId => TaskState.Task) private _tasks;
    mapping(uint256 taskId => mapping(address trainer => Trainer)) private _trainers;
    mapping(uint256 taskId => mapping(uint16 round => mapping(address trainer => Update))) private _updates;
    // Trainers that did not commit in an ended round (written only when some did not).
    mapping(uint256 taskId => mapping(uint16 round => uint256)) private _roundShortfalls;
    mapping(uint256 taskId => mapping(uint16 round => bytes32)) private _models;
    mapping(uint256 taskId => mapping(uint256 word => uint256)) private _claimedBitmap;
    mapping(uint256 taskId => RoundBatch.Batches) private _batches;
    // Payments to third parties (requester, disputer, burn address) and bonds the token refused
    // to push; paid by `sendOwed` (see `_push`).
    mapping(uint256 taskId => mapping(address account => uint256)) private _owed;

    /// @param registry_ The participant registry (must authorize this market).
    /// @param arbiter_ Resolves disputes by picking a revealed root; a multisig or DAO in production.
    constructor(IParticipantRegistry registry_, address arbiter_) {
        if (address(registry_) == address(0) || arbiter_ == address(0)) revert TaskMarketZeroAddress();
        _registry = registry_;
        _arbiter = arbiter_;
        _domainSeparator = _buildDomainSeparator();
        _domainChainId = block.chainid;
        _domainThis = address(this);
    }

    // --- requester ------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function createTask(TaskParams calldata p) external nonReentrant returns (uint256 taskId) {
        taskId = ++_taskCount;
        TaskState.create(_tasks[taskId], taskId, p, _registry);
        _pull(p.token, msg.sender, p.budget + p.requesterDeposit);
    }

    /// @inheritdoc ITaskMarket
    function cancel(uint256 taskId) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        if (msg.sender != t.requester) revert TaskMarketNotRequester(taskId, msg.sender);
        if (t.phase != Phase.Open && t.phase != Phase.Forming) revert TaskMarketWrongPhase(taskId, t.phase);
        TaskState.cancelBeforeTraining(t, taskId, _owed[taskId], _registry);
    }

    // --- committee consent ----------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function acceptSeat(uint256 taskId) external {
        _acceptSeat(taskId, msg.sender);
    }

    /// @inheritdoc ITaskMarket
    function acceptSeatsFor(uint256 taskId, SeatSignature[] calldata signatures) external {
        uint256 n = signatures.length;
        if (n == 0) revert TaskMarketNoSignatures(taskId);
        // One transaction for several seats: its base cost is paid once (docs/benchmarks.md).
        for (uint256 i; i < n; ++i) {
            SeatSignature calldata s = signatures[i];
            address oracle = s.oracle;
            uint256 deadline = s.deadline;
            if (block.timestamp > deadline) revert TaskMarketSignatureExpired(deadline);
            // EIP-2098 compact signature: OpenZeppelin rebuilds (v, s) and rejects a high s.
            (address signer, ECDSA.RecoverError err,) =
                ECDSA.tryRecover(seatAcceptanceDigest(taskId, oracle, deadline), s.r, s.vs);
            if (err != ECDSA.RecoverError.NoError || signer != oracle) revert TaskMarketInvalidSignature(taskId, oracle);
            // A second signature of the same oracle reverts here (TaskMarketSeatAlreadyAccepted).
            _acceptSeat(taskId, oracle);
        }
    }

    // --- trainers -------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function join(uint256 taskId) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        _open(t); // the first join stores the Open phase the last seat started
        if (t.phase != Phase.Open) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        if (msg.sender == t.requester || t.committee.seats[msg.sender].number != 0) {
            revert TaskMarketConflictOfInterest(msg.sender);
        }
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status != TrainerStatus.None) revert TaskMarketAlreadyJoined(taskId, msg.sender);
        uint32 count = t.trainerCount;
        if (count >= t.maxTrainers) revert TaskMarketTaskFull(taskId, t.maxTrainers);
        address gate = t.joinGate;
        if (gate != address(0) && !IJoinGate(gate).canJoin(taskId, msg.sender)) {
            revert TaskMarketJoinRefused(taskId, msg.sender);
        }
        IParticipantRegistry.Participant memory p = _registry.participant(msg.sender);
        if (p.role != IParticipantRegistry.Role.Trainer) {
            revert TaskMarketWrongRole(msg.sender, IParticipantRegistry.Role.Trainer);
        }
        uint128 minStake = t.minStake;
        if (p.stake - p.reserved < minStake) revert TaskMarketStakeTooLow(msg.sender, p.stake - p.reserved, minStake);
        if (p.reputationPpm < t.minReputationPpm) {
            revert TaskMarketReputationTooLow(msg.sender, p.reputationPpm, t.minReputationPpm);
        }

        uint128 bond = t.trainerBond;
        tr.status = TrainerStatus.Joined;
        tr.reserved = minStake;
        tr.index = count;
        // count < maxTrainers (a uint32) was checked above.
        unchecked {
            t.trainerCount = count + 1;
        }
        t.bondsHeld += bond;
        emit TrainerJoined(taskId, msg.sender, bond);
        _registry.reserve(msg.sender, minStake);
        _pull(t.token, msg.sender, bond);
    }

    /// @inheritdoc ITaskMarket
    function commitUpdate(uint256 taskId, uint16 round, string calldata cid, bytes32 digest, uint64 numSamples)
        external
    {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Training) _wrongPhase(taskId, t);
        if (round != t.currentRound) revert TaskMarketWrongRound(taskId, round, t.currentRound);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status == TrainerStatus.None) revert TaskMarketNotJoined(taskId, msg.sender);
        if (digest == bytes32(0)) revert TaskMarketZeroHash();
        if (numSamples == 0) revert TaskMarketZeroSamples();
        Update storage u = _updates[taskId][round][msg.sender];
        if (u.numSamples != 0) revert TaskMarketUpdateAlreadyCommitted(taskId, round, msg.sender);
        if (t.batchedRound == round) RoundBatch.commitDirect(_batches[taskId], taskId, round, msg.sender, tr.index);

        u.digest = digest;
        u.numSamples = numSamples;
        tr.samples += numSamples; // checked: a uint64 sum
        t.totalSamples += numSamples;
        // At most one commit per joined trainer per round, and trainerCount is a uint32.
        unchecked {
            t.roundCommits += 1;
        }
        emit UpdateCommitted(taskId, round, msg.sender, cid, digest, numSamples);
    }

    /// @inheritdoc ITaskMarket
    function commitRound(
        uint256 taskId,
        uint16 round,
        bytes32 root,
        uint256[] calldata included,
        uint64 samples,
        string calldata leavesCid,
        bytes32 modelDigest,
        string calldata modelCid
    ) external {
        TaskState.Task storage t = _task(taskId);
        if (_trainers[taskId][msg.sender].status != TrainerStatus.Joined) revert TaskMarketNotJoined(taskId, msg.sender);
        RoundBatch.commitRound(
            t,
            _batches[taskId],
            _models[taskId],
            _roundShortfalls[taskId],
            taskId,
            round,
            root,
            included,
            samples,
            leavesCid,
            modelDigest,
            modelCid
        );
    }

    /// @inheritdoc ITaskMarket
    function challengeLeaf(
        uint256 taskId,
        uint16 round,
        address closer,
        bytes32 root,
        UpdateLeaf calldata leaf,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        RoundBatch.Batches storage b = _batches[taskId];
        (bytes32 evidence, bool signed,) = RoundBatch.useLeaf(b, taskId, round, closer, root, leaf, signature, proof);
        Trainer storage victim = _trainers[taskId][leaf.trainer];
        bool member = victim.status != TrainerStatus.None;
        if (member && signed) revert TaskMarketLeafGenuine(taskId, round, leaf.trainer);
        Trainer storage c = _trainers[taskId][closer];
        if (c.status != TrainerStatus.Joined) revert TaskMarketCloserNotSlashable(taskId, closer);

        uint128 bond = t.trainerBond;
        uint128 reserved = c.reserved;
        c.status = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        uint64 total = t.totalSamples;
        t.totalSamples = leaf.numSamples < total ? total - leaf.numSamples : 0;
        // The round still open: the victim's bit is cleared (it was counted by the batch) so it
        // can commit directly.
        if (member && t.phase == Phase.Training && t.currentRound == round && t.batchedRound == round) {
            if (RoundBatch.exclude(b, victim.index)) t.roundCommits -= 1;
        }
        emit LeafChallenged(taskId, round, closer, leaf.trainer, msg.sender, evidence);
        if (bond > 0) emit BondsBurned(taskId, bond);
        _registry.slash(closer, reserved, reserved, taskId, evidence);
        if (bond > 0) _push(taskId, t.token, BURN_ADDRESS, bond, true);
    }

    /// @inheritdoc ITaskMarket
    function proveSamples(
        uint256 taskId,
        uint16 round,
        address closer,
        bytes32 root,
        UpdateLeaf calldata leaf,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external {
        _task(taskId);
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status != TrainerStatus.Joined || leaf.trainer != msg.sender) {
            revert TaskMarketNotJoined(taskId, leaf.trainer);
        }
        (, bool signed, bool settled) =
            RoundBatch.useLeaf(_batches[taskId], taskId, round, closer, root, leaf, signature, proof);
        if (!signed) revert TaskMarketInvalidSignature(taskId, msg.sender);
        if (settled) revert TaskMarketLeafSettled(taskId, round, msg.sender);
        uint64 samples = tr.samples + leaf.numSamples; // checked: a uint64 sum
        tr.samples = samples;
        emit SamplesProven(taskId, msg.sender, leaf.numSamples, samples);
    }

    /// @inheritdoc ITaskMarket
    function postModel(uint256 taskId, uint16 round, string calldata cid, bytes32 digest) external {
        TaskState.Task storage t = _task(taskId);
        if (round < 2 || round > uint256(t.rounds) + 1) revert TaskMarketInvalidModelRound(taskId, round);
        if (!_roundEnded(t, round - 1)) revert TaskMarketRoundNotEnded(taskId, round);
        if (_trainers[taskId][msg.sender].status == TrainerStatus.None) revert TaskMarketNotJoined(taskId, msg.sender);
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
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Cancelled || t.outcome != Outcome.None) _wrongPhase(taskId, t);
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status != TrainerStatus.Joined) revert TaskMarketNoBond(taskId, msg.sender);

        uint128 bond = t.trainerBond;
        tr.status = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        emit BondWithdrawn(taskId, msg.sender, bond);
        emit StakeReleased(taskId, msg.sender, t.minStake);
        _registry.release(msg.sender, t.minStake);
        // Tried, not required: a trainer the token refuses still gets its reservation back.
        if (bond > 0) _push(taskId, t.token, msg.sender, bond, true);
    }

    // --- anyone: phases -------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function advance(uint256 taskId) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        _open(t); // a completed committee opened the task: its join deadline applies
        Phase phase = t.phase;
        uint64 deadline = t.phaseDeadline;
        bool expired = block.timestamp > deadline;
        uint64 now_ = uint64(block.timestamp);
        if (phase == Phase.Forming) {
            if (!expired) revert TaskMarketTooEarly(taskId, deadline + 1);
            TaskState.cancelBeforeTraining(t, taskId, _owed[taskId], _registry);
        } else if (phase == Phase.Open) {
            if (t.trainerCount == t.maxTrainers || (expired && t.trainerCount >= t.minTrainers)) {
                t.currentRound = 1;
                t.phaseDeadline = now_ + t.roundDuration;
                _setPhase(taskId, t, Phase.Training);
            } else if (expired) {
                TaskState.cancelBeforeTraining(t, taskId, _owed[taskId], _registry);
            } else {
                revert TaskMarketTooEarly(taskId, deadline + 1);
            }
        } else if (phase == Phase.Training) {
            if (!expired && t.roundCommits < t.trainerCount) revert TaskMarketTooEarly(taskId, deadline + 1);
            RoundBatch.closeRound(t, _roundShortfalls[taskId], taskId);
        } else if (phase == Phase.Committing) {
            if (!expired && t.committee.committedCount < t.committee.size) revert TaskMarketTooEarly(taskId, deadline + 1);
            t.phaseDeadline = now_ + t.revealDuration;
            _setPhase(taskId, t, Phase.Revealing);
        } else if (phase == Phase.Revealing) {
            if (!expired && t.committee.revealedCount < t.committee.committedCount) {
                revert TaskMarketTooEarly(taskId, deadline + 1);
            }
            _closeScoring(taskId, t);
        } else if (phase == Phase.Disputed) {
            if (!expired) revert TaskMarketTooEarly(taskId, deadline + 1);
            if (t.disputer == address(0)) {
                // No quorum and no ruling: a plurality never finalizes.
                _fail(taskId, t, Outcome.Failed);
            } else {
                // A quorum root was disputed and the arbiter did not act: the quorum root stands.
                TaskState.endDispute(t, taskId, _owed[taskId], t.payoutRoot, false);
            }
        } else {
            revert TaskMarketWrongPhase(taskId, phase);
        }
    }

    /// @inheritdoc ITaskMarket
    function sweep(uint256 taskId) external nonReentrant {
        TaskState.sweep(_task(taskId), taskId, _owed[taskId], _registry);
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
        TaskState.Task storage t = _claimableTask(taskId);
        bytes32 leaf = PayoutLeaf.hash(block.chainid, address(this), taskId, index, account, amount, scorePpm, flags);
        if (!MerkleProof.verifyCalldata(proof, t.payoutRoot, leaf)) revert TaskMarketInvalidProof(taskId, index);
        _markClaimed(taskId, index);
        _addPaid(taskId, t, amount);
        emit Claimed(taskId, index, account, amount, flags);
        uint256 bondBack = _settleTrainer(taskId, t, account, scorePpm, flags);
        if (amount + bondBack > 0) t.token.safeTransfer(account, amount + bondBack);
    }

    /// @inheritdoc ITaskMarket
    function claimFallback(uint256 taskId) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Cancelled || t.outcome < Outcome.Failed) _wrongPhase(taskId, t);
        uint64 claimDeadline = t.claimsOpenAt + t.claimDuration;
        if (block.timestamp >= claimDeadline) revert TaskMarketDeadlinePassed(taskId, claimDeadline);
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status != TrainerStatus.Joined) revert TaskMarketNothingToClaim(taskId, msg.sender);

        uint64 samples = tr.samples;
        uint256 amount = _fallbackAmount(t, samples);
        uint128 bond = t.trainerBond;
        tr.status = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        _addPaid(taskId, t, amount);
        emit FallbackClaimed(taskId, msg.sender, amount, samples);
        emit StakeReleased(taskId, msg.sender, t.minStake);
        _registry.release(msg.sender, t.minStake);
        if (amount + bond > 0) t.token.safeTransfer(msg.sender, amount + bond);
    }

    /// @inheritdoc ITaskMarket
    function claimDeposit(uint256 taskId) external nonReentrant {
        TaskState.claimDeposit(_task(taskId), taskId);
    }

    /// @inheritdoc ITaskMarket
    function releaseStake(uint256 taskId) external {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Closed) _wrongPhase(taskId, t);
        Trainer storage tr = _trainers[taskId][msg.sender];
        if (tr.status != TrainerStatus.Joined) revert TaskMarketNothingToClaim(taskId, msg.sender);
        tr.status = TrainerStatus.Settled;
        emit StakeReleased(taskId, msg.sender, t.minStake);
        _registry.release(msg.sender, t.minStake);
    }

    /// @inheritdoc ITaskMarket
    function sendOwed(uint256 taskId, address account) external nonReentrant {
        uint256 amount = _owed[taskId][account];
        if (amount == 0) revert TaskMarketNothingToClaim(taskId, account);
        _owed[taskId][account] = 0;
        emit OwedPaid(taskId, account, amount);
        _tasks[taskId].token.safeTransfer(account, amount);
    }

    // --- oracles --------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function commitScore(uint256 taskId, bytes32 commitment) external {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Committing) _wrongPhase(taskId, t);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        t.committee.commit(taskId, msg.sender, commitment);
        emit ScoreCommitted(taskId, msg.sender, commitment);
    }

    /// @inheritdoc ITaskMarket
    function revealScore(uint256 taskId, bytes32 payoutRoot, string calldata reportCid, bytes32 salt) external {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Revealing) _wrongPhase(taskId, t);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        t.committee.reveal(taskId, msg.sender, payoutRoot, reportCid, salt);
        emit ScoreRevealed(taskId, msg.sender, payoutRoot, reportCid);
    }

    /// @inheritdoc ITaskMarket
    function slashOracle(uint256 taskId, address oracle) external nonReentrant {
        TaskState.slashOracle(_task(taskId), taskId, oracle, _registry);
    }

    // --- disputes -------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function dispute(uint256 taskId) external nonReentrant {
        TaskState.Task storage t = _task(taskId);
        if (t.phase != Phase.Finalized) _wrongPhase(taskId, t);
        if (block.timestamp >= t.claimsOpenAt) revert TaskMarketDeadlinePassed(taskId, t.claimsOpenAt);
        if (!t.committee.accepted(msg.sender) && _trainers[taskId][msg.sender].status == TrainerStatus.None) {
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
        TaskState.resolveDispute(_task(taskId), taskId, _owed[taskId], root);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc ITaskMarket
    function task(uint256 taskId) external view returns (TaskInfo memory) {
        bytes memory encoded = TaskState.encodedInfo(_task(taskId));
        // TaskInfo is a static struct: the library's abi.encode of it is this function's return
        // data as it stands (kept out of this contract's code for the 24 KiB limit).
        assembly ("memory-safe") {
            return(add(encoded, 32), mload(encoded))
        }
    }

    /// @inheritdoc ITaskMarket
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @inheritdoc ITaskMarket
    function isTrainer(uint256 taskId, address account) external view returns (bool) {
        return _trainers[taskId][account].status != TrainerStatus.None;
    }

    /// @inheritdoc ITaskMarket
    function isOracle(uint256 taskId, address account) external view returns (bool) {
        return _tasks[taskId].committee.seats[account].number != 0;
    }

    /// @inheritdoc ITaskMarket
    function hasAccepted(uint256 taskId, address oracle) external view returns (bool) {
        return _tasks[taskId].committee.accepted(oracle);
    }

    /// @inheritdoc ITaskMarket
    function oracles(uint256 taskId) external view returns (address[] memory) {
        return _tasks[taskId].committee.members;
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
        TaskState.Task storage t = _tasks[taskId];
        if (t.phase == Phase.Training && round == t.currentRound) return t.roundCommits;
        if (round == 0 || round > t.currentRound || !_roundEnded(t, round)) return 0;
        return t.trainerCount - _roundShortfalls[taskId][round];
    }

    /// @inheritdoc ITaskMarket
    function modelDigest(uint256 taskId, uint16 round) external view returns (bytes32) {
        if (round == 1) return _tasks[taskId].initialModelDigest;
        return _models[taskId][round];
    }

    /// @inheritdoc ITaskMarket
    function commitmentOf(uint256 taskId, address oracle) external view returns (bytes32) {
        CommitteeVote.State storage c = _tasks[taskId].committee;
        return c.revealed(oracle) ? bytes32(0) : c.votes[oracle];
    }

    /// @inheritdoc ITaskMarket
    function revealedRootOf(uint256 taskId, address oracle) external view returns (bytes32) {
        CommitteeVote.State storage c = _tasks[taskId].committee;
        return c.revealed(oracle) ? c.votes[oracle] : bytes32(0);
    }

    /// @inheritdoc ITaskMarket
    function rootStake(uint256 taskId, bytes32 root) external view returns (uint256) {
        return _tasks[taskId].committee.rootStakes[root];
    }

    /// @inheritdoc ITaskMarket
    function oracleWeight(uint256 taskId, address oracle) external view returns (uint256) {
        CommitteeVote.State storage c = _tasks[taskId].committee;
        return c.accepted(oracle) ? c.weight : 0;
    }

    /// @inheritdoc ITaskMarket
    function isOracleSlashed(uint256 taskId, address oracle) external view returns (bool) {
        return _tasks[taskId].committee.seats[oracle].slashed;
    }

    /// @inheritdoc ITaskMarket
    function fallbackOf(uint256 taskId, address trainer) external view returns (uint64 samples, uint256 amount) {
        TaskState.Task storage t = _tasks[taskId];
        samples = _trainers[taskId][trainer].samples;
        if (t.outcome >= Outcome.Failed) amount = _fallbackAmount(t, samples);
    }

    /// @inheritdoc ITaskMarket
    function seatAcceptanceDigest(uint256 taskId, address oracle, uint256 deadline) public view returns (bytes32) {
        // EIP-712, bound to this chain id and this market.
        bytes32 domain = block.chainid == _domainChainId && address(this) == _domainThis
            ? _domainSeparator
            : _buildDomainSeparator();
        bytes32 structHash = keccak256(abi.encode(SEAT_ACCEPTANCE_TYPEHASH, taskId, oracle, deadline));
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(_EIP712_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    /// @inheritdoc ITaskMarket
    function owedTo(uint256 taskId, address account) external view returns (uint256) {
        return _owed[taskId][account];
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

    /// @dev Moves no token and calls only the registry (trusted): no reentrancy guard needed.
    ///      The last seat opens the task at this block's time: `accept` records it beside the
    ///      acceptance mask (the slot it writes anyway) and `TaskState.phaseOf` reads the task as
    ///      Open, join deadline `now + joinDuration`, from then on; the first join or advance
    ///      stores it (`TaskState.open`). Keeps every consent, the last included, under 50,000 gas.
    function _acceptSeat(uint256 taskId, address oracle) private {
        TaskState.Task storage t = _task(taskId);
        // Stored Forming; accept reverts if the committee completed (the task is Open then).
        if (t.phase != Phase.Forming) revert TaskMarketWrongPhase(taskId, t.phase);
        if (block.timestamp > t.phaseDeadline) revert TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        (bool complete, uint96 amount) = t.committee.accept(taskId, oracle); // amount = oracleSlash
        emit SeatAccepted(taskId, oracle, amount);
        // No round before training: round 0.
        if (complete) emit PhaseAdvanced(taskId, Phase.Forming, Phase.Open, 0);
        _registry.reserve(oracle, amount);
    }

    // --- internals: phases ----------------------------------------------------------------------

    /// @dev Revealing → Finalized (quorum), Disputed (revealed roots, no quorum: the arbiter
    ///      decides or scoring fails) or a failure (nothing revealed, or a quorum of mismatch).
    function _closeScoring(uint256 taskId, TaskState.Task storage t) private {
        CommitteeVote.State storage c = t.committee;
        if (c.revealedCount == 0) {
            _fail(taskId, t, Outcome.Failed);
            return;
        }
        bytes32 leading = c.leadingRoot();
        t.payoutRoot = leading;
        if (c.hasQuorum(t.quorumBps)) {
            if (leading == VALIDATION_MISMATCH) {
                _fail(taskId, t, Outcome.ValidationMismatch);
            } else {
                _finalize(taskId, t, Phase.Revealing, uint64(block.timestamp) + t.disputeDuration);
            }
        } else {
            t.phaseDeadline = uint64(block.timestamp) + t.disputeDuration;
            _setPhase(taskId, t, Phase.Disputed);
        }
    }

    function _finalize(uint256 taskId, TaskState.Task storage t, Phase from, uint64 claimsOpenAt) private {
        t.phase = Phase.Finalized;
        t.outcome = Outcome.Scored;
        t.phaseDeadline = claimsOpenAt;
        t.claimsOpenAt = claimsOpenAt;
        emit PhaseAdvanced(taskId, from, Phase.Finalized, t.currentRound);
        emit TaskFinalized(taskId, t.payoutRoot, claimsOpenAt, claimsOpenAt + t.claimDuration);
    }

    /// @dev Scoring failed: the task is Cancelled with an outcome; the budget becomes the trainers'
    ///      fallback pool (pro rata by committed samples, pulled with `claimFallback`), or returns
    ///      to the requester if nobody committed a sample. The requester's deposit returns at sweep
    ///      unless the validation set was found mismatched (then the provers claim it). (A dispute
    ///      that ends in the mismatch fails in TaskState.endDispute.)
    function _fail(uint256 taskId, TaskState.Task storage t, Outcome outcome) private {
        Phase from = t.phase;
        t.phase = Phase.Cancelled;
        t.outcome = outcome;
        if (outcome == Outcome.ValidationMismatch) t.payoutRoot = VALIDATION_MISMATCH;
        uint64 opensAt = uint64(block.timestamp);
        t.claimsOpenAt = opensAt;
        t.phaseDeadline = opensAt + t.claimDuration;
        uint128 pool = t.totalSamples == 0 ? 0 : t.budget;
        emit PhaseAdvanced(taskId, from, Phase.Cancelled, t.currentRound);
        emit ScoringFailed(taskId, outcome, pool, opensAt + t.claimDuration);
        if (pool == 0) {
            uint128 refund = t.budget - t.paid - t.refunded;
            t.refunded += refund;
            emit Refunded(taskId, t.requester, refund);
            _push(taskId, t.token, t.requester, refund, true);
        }
    }

    /// @dev Stores the Open phase of a task whose committee completed since (TaskState.phaseOf).
    function _open(TaskState.Task storage t) private {
        TaskState.open(t);
    }

    /// @dev Reverts with the phase task `t` is in: Open for a committee that completed before any
    ///      join or advance stored it (TaskState.phaseOf).
    function _wrongPhase(uint256 taskId, TaskState.Task storage t) private view {
        Phase phase = t.phase;
        if (phase == Phase.Forming && t.committee.completedAt != 0) phase = Phase.Open;
        revert TaskMarketWrongPhase(taskId, phase);
    }

    function _setPhase(uint256 taskId, TaskState.Task storage t, Phase to) private {
        // A task whose committee completed is Open even while storage still says Forming (a
        // cancel before any join or advance): TaskState.phaseOf.
        Phase from = t.phase;
        if (from == Phase.Forming && t.committee.completedAt != 0) from = Phase.Open;
        t.phase = to;
        emit PhaseAdvanced(taskId, from, to, t.currentRound);
    }

    // --- internals: claims ---------------------------------------------------------------------

    /// @dev The task, if its claim window is open: Finalized, dispute window over, before the deadline.
    function _claimableTask(uint256 taskId) private view returns (TaskState.Task storage t) {
        t = _task(taskId);
        if (t.phase != Phase.Finalized) _wrongPhase(taskId, t);
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
    function _addPaid(uint256 taskId, TaskState.Task storage t, uint256 amount) private {
        uint256 paid = uint256(t.paid) + amount;
        // Claims happen only before any refund (refunds come at cancel, sweep, or a failure with
        // no sample committed, after which nothing is claimable), so paid <= budget suffices.
        if (paid > t.budget) revert TaskMarketBudgetExceeded(taskId, paid, t.budget);
        t.paid = uint128(paid); // <= budget, a uint128
    }

    function _fallbackAmount(TaskState.Task storage t, uint64 samples) private view returns (uint256) {
        uint64 total = t.totalSamples;
        // samples <= total; budget < 2^128 and samples < 2^64: no overflow.
        return total == 0 ? 0 : uint256(t.budget) * samples / total;
    }

    /// @dev A joined trainer's first claim settles its part in the task: its reservation is
    ///      released (or slashed if flagged), its reputation moves towards the score by a step
    ///      scaled by the stake it had at risk; an unflagged trainer gets its bond back with the
    ///      payout (returned, for the caller to pay), a flagged one's bond is burned.
    function _settleTrainer(uint256 taskId, TaskState.Task storage t, address account, uint32 scorePpm, uint256 flags)
        private
        returns (uint256 bondBack)
    {
        Trainer storage tr = _trainers[taskId][account];
        if (tr.status != TrainerStatus.Joined) return 0;
        uint128 bond = t.trainerBond;
        uint128 reserved = tr.reserved;
        tr.status = TrainerStatus.Settled;
        t.bondsHeld -= bond;
        // The registry's StakeReleased (market, amount) and this transaction's Claimed name the task.
        if (flags == 0) {
            bondBack = bond;
            _registry.settle(account, reserved, _capScore(scorePpm), _reputationWeight(reserved));
        } else {
            if (bond > 0) emit BondsBurned(taskId, bond);
            _registry.settle(account, 0, _capScore(scorePpm), _reputationWeight(reserved));
            // Evidence: the final payout root, which names the report (see ScoreRevealed).
            _registry.slash(
                account, reserved, reserved, taskId, t.payoutRoot
            );
            if (bond > 0) t.token.safeTransfer(BURN_ADDRESS, bond);
        }
    }

    function _capScore(uint32 scorePpm) private pure returns (uint32) {
        return scorePpm > ReputationMath.ONE ? ReputationMath.ONE : scorePpm;
    }

    /// @dev The reputation step's weight: the trainer's reserved stake over REPUTATION_FULL_STAKE.
    function _reputationWeight(uint128 reserved) private pure returns (uint32) {
        uint256 weight = uint256(reserved) * ReputationMath.ONE / REPUTATION_FULL_STAKE;
        return weight > ReputationMath.ONE ? ReputationMath.ONE : uint32(weight);
    }

    // --- internals: helpers ---------------------------------------------------------------------

    function _task(uint256 taskId) private view returns (TaskState.Task storage t) {
        t = _tasks[taskId];
        if (t.requester == address(0)) revert TaskMarketUnknownTask(taskId);
    }

    function _roundEnded(TaskState.Task storage t, uint16 round) private view returns (bool) {
        Phase phase = t.phase;
        if (phase == Phase.Training) return t.currentRound > round;
        if (phase == Phase.Open || phase == Phase.Forming) return false;
        return t.currentRound > 0 && !(phase == Phase.Cancelled && t.outcome == Outcome.None);
    }

    /// @dev `TaskState.push` on this task's owed ledger: pays `to` unless the token refuses (or
    ///      `attempt` is false), then owes it (`sendOwed`). Returns whether the tokens moved.
    function _push(uint256 taskId, IERC20 token, address to, uint256 amount, bool attempt)
        private
        returns (bool pushed)
    {
        return TaskState.push(_owed[taskId], taskId, token, to, amount, attempt);
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
