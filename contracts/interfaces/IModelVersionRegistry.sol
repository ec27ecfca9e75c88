// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IModelVersions} from "./IModelVersions.sol";

/// @title IModelVersionRegistry
/// @notice The model versions of a federated-learning task, its data owners' consent withdrawals
///         and its data-retention term: which version of a task's model may still be sold.
/// @dev A task is registered once by its requester (read from the task market) with a retention
///      expiry, an unlearning window and a deposit. Versions (digest, CID, parent, reason) are
///      proposed by the requester, a committee member or a trainer that has not withdrawn, and
///      count once a quorum of the task's committee attests them. A trainer of the task may withdraw consent: the network must then
///      record an attested version that excludes its data within the window, or the withdrawing
///      trainer collects the miss penalty from the requester's deposit. Withdrawals are numbered
///      1, 2, … in request order; a version *excludes* the first `excludes` of them. Since every
///      deadline is the request time plus the task's fixed window, deadlines never decrease with
///      the number, so every check is O(1) or O(log n) and nothing loops over participants.
///      `IModelVersions` (`isSellable`) is the part sales consult; this is the rest.
interface IModelVersionRegistry is IModelVersions {
    /// @notice Why a version exists.
    /// @dev Trained: the model the task's training produced (a root version must match the task
    ///      market's final model digest). Unlearned: derived from `parent` without the data of
    ///      more withdrawn owners. Renewed: made under a renewed retention term (e.g. retrained
    ///      on the remaining owners' data).
    enum Reason {
        Trained,
        Unlearned,
        Renewed
    }

    /// @notice What the requester fixes when registering a task.
    /// @param token The ERC-20 of the deposit.
    /// @param deposit Tokens the requester posts now (at least `missPenalty`).
    /// @param missPenalty Paid from the deposit to a withdrawing owner whose deadline is missed.
    /// @param retentionExpiry Unix time after which nothing of the task may be sold until renewed.
    /// @param unlearnWindow Seconds from a withdrawal request to its deadline.
    /// @param quorum Committee attestations a version needs (1..committee size).
    struct Terms {
        IERC20 token;
        uint256 deposit;
        uint256 missPenalty;
        uint64 retentionExpiry;
        uint64 unlearnWindow;
        uint8 quorum;
    }

    /// @notice A registered task's state.
    struct TaskState {
        address requester;
        IERC20 token;
        uint128 depositHeld;
        uint128 missPenalty;
        uint64 retentionExpiry;
        uint64 unlearnWindow;
        uint8 quorum;
        uint32 versionCount;
        uint32 withdrawalCount;
        uint32 excludedCount; // the most withdrawals an attested version excludes
        uint32 renewalNonce;
        uint64 pendingExpiry; // the expiry a pending renewal proposes (0: none pending)
        uint32 renewalApprovals;
    }

    /// @notice One model version.
    struct Version {
        bytes32 digest;
        uint32 parent; // 0: none
        Reason reason;
        uint32 excludes; // withdrawals 1..excludes are not in this version's data
        uint8 attestations;
        uint64 recordedAt;
        uint64 attestedAt; // 0 until the quorum is reached
        address proposer;
    }

