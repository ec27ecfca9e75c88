// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

import {IModelVersionRegistry} from "./interfaces/IModelVersionRegistry.sol";
import {IModelVersions} from "./interfaces/IModelVersions.sol";
import {ITaskMarket} from "./interfaces/ITaskMarket.sol";

/// @title ModelVersions
/// @notice Model versions, consent withdrawals and data retention for the task market's tasks.
/// @dev Membership (requester, trainers, committee) is read from the task market; nothing here
///      loops over participants. `_excluded[taskId]` is a checkpoint trace keyed by "withdrawals
///      excluded" with the time a validated version first excluded that many: a withdrawal `i` was
///      honoured when the first checkpoint with key ≥ i is no later than its deadline.
///      Invariant: the token balance of this contract is Σ `depositHeld` over the tasks using it.
contract ModelVersions is IModelVersionRegistry, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using Checkpoints for Checkpoints.Trace224;

    /// @notice The longest unlearning window a task may set.
    uint64 public constant MAX_UNLEARN_WINDOW = 180 days;

    /// @notice The task market whose tasks this contract tracks.
    ITaskMarket public immutable market;

    mapping(uint256 taskId => TaskState) private _tasks;
    mapping(uint256 taskId => mapping(uint32 versionId => Version)) private _versions;
    mapping(uint256 taskId => mapping(uint32 versionId => mapping(address oracle => bool))) private _attested;
    mapping(uint256 taskId => mapping(uint32 withdrawalId => Withdrawal)) private _withdrawals;
    mapping(uint256 taskId => mapping(address trainer => uint32)) private _withdrawalOf;
    mapping(uint256 taskId => mapping(uint32 nonce => mapping(address trainer => bool))) private _approved;
    mapping(uint256 taskId => Checkpoints.Trace224) private _excluded;
    mapping(uint256 taskId => mapping(bytes32 unlearningRound => mapping(address trainer => bytes32 digest))) private
        _calibrations;

    /// @param market_ The task market.
    constructor(ITaskMarket market_) {
        market = market_;
    }

    // --- actions --------------------------------------------------------------------------------

    /// @inheritdoc IModelVersionRegistry
    function registerTask(uint256 taskId, Terms calldata terms) external nonReentrant {
        if (_tasks[taskId].requester != address(0)) revert ModelVersionsAlreadyRegistered(taskId);
        address requester = market.task(taskId).requester; // reverts for an unknown task
        if (msg.sender != requester) revert ModelVersionsNotRequester(taskId, msg.sender);
        if (terms.retentionExpiry <= block.timestamp) revert ModelVersionsInvalidTerms(1);
        if (terms.unlearnWindow == 0 || terms.unlearnWindow > MAX_UNLEARN_WINDOW) revert ModelVersionsInvalidTerms(2);
        if (terms.quorum == 0 || terms.quorum > market.oracles(taskId).length) revert ModelVersionsInvalidTerms(3);
        if (terms.deposit < terms.missPenalty || terms.deposit > type(uint128).max) revert ModelVersionsInvalidTerms(4);

        TaskState storage t = _tasks[taskId];
        t.requester = requester;
        t.token = terms.token;
        t.depositHeld = uint128(terms.deposit);
        t.missPenalty = uint128(terms.missPenalty);
        t.retentionExpiry = terms.retentionExpiry;
        t.unlearnWindow = terms.unlearnWindow;
        t.quorum = terms.quorum;
        emit TaskRegistered(taskId, requester, terms.deposit, terms.retentionExpiry, terms.unlearnWindow);

        if (terms.deposit > 0) {
            uint256 before = terms.token.balanceOf(address(this));
            terms.token.safeTransferFrom(msg.sender, address(this), terms.deposit);
            uint256 received = terms.token.balanceOf(address(this)) - before;
            if (received != terms.deposit) {
                revert ModelVersionsFeeOnTransfer(terms.token, terms.deposit, received);
            }
        }
    }

    /// @inheritdoc IModelVersionRegistry
    function recordVersion(
        uint256 taskId,
        uint32 parent,
        Reason reason,
        uint32 excludes,
        bytes32 digest,
        string calldata cid
    ) external returns (uint32 versionId) {
        TaskState storage t = _task(taskId);
        if (!_mayPropose(taskId, t)) revert ModelVersionsNotProposer(taskId, msg.sender);
        if (digest == bytes32(0)) revert ModelVersionsZeroDigest();
        _checkLineage(taskId, t, parent, reason, excludes, digest);

        versionId = t.versionCount + 1;
        t.versionCount = versionId;
        Version storage v = _versions[taskId][versionId];
        v.digest = digest;
        v.parent = parent;
        v.reason = reason;
        v.excludes = excludes;
        v.recordedAt = uint64(block.timestamp);
        v.proposer = msg.sender;
        emit VersionRecorded(taskId, versionId, parent, reason, excludes, digest, cid);
    }

    /// @inheritdoc IModelVersionRegistry
    function attestVersion(uint256 taskId, uint32 versionId) external {
        TaskState storage t = _task(taskId);
        if (versionId == 0 || versionId > t.versionCount) revert ModelVersionsUnknownVersion(taskId, versionId);
        if (!market.isOracle(taskId, msg.sender)) revert ModelVersionsNotCommittee(taskId, msg.sender);
        if (_attested[taskId][versionId][msg.sender]) {
            revert ModelVersionsAlreadyAttested(taskId, versionId, msg.sender);
        }

        Version storage v = _versions[taskId][versionId];
        _attested[taskId][versionId][msg.sender] = true;
        uint8 count = v.attestations + 1; // committee ≤ the market's bound (16): no overflow
        v.attestations = count;
        emit VersionAttested(taskId, versionId, msg.sender, count);
        if (count == t.quorum) {
            v.attestedAt = uint64(block.timestamp);
            if (v.excludes > t.excludedCount) {
                t.excludedCount = v.excludes;
                _excluded[taskId].push(v.excludes, uint224(block.timestamp));
            }
            emit VersionValidated(taskId, versionId);
        }
    }

    /// @inheritdoc IModelVersionRegistry
    function requestWithdrawal(uint256 taskId) external returns (uint32 withdrawalId) {
        TaskState storage t = _task(taskId);
        if (!market.isTrainer(taskId, msg.sender)) revert ModelVersionsNotTrainer(taskId, msg.sender);
        if (_withdrawalOf[taskId][msg.sender] != 0) revert ModelVersionsAlreadyWithdrawn(taskId, msg.sender);

        unchecked {
            withdrawalId = t.withdrawalCount + 1; // one per trainer: bounded by the market's count
        }
        uint64 deadline = uint64(block.timestamp) + t.unlearnWindow;
        t.withdrawalCount = withdrawalId;
        _withdrawalOf[taskId][msg.sender] = withdrawalId;
        _withdrawals[taskId][withdrawalId] = Withdrawal({
            trainer: msg.sender,
            requestedAt: uint64(block.timestamp),
            deadline: deadline,
            penaltyPaid: false
        });
        emit WithdrawalRequested(taskId, withdrawalId, msg.sender, deadline);

        if (t.pendingExpiry != 0) {
            uint32 nonce = t.renewalNonce;
            if (_approved[taskId][nonce][msg.sender]) {
                _approved[taskId][nonce][msg.sender] = false;
                t.renewalApprovals -= 1;
                emit RenewalApprovalRevoked(taskId, nonce, msg.sender);
            }
            _maybeRenew(taskId, t); // one fewer owner to ask
        }
    }

    /// @inheritdoc IModelVersionRegistry
    function commitCalibration(uint256 taskId, uint32 excludes, uint32 round, bytes32 digest, string calldata cid)
        external
    {
        TaskState storage t = _task(taskId);
        if (excludes == 0 || excludes > t.withdrawalCount) revert ModelVersionsUnknownWithdrawal(taskId, excludes);
        if (!market.isTrainer(taskId, msg.sender)) revert ModelVersionsNotTrainer(taskId, msg.sender);
        if (_withdrawalOf[taskId][msg.sender] != 0) revert ModelVersionsAlreadyWithdrawn(taskId, msg.sender);
        if (digest == bytes32(0)) revert ModelVersionsZeroDigest();
        mapping(address => bytes32) storage committed = _calibrations[taskId][_unlearningRound(excludes, round)];
        if (committed[msg.sender] != bytes32(0)) {
            revert ModelVersionsCalibrationCommitted(taskId, excludes, round, msg.sender);
        }

        committed[msg.sender] = digest;
        emit CalibrationCommitted(taskId, excludes, msg.sender, round, digest, cid, uint64(block.timestamp));
    }

    /// @inheritdoc IModelVersionRegistry
    function claimMissedDeadline(uint256 taskId) external nonReentrant {
        TaskState storage t = _task(taskId);
        uint32 id = _withdrawalOf[taskId][msg.sender];
        if (id == 0) revert ModelVersionsNoWithdrawal(taskId, msg.sender);
        Withdrawal storage w = _withdrawals[taskId][id];
        if (block.timestamp <= w.deadline) revert ModelVersionsDeadlineNotPassed(taskId, w.deadline);
        if (w.penaltyPaid) revert ModelVersionsPenaltyPaid(taskId, id);
        if (_honoured(taskId, id, w.deadline)) revert ModelVersionsDeadlineMet(taskId, id);

        uint128 amount = t.missPenalty < t.depositHeld ? t.missPenalty : t.depositHeld;
        w.penaltyPaid = true;
        t.depositHeld -= amount;
        emit PenaltyPaid(taskId, id, msg.sender, amount);

        if (amount > 0) t.token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IModelVersionRegistry
    function proposeRenewal(uint256 taskId, uint64 expiry) external {
        TaskState storage t = _task(taskId);
        if (msg.sender != t.requester) revert ModelVersionsNotRequester(taskId, msg.sender);
        if (expiry <= block.timestamp || expiry <= t.retentionExpiry) revert ModelVersionsInvalidRenewal(taskId, expiry);

        uint32 nonce = t.renewalNonce + 1;
        t.renewalNonce = nonce;
        t.pendingExpiry = expiry;
        t.renewalApprovals = 0;
        emit RenewalProposed(taskId, nonce, expiry);
    }

    /// @inheritdoc IModelVersionRegistry
    function approveRenewal(uint256 taskId, uint32 nonce) external {
        TaskState storage t = _task(taskId);
        if (t.pendingExpiry == 0 || nonce != t.renewalNonce) revert ModelVersionsNoPendingRenewal(taskId, nonce);
        if (!market.isTrainer(taskId, msg.sender)) revert ModelVersionsNotTrainer(taskId, msg.sender);
        if (_withdrawalOf[taskId][msg.sender] != 0) revert ModelVersionsAlreadyWithdrawn(taskId, msg.sender);
        if (_approved[taskId][nonce][msg.sender]) revert ModelVersionsAlreadyApproved(taskId, msg.sender);

        _approved[taskId][nonce][msg.sender] = true;
        t.renewalApprovals += 1;
        emit RenewalApproved(taskId, nonce, msg.sender, t.renewalApprovals);
        _maybeRenew(taskId, t);
    }

    /// @inheritdoc IModelVersionRegistry
    function reclaimDeposit(uint256 taskId) external nonReentrant {
        TaskState storage t = _task(taskId);
        if (msg.sender != t.requester) revert ModelVersionsNotRequester(taskId, msg.sender);
        uint64 unlockAt = t.retentionExpiry;
        if (t.withdrawalCount != 0) {
            uint64 claimsEnd = _withdrawals[taskId][t.withdrawalCount].deadline + t.unlearnWindow;
            if (claimsEnd > unlockAt) unlockAt = claimsEnd;
        }
        if (block.timestamp <= unlockAt) revert ModelVersionsDepositLocked(taskId, unlockAt);

        uint128 amount = t.depositHeld;
        t.depositHeld = 0;
        emit DepositReclaimed(taskId, amount);

        if (amount > 0) t.token.safeTransfer(msg.sender, amount);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc IModelVersions
    /// @dev Registered, validated by the committee's quorum, before the retention expiry, and no
    ///      withdrawal whose data the version still contains is past its deadline.
    function isSellable(uint256 taskId, uint256 version) external view returns (bool) {
        TaskState storage t = _tasks[taskId];
        if (t.requester == address(0) || version == 0 || version > t.versionCount) return false;
        if (block.timestamp > t.retentionExpiry) return false;
        Version storage v = _versions[taskId][uint32(version)]; // ≤ versionCount, a uint32
        if (v.attestedAt == 0) return false;
        // The first withdrawal this version still contains has the earliest deadline of them all.
        if (t.withdrawalCount > v.excludes && block.timestamp > _withdrawals[taskId][v.excludes + 1].deadline) {
            return false;
        }
        return true;
    }

    /// @inheritdoc IModelVersionRegistry
    function calibrationOf(uint256 taskId, uint32 excludes, uint32 round, address trainer)
        external
        view
        returns (bytes32 digest)
    {
        return _calibrations[taskId][_unlearningRound(excludes, round)][trainer];
    }

    /// @inheritdoc IModelVersionRegistry
    function hasWithdrawn(uint256 taskId, address trainer) external view returns (bool) {
        return _withdrawalOf[taskId][trainer] != 0;
    }

    /// @inheritdoc IModelVersionRegistry
    function isHonoured(uint256 taskId, uint32 withdrawalId) external view returns (bool) {
        if (withdrawalId == 0 || withdrawalId > _tasks[taskId].withdrawalCount) return false;
        return _honoured(taskId, withdrawalId, _withdrawals[taskId][withdrawalId].deadline);
    }

    /// @inheritdoc IModelVersionRegistry
    function taskState(uint256 taskId) external view returns (TaskState memory state) {
        return _task(taskId);
    }

    /// @inheritdoc IModelVersionRegistry
    function version(uint256 taskId, uint32 versionId) external view returns (Version memory info) {
        if (versionId == 0 || versionId > _task(taskId).versionCount) {
            revert ModelVersionsUnknownVersion(taskId, versionId);
        }
        return _versions[taskId][versionId];
    }

    /// @inheritdoc IModelVersionRegistry
    function withdrawal(uint256 taskId, uint32 withdrawalId) external view returns (Withdrawal memory info) {
        if (withdrawalId == 0 || withdrawalId > _task(taskId).withdrawalCount) {
            revert ModelVersionsNoWithdrawal(taskId, address(0));
        }
        return _withdrawals[taskId][withdrawalId];
    }

    /// @inheritdoc IModelVersions
    function withdrawalCount(uint256 taskId) external view returns (uint32) {
        return _tasks[taskId].withdrawalCount;
    }

    /// @inheritdoc IModelVersions
    function withdrawalOf(uint256 taskId, address trainer) external view returns (uint32) {
        return _withdrawalOf[taskId][trainer];
    }

    // --- internals ------------------------------------------------------------------------------

    function _task(uint256 taskId) private view returns (TaskState storage t) {
        t = _tasks[taskId];
        if (t.requester == address(0)) revert ModelVersionsUnknownTask(taskId);
    }

    /// @dev The key of one round of one unlearning in `_calibrations`.
    function _unlearningRound(uint32 excludes, uint32 round) private pure returns (bytes32) {
        return bytes32((uint256(excludes) << 32) | round);
    }

    /// @dev The requester, a committee member, or a trainer that has not withdrawn.
    function _mayPropose(uint256 taskId, TaskState storage t) private view returns (bool) {
        if (msg.sender == t.requester || market.isOracle(taskId, msg.sender)) return true;
        return _withdrawalOf[taskId][msg.sender] == 0 && market.isTrainer(taskId, msg.sender);
    }

    /// @dev Withdrawal `id` was honoured when the first validated version excluding it came no
    ///      later than its deadline (binary search over the task's exclusion checkpoints).
    function _honoured(uint256 taskId, uint32 id, uint64 deadline) private view returns (bool) {
        uint224 at = _excluded[taskId].lowerLookup(id);
        return at != 0 && at <= deadline;
    }

    /// @dev Revert unless parent, reason and exclusions fit together (see `recordVersion`), and a
    ///      root version is the task market's final model.
    function _checkLineage(
        uint256 taskId,
        TaskState storage t,
        uint32 parent,
        Reason reason,
        uint32 excludes,
        bytes32 digest
    ) private view {
        if (parent > t.versionCount) revert ModelVersionsUnknownVersion(taskId, parent);
        uint32 inherited = parent == 0 ? 0 : _versions[taskId][parent].excludes;
        bool ok = reason == Reason.Unlearned
            ? parent != 0 && excludes > inherited && excludes <= t.withdrawalCount
            : excludes == inherited && (parent != 0 || reason == Reason.Trained);
        if (!ok) revert ModelVersionsInvalidLineage(taskId, reason, parent, excludes);
        if (parent == 0) {
            bytes32 finalModel = market.modelDigest(taskId, market.task(taskId).rounds + 1);
            if (digest != finalModel) revert ModelVersionsNotFinalModel(taskId, digest, finalModel);
        }
    }

    /// @dev Apply the pending renewal once every trainer that has not withdrawn approved it.
    function _maybeRenew(uint256 taskId, TaskState storage t) private {
        uint256 remaining = market.trainerCount(taskId) - t.withdrawalCount;
        if (remaining == 0 || t.renewalApprovals < remaining) return;
        uint64 expiry = t.pendingExpiry;
        t.retentionExpiry = expiry;
        t.pendingExpiry = 0;
        emit RetentionRenewed(taskId, t.renewalNonce, expiry);
    }
}