    /// @notice One consent withdrawal.
    struct Withdrawal {
        address trainer;
        uint64 requestedAt;
        uint64 deadline;
        bool penaltyPaid;
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when the task was not registered here.
    /// @param taskId The task.
    error ModelVersionsUnknownTask(uint256 taskId);
    /// @notice Thrown when a task is registered twice.
    /// @param taskId The task.
    error ModelVersionsAlreadyRegistered(uint256 taskId);
    /// @notice Thrown when someone other than the task's requester registers it or renews it.
    /// @param taskId The task.
    /// @param caller The caller.
    error ModelVersionsNotRequester(uint256 taskId, address caller);
    /// @notice Thrown when the registration terms are unusable.
    /// @param reason Which term: 1 expiry not in the future, 2 window zero or above the maximum,
    ///        3 quorum zero or above the committee size, 4 deposit below the miss penalty.
    error ModelVersionsInvalidTerms(uint8 reason);
    /// @notice Thrown when a version is proposed by someone other than the requester, a committee
    ///         member or a trainer of the task that has not withdrawn.
    /// @param taskId The task.
    /// @param caller The caller.
    error ModelVersionsNotProposer(uint256 taskId, address caller);
    /// @notice Thrown when an attestation does not come from a committee member of the task.
    /// @param taskId The task.
    /// @param caller The caller.
    error ModelVersionsNotCommittee(uint256 taskId, address caller);
    /// @notice Thrown when no version has this number.
    /// @param taskId The task.
    /// @param version The number asked for.
    error ModelVersionsUnknownVersion(uint256 taskId, uint32 version);
    /// @notice Thrown when a committee member attests the same version twice.
    /// @param taskId The task.
    /// @param version The version.
    /// @param oracle The member.
    error ModelVersionsAlreadyAttested(uint256 taskId, uint32 version, address oracle);
    /// @notice Thrown when a version's parent, reason and exclusions do not fit together.
    /// @param taskId The task.
    /// @param reason The reason given.
    /// @param parent The parent given.
    /// @param excludes The exclusions given.
    error ModelVersionsInvalidLineage(uint256 taskId, Reason reason, uint32 parent, uint32 excludes);
    /// @notice Thrown when a root Trained version's digest is not the task's final model.
    /// @param taskId The task.
    /// @param digest The digest given.
    /// @param expected The task market's final model digest (zero if none was posted yet).
    error ModelVersionsNotFinalModel(uint256 taskId, bytes32 digest, bytes32 expected);
    /// @notice Thrown when a digest is zero.
    error ModelVersionsZeroDigest();
    /// @notice Thrown when the caller is not a trainer of the task.
    /// @param taskId The task.
    /// @param caller The caller.
    error ModelVersionsNotTrainer(uint256 taskId, address caller);
    /// @notice Thrown when a trainer withdraws consent twice.
    /// @param taskId The task.
    /// @param trainer The trainer.
    error ModelVersionsAlreadyWithdrawn(uint256 taskId, address trainer);
    /// @notice Thrown when the caller has no withdrawal for the task.
    /// @param taskId The task.
    /// @param caller The caller.
    error ModelVersionsNoWithdrawal(uint256 taskId, address caller);
    /// @notice Thrown when a penalty is claimed before the deadline has passed.
    /// @param taskId The task.
    /// @param deadline The withdrawal's deadline.
    error ModelVersionsDeadlineNotPassed(uint256 taskId, uint64 deadline);
    /// @notice Thrown when a penalty is claimed for a withdrawal honoured in time.
    /// @param taskId The task.
    /// @param withdrawalId The withdrawal.
    error ModelVersionsDeadlineMet(uint256 taskId, uint32 withdrawalId);
    /// @notice Thrown when a penalty is claimed twice.
    /// @param taskId The task.
    /// @param withdrawalId The withdrawal.
    error ModelVersionsPenaltyPaid(uint256 taskId, uint32 withdrawalId);
    /// @notice Thrown when a renewal proposes an expiry not after both now and the current one.
    /// @param taskId The task.
    /// @param expiry The expiry proposed.
    error ModelVersionsInvalidRenewal(uint256 taskId, uint64 expiry);
    /// @notice Thrown when an approval names a renewal that is not the pending one.
    /// @param taskId The task.
    /// @param nonce The renewal named.
    error ModelVersionsNoPendingRenewal(uint256 taskId, uint32 nonce);
    /// @notice Thrown when a data owner approves the same renewal twice.
    /// @param taskId The task.
    /// @param trainer The owner.
    error ModelVersionsAlreadyApproved(uint256 taskId, address trainer);
    /// @notice Thrown when the deposit token delivered less than was sent (fee-on-transfer or
    ///         rebasing tokens are not supported).
    /// @param token The token.
    /// @param expected Tokens sent.
    /// @param received Tokens that arrived.
    error ModelVersionsFeeOnTransfer(IERC20 token, uint256 expected, uint256 received);
    /// @notice Thrown when the deposit is reclaimed before the retention term expired or before
    ///         one unlearning window has passed since the last withdrawal's deadline.
    /// @param taskId The task.
    /// @param unlockAt When it may be reclaimed under the current state.
    error ModelVersionsDepositLocked(uint256 taskId, uint64 unlockAt);
    /// @notice Thrown when a calibration names no recorded withdrawal (`excludes` is 0 or above
    ///         the withdrawals so far).
    /// @param taskId The task.
    /// @param excludes The withdrawals the calibration would forget.
    error ModelVersionsUnknownWithdrawal(uint256 taskId, uint32 excludes);
    /// @notice Thrown when a trainer commits a second calibration update for the same round of
    ///         the same unlearning (one update each, so every peer aggregates the same set).
    /// @param taskId The task.
    /// @param excludes The withdrawals being forgotten.
    /// @param round The stored round being calibrated.
    /// @param trainer The trainer.
    error ModelVersionsCalibrationCommitted(uint256 taskId, uint32 excludes, uint32 round, address trainer);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when a requester registers a task.
    /// @param taskId The task.
    /// @param requester The requester.
    /// @param deposit Tokens posted.
    /// @param retentionExpiry Retention expiry (unix time).
    /// @param unlearnWindow Seconds from a withdrawal to its deadline.
    event TaskRegistered(
        uint256 indexed taskId, address indexed requester, uint256 deposit, uint64 retentionExpiry, uint64 unlearnWindow
    );
    /// @notice Emitted when a version is proposed.
    /// @param taskId The task.
    /// @param version Its number.
    /// @param parent Its parent (0: none).
    /// @param reason Why it exists.
    /// @param excludes Withdrawals 1..excludes are not in its data.
    /// @param digest sha256 of its safetensors bytes.
    /// @param cid Where it is stored.
    event VersionRecorded(
        uint256 indexed taskId, uint32 indexed version, uint32 parent, Reason reason, uint32 excludes, bytes32 digest, string cid
    );
    /// @notice Emitted when a committee member attests a version.
    /// @param taskId The task.
    /// @param version The version.
    /// @param oracle The member.
    /// @param attestations Attestations so far.
    event VersionAttested(uint256 indexed taskId, uint32 indexed version, address indexed oracle, uint8 attestations);
    /// @notice Emitted when a version reaches the quorum (it counts from now on).
    /// @param taskId The task.
    /// @param version The version.
    event VersionValidated(uint256 indexed taskId, uint32 indexed version);
    /// @notice Emitted when a trainer withdraws consent.
    /// @param taskId The task.
    /// @param withdrawalId Its number.
    /// @param trainer The trainer.
    /// @param deadline When an excluding version must be validated by.
    event WithdrawalRequested(uint256 indexed taskId, uint32 indexed withdrawalId, address indexed trainer, uint64 deadline);
    /// @notice Emitted when a withdrawing owner collects the miss penalty.
    /// @param taskId The task.
    /// @param withdrawalId The withdrawal.
    /// @param trainer The owner.
    /// @param amount Tokens paid.
    event PenaltyPaid(uint256 indexed taskId, uint32 indexed withdrawalId, address indexed trainer, uint256 amount);
    /// @notice Emitted when the requester proposes a renewal of the retention term.
    /// @param taskId The task.
    /// @param nonce The renewal's number.
    /// @param expiry The proposed expiry.
    event RenewalProposed(uint256 indexed taskId, uint32 indexed nonce, uint64 expiry);
    /// @notice Emitted when a remaining data owner approves the pending renewal.
    /// @param taskId The task.
    /// @param nonce The renewal.
    /// @param trainer The owner.
    /// @param approvals Approvals so far.
    event RenewalApproved(uint256 indexed taskId, uint32 indexed nonce, address indexed trainer, uint32 approvals);
    /// @notice Emitted when a pending renewal loses an approval because its owner withdrew.
    /// @param taskId The task.
    /// @param nonce The renewal.
    /// @param trainer The owner.
    event RenewalApprovalRevoked(uint256 indexed taskId, uint32 indexed nonce, address indexed trainer);
    /// @notice Emitted when every remaining owner approved and the retention term is extended.
    /// @param taskId The task.
    /// @param nonce The renewal.
    /// @param expiry The new expiry.
    event RetentionRenewed(uint256 indexed taskId, uint32 indexed nonce, uint64 expiry);
    /// @notice Emitted when a remaining trainer commits its calibration update for one round of
    ///         an unlearning (calibrated retraining over the network).
    /// @param taskId The task.
    /// @param excludes The unlearning: withdrawals 1..excludes are being forgotten.
    /// @param trainer The trainer.
    /// @param round The stored round being calibrated.
    /// @param digest sha256 of the stored update's bytes (its envelope).
    /// @param cid Where the update is stored.
    /// @param committedAt The block time of the commit (the calibration's deadlines count from it).
    event CalibrationCommitted(
        uint256 indexed taskId,
        uint32 indexed excludes,
        address indexed trainer,
        uint32 round,
        bytes32 digest,
        string cid,
        uint64 committedAt
    );
    /// @notice Emitted when the requester takes back what is left of its deposit.
    /// @param taskId The task.
    /// @param amount Tokens returned.
    event DepositReclaimed(uint256 indexed taskId, uint256 amount);

    // --- actions --------------------------------------------------------------------------------

    /// @notice Register a task: its retention term, unlearning window, quorum and deposit.
    /// @dev Only the task's requester in the task market; pulls `terms.deposit` of `terms.token`.
    /// @param taskId The task market's task id.
    /// @param terms The terms.
    function registerTask(uint256 taskId, Terms calldata terms) external;

    /// @notice Propose a model version; it counts once `quorum` committee members attest it.
    /// @dev The requester, a committee member or a remaining trainer (one that has not
    ///      withdrawn: the network acts when the requester does not). Trained: `parent` 0 (digest = the task market's
    ///      final model) or an existing version, `excludes` equal to the parent's. Unlearned:
    ///      an existing `parent`, parent's excludes < `excludes` ≤ withdrawals so far. Renewed: an
    ///      existing `parent`, `excludes` equal to the parent's.
    /// @param taskId The task.
    /// @param parent The version it derives from (0: none).
    /// @param reason Why it exists.
    /// @param excludes Withdrawals 1..excludes whose data it does not contain.
    /// @param digest sha256 of the model's safetensors bytes.
    /// @param cid Where the model is stored.
    /// @return versionId Its number (1, 2, …).
    function recordVersion(
        uint256 taskId,
        uint32 parent,
        Reason reason,
        uint32 excludes,
        bytes32 digest,
        string calldata cid
    ) external returns (uint32 versionId);

    /// @notice Attest a version as a committee member (after re-validating it).
    /// @param taskId The task.
    /// @param version The version.
    function attestVersion(uint256 taskId, uint32 version) external;

    /// @notice Withdraw consent to the use of the caller's data in the task (a trainer of it).
    /// @param taskId The task.
    /// @return withdrawalId Its number; its deadline is now plus the task's window.
    function requestWithdrawal(uint256 taskId) external returns (uint32 withdrawalId);

    /// @notice Commit the caller's calibration update for one round of the unlearning that
    ///         forgets withdrawals 1..`excludes` (a trainer of the task that has not withdrawn;
    ///         once per round). The update itself is off-chain (`cid`, sealed to the task's
    ///         members); every peer reads the committed set from these events, so all of them
    ///         aggregate the same updates.
    /// @param taskId The task.
    /// @param excludes The unlearning: 1..withdrawals so far.
    /// @param round The stored round being calibrated.
    /// @param digest sha256 of the stored bytes (nonzero).
    /// @param cid Where they are stored.
    function commitCalibration(uint256 taskId, uint32 excludes, uint32 round, bytes32 digest, string calldata cid)
        external;

    /// @notice Collect the miss penalty when no version excluding the caller's data was validated
    ///         by its withdrawal's deadline (up to what is left of the deposit). Claim within one
    ///         unlearning window after the deadline: after that, once the retention term has
    ///         expired, the requester may reclaim the deposit.
    /// @param taskId The task.
    function claimMissedDeadline(uint256 taskId) external;

    /// @notice Propose to extend the retention term (the requester); every remaining data owner
    ///         must approve. Replaces any pending proposal.
    /// @param taskId The task.
    /// @param expiry The new expiry, after now and after the current expiry.
    function proposeRenewal(uint256 taskId, uint64 expiry) external;

    /// @notice Approve the pending renewal as a trainer of the task that has not withdrawn.
    /// @param taskId The task.
    /// @param nonce The pending renewal's number.
    function approveRenewal(uint256 taskId, uint32 nonce) external;

    /// @notice Return what is left of the deposit to the requester, once the retention term
    ///         has expired and one unlearning window has passed since the last deadline.
    /// @param taskId The task.
    function reclaimDeposit(uint256 taskId) external;

    // --- views ----------------------------------------------------------------------------------

    /// @notice The digest `trainer` committed for a round of an unlearning (0: none).
    /// @param taskId The task.
    /// @param excludes The unlearning.
    /// @param round The stored round.
    /// @param trainer The trainer.
    /// @return digest sha256 of the committed update's bytes.
    function calibrationOf(uint256 taskId, uint32 excludes, uint32 round, address trainer)
        external
        view
        returns (bytes32 digest);

    /// @notice Whether `trainer` withdrew consent for the task (its share of future sales stops).
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @return True if it withdrew.
    function hasWithdrawn(uint256 taskId, address trainer) external view returns (bool);

    /// @notice Whether withdrawal `withdrawalId` was honoured: a version excluding it was
    ///         validated by its deadline.
    /// @param taskId The task.
    /// @param withdrawalId The withdrawal.
    /// @return True if honoured in time.
    function isHonoured(uint256 taskId, uint32 withdrawalId) external view returns (bool);

    /// @notice A registered task's state.
    /// @param taskId The task.
    /// @return state The state.
    function taskState(uint256 taskId) external view returns (TaskState memory state);

    /// @notice One version.
    /// @param taskId The task.
    /// @param versionId The version (1..versionCount).
    /// @return info The version.
    function version(uint256 taskId, uint32 versionId) external view returns (Version memory info);

    /// @notice One withdrawal.
    /// @param taskId The task.
    /// @param withdrawalId The withdrawal (1..withdrawalCount).
    /// @return info The withdrawal.
    function withdrawal(uint256 taskId, uint32 withdrawalId) external view returns (Withdrawal memory info);

}
