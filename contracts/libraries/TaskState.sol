// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {IParticipantRegistry} from "../interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "../interfaces/ITaskMarket.sol";
import {CommitteeVote} from "./CommitteeVote.sol";
import {ReputationMath} from "./ReputationMath.sol";

/// @title TaskState
/// @notice A task's stored state and its creation: the protocol's caps and minimums are checked
///         here, once, and the committee is proposed (no stake is touched until members accept).
///         Also the market's cold paths: the views' encoding, deposit claims, oracle slashing,
///         cancellation before training, disputes' end and sweep.
/// @dev An external library (linked into TaskMarket) so the market stays under the 24 KiB limit.
library TaskState {
    using SafeERC20 for IERC20;

    /// @notice The most training rounds a task may have.
    uint16 internal constant MAX_ROUNDS = 1000;
    /// @notice Cap on every phase duration (accept, join, round, commit, reveal, dispute).
    uint64 internal constant MAX_PHASE_DURATION = 30 days;
    /// @notice Cap on the claim window.
    uint64 internal constant MAX_CLAIM_DURATION = 180 days;
    /// @notice Protocol minimum of a trainer's `minStake` and of an oracle seat's reserved stake.
    uint256 internal constant MIN_STAKE = 1e18;
    /// @notice Protocol minimum of a task's `trainerBond` for an 18-decimal token: one whole
    ///         token, `10 ** decimals()` of the task's token in general (`minTrainerBond`). Every
    ///         trainer that takes a seat posts a bond it loses if flagged or if it closes a batch
    ///         with a forged leaf, besides its reserved stake.
    uint256 internal constant MIN_TRAINER_BOND = 1e18;
    /// @dev Above this a `decimals()` answer is not believed (10**36 still fits any budget check).
    uint256 private constant MAX_DECIMALS = 36;
    /// @notice The arbiter may only pick a root revealed by at least this share of committee stake.
    uint16 internal constant ARBITER_MIN_ROOT_BPS = 2500;
    /// @notice Where burned tokens go: OpenZeppelin's ERC20 refuses transfers to address(0).
    address internal constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    // Packed so that hot paths touch few slots: slot 0 for every phase check, slots 1 and 8 for
    // commitUpdate and commitRound, slots 2-4 for claim's accounting.
    struct Task {
        // slot 0
        address requester;
        ITaskMarket.Phase phase;
        uint16 currentRound;
        uint64 phaseDeadline;
        // slot 1
        IERC20 token;
        uint16 rounds;
        uint16 quorumBps;
        uint32 trainerCount;
        uint32 roundCommits; // updates committed in the current round
        // slot 2
        uint128 budget;
        uint128 paid;
        // slot 3
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
        uint64 joinDuration;
        uint64 claimsOpenAt;
        uint64 acceptDuration;
        // slot 8
        uint64 totalSamples;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint32 minReputationPpm;
        ITaskMarket.Outcome outcome;
        bool arbiterRuled;
        uint16 batchedRound; // the latest round committed by a batch (RoundBatch), 0 if none
        // slot 9
        uint128 requesterDeposit;
        uint128 depositHeld;
        // slot 10
        address disputer;
        // slot 11
        address joinGate;
        // slots 12-15
        bytes32 payoutRoot;
        bytes32 initialModelDigest;
        bytes32 validationCommitment;
        bytes32 sealedValidationDigest;
        CommitteeVote.State committee;
    }

    /// @notice Check `p` against the protocol's rules and initialise task `taskId` in Forming.
    /// @param t The task's (empty) storage.
    /// @param taskId The new task's id.
    /// @param p The requester's parameters.
    /// @param registry The registry (oracle roles are checked: roles never change).
    function create(Task storage t, uint256 taskId, ITaskMarket.TaskParams calldata p, IParticipantRegistry registry)
        external
    {
        _check(p);
        t.requester = msg.sender;
        t.phase = ITaskMarket.Phase.Forming;
        uint64 acceptDeadline = uint64(block.timestamp) + p.acceptDuration;
        t.phaseDeadline = acceptDeadline;
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
        t.joinDuration = p.joinDeadline - uint64(block.timestamp);
        t.acceptDuration = p.acceptDuration;
        t.minTrainers = p.minTrainers;
        t.maxTrainers = p.maxTrainers;
        t.minReputationPpm = p.minReputationPpm;
        t.requesterDeposit = _u128(p.requesterDeposit);
        t.depositHeld = t.requesterDeposit;
        _u128(p.budget + p.requesterDeposit);
        t.joinGate = p.joinGate;
        t.initialModelDigest = p.initialModelDigest;
        t.validationCommitment = p.validationCommitment;
        t.sealedValidationDigest = p.sealedValidationDigest;
        CommitteeVote.propose(t.committee, p.oracles, msg.sender, t.oracleSlash);
        _u128(CommitteeVote.totalStake(t.committee));
        for (uint256 i; i < p.oracles.length; ++i) {
            if (registry.roleOf(p.oracles[i]) != IParticipantRegistry.Role.Oracle) {
                revert ITaskMarket.TaskMarketWrongRole(p.oracles[i], IParticipantRegistry.Role.Oracle);
            }
        }
        emit ITaskMarket.TaskCreated(
            taskId, msg.sender, p.token, p.budget, p.modelSpecCid, p.initialModelCid, p.initialModelDigest, p.configCid
        );
        emit ITaskMarket.TaskTermsSet(
            taskId, p.oracles, acceptDeadline, p.sealedValidationDigest, p.requesterDeposit, p.joinGate
        );
    }

    /// @notice Task `t`'s phase and phase deadline as they stand. The last seat's acceptance
    ///         opens the task (it emits `PhaseAdvanced` Forming → Open) but, to keep consent
    ///         cheap, writes only the committee's completion time, in the slot the acceptance
    ///         writes anyway: a task whose committee completed is Open from that moment, with the
    ///         join window `joinDuration` counted from it (as if written then), until `open`
    ///         stores it (the first join or advance) or the task leaves Open.
    /// @param t The task.
    /// @return phase The phase in force.
    /// @return deadline Its deadline.
    function phaseOf(Task storage t) internal view returns (ITaskMarket.Phase phase, uint64 deadline) {
        phase = t.phase;
        deadline = t.phaseDeadline;
        if (phase == ITaskMarket.Phase.Forming) {
            uint64 completedAt = t.committee.completedAt;
            if (completedAt != 0) {
                phase = ITaskMarket.Phase.Open;
                deadline = completedAt + t.joinDuration;
            }
        }
    }

    /// @notice Store the Open phase of task `t` if its committee completed since (see `phaseOf`).
    /// @param t The task.
    function open(Task storage t) internal {
        if (t.phase != ITaskMarket.Phase.Forming) return;
        uint64 completedAt = t.committee.completedAt;
        if (completedAt == 0) return;
        t.phase = ITaskMarket.Phase.Open;
        t.phaseDeadline = completedAt + t.joinDuration;
    }

    /// @notice Task `t`'s join deadline: the committee's completion plus the join window; 0 while
    ///         the committee is incomplete.
    /// @param t The task.
    /// @return The deadline.
    function joinDeadlineOf(Task storage t) internal view returns (uint64) {
        uint64 completedAt = t.committee.completedAt;
        return completedAt == 0 ? 0 : completedAt + t.joinDuration;
    }

    /// @notice The ABI encoding of task `t`'s `ITaskMarket.TaskInfo` (TaskMarket.task returns it).
    /// @param t The task.
    /// @return The encoded struct.
    function encodedInfo(Task storage t) external view returns (bytes memory) {
        CommitteeVote.State storage c = t.committee;
        uint8 leader = c.leader;
        // A memory struct starts zeroed; every field is assigned below.
        // slither-disable-next-line uninitialized-local
        ITaskMarket.TaskInfo memory info;
        info.requester = t.requester;
        info.token = t.token;
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
        (info.phase, info.phaseDeadline) = phaseOf(t);
        info.joinDeadline = joinDeadlineOf(t);
        info.claimsOpenAt = t.claimsOpenAt;
        info.claimDeadline = t.claimsOpenAt == 0 ? 0 : t.claimsOpenAt + t.claimDuration;
        info.roundDuration = t.roundDuration;
        info.commitDuration = t.commitDuration;
        info.revealDuration = t.revealDuration;
        info.disputeDuration = t.disputeDuration;
        info.claimDuration = t.claimDuration;
        info.initialModelDigest = t.initialModelDigest;
        info.validationCommitment = t.validationCommitment;
        info.payoutRoot = t.payoutRoot;
        info.leadingRoot = leader == 0 ? bytes32(0) : c.votes[c.members[leader - 1]];
        info.leadingStake = CommitteeVote.leadingStake(c);
        info.committeeStake = CommitteeVote.totalStake(c);
        info.quorumBps = t.quorumBps;
        info.committeeSize = c.size;
        info.committedCount = c.committedCount;
        info.revealedCount = c.revealedCount;
        info.oracleSlash = t.oracleSlash;
        info.disputer = t.disputer;
        info.scoringFailed = t.outcome >= ITaskMarket.Outcome.Failed;
        info.outcome = t.outcome;
        info.arbiterRuled = t.arbiterRuled;
        info.acceptedCount = uint8(CommitteeVote.acceptedCount(c)); // <= 16
        info.acceptDuration = t.acceptDuration;
        info.joinDuration = t.joinDuration;
        info.totalSamples = t.totalSamples;
        info.joinGate = t.joinGate;
        info.requesterDeposit = t.requesterDeposit;
        info.depositHeld = t.depositHeld;
        info.sealedValidationDigest = t.sealedValidationDigest;
        return abi.encode(info);
    }

    /// @notice `TaskMarket.claimDeposit` (run by delegatecall from the market): after a
    ///         validation mismatch, the caller, an oracle that revealed `VALIDATION_MISMATCH`,
    ///         takes its equal share of the requester's deposit.
    /// @dev Here, not in the market, for the 24 KiB limit. The market holds the reentrancy lock.
    /// @param t The task.
    /// @param taskId Its id.
    function claimDeposit(Task storage t, uint256 taskId) external {
        if (t.outcome != ITaskMarket.Outcome.ValidationMismatch || t.phase != ITaskMarket.Phase.Cancelled) {
            (ITaskMarket.Phase inForce,) = phaseOf(t);
            revert ITaskMarket.TaskMarketWrongPhase(taskId, inForce);
        }
        CommitteeVote.State storage c = t.committee;
        CommitteeVote.Seat storage seat = c.seats[msg.sender];
        if (
            !CommitteeVote.revealed(c, msg.sender) || c.votes[msg.sender] != CommitteeVote.VALIDATION_MISMATCH
                || seat.depositClaimed
        ) {
            revert ITaskMarket.TaskMarketNothingToClaim(taskId, msg.sender);
        }
        // Equal weights: the number of members that proved the mismatch.
        uint256 provers = c.rootStakes[CommitteeVote.VALIDATION_MISMATCH] / c.weight;
        uint128 share = uint128(t.requesterDeposit / provers); // <= requesterDeposit, a uint128
        seat.depositClaimed = true;
        t.depositHeld -= share;
        emit ITaskMarket.DepositClaimed(taskId, msg.sender, share);
        if (share > 0) t.token.safeTransfer(msg.sender, share);
    }

    /// @notice `TaskMarket.slashOracle` (run by delegatecall from the market): slash `oracle`'s
    ///         reserved seat stake if it did not reveal the final root, between the end of the
    ///         dispute window and the claim deadline (the reservation is released at sweep).
    /// @dev Here, not in the market, for the 24 KiB limit. The market holds the reentrancy lock.
    /// @param t The task.
    /// @param taskId Its id.
    /// @param oracle The oracle to slash.
    /// @param registry The registry holding the reservation.
    function slashOracle(Task storage t, uint256 taskId, address oracle, IParticipantRegistry registry) external {
        ITaskMarket.Phase phase = t.phase;
        uint64 opensAt = t.claimsOpenAt;
        if (phase == ITaskMarket.Phase.Finalized) {
            // The root is final only once the dispute window is over.
            if (block.timestamp < opensAt) revert ITaskMarket.TaskMarketTooEarly(taskId, opensAt);
        } else if (!(phase == ITaskMarket.Phase.Cancelled && t.outcome != ITaskMarket.Outcome.None)) {
            (ITaskMarket.Phase inForce,) = phaseOf(t);
            revert ITaskMarket.TaskMarketWrongPhase(taskId, inForce);
        }
        // The slash window closes with the claim window: the reservation is released at sweep.
        uint64 windowEnd = opensAt + t.claimDuration;
        if (block.timestamp >= windowEnd) revert ITaskMarket.TaskMarketDeadlinePassed(taskId, windowEnd);
        bytes32 finalRoot = t.payoutRoot;
        CommitteeVote.markSlashed(t.committee, taskId, oracle, finalRoot, t.arbiterRuled);
        uint128 amount = t.oracleSlash;
        uint256 slashed = registry.slash(oracle, amount, amount, taskId, finalRoot);
        emit ITaskMarket.OracleSlashed(taskId, oracle, slashed);
    }

    // --- cold paths of the market (run by delegatecall, for the 24 KiB limit) -------------------
    // The market holds the reentrancy lock around each; `owed` is the task's `owedTo` mapping.

    /// @notice Forming/Open → Cancelled (`TaskMarket.cancel`, or `advance` once the acceptance
    ///         or join window passed): budget and deposit back to the requester, the committee's
    ///         reservations released at once.
    /// @param t The task.
    /// @param taskId Its id.
    /// @param owed The task's owed payments (the refund is owed if the token refuses it).
    /// @param registry The registry holding the reservations.
    function cancelBeforeTraining(
        Task storage t,
        uint256 taskId,
        mapping(address account => uint256) storage owed,
        IParticipantRegistry registry
    ) external {
        _setPhase(t, taskId, ITaskMarket.Phase.Cancelled);
        uint128 refund = t.budget - t.paid - t.refunded;
        uint128 deposit = t.depositHeld;
        t.refunded += refund;
        t.depositHeld = 0;
        _releaseCommittee(t, taskId, registry);
        emit ITaskMarket.Refunded(taskId, t.requester, refund + deposit);
        push(owed, taskId, t.token, t.requester, uint256(refund) + deposit, true);
    }

    /// @notice `TaskMarket.sweep`: after the claim window, close a finalized (or failed) task:
    ///         the unclaimed budget (and the deposit unless the requester was at fault) back to
    ///         the requester, unclaimed bonds (and an unclaimed mismatch deposit) burned, the
    ///         committee's reservations released.
    /// @param t The task.
    /// @param taskId Its id.
    /// @param owed The task's owed payments.
    /// @param registry The registry holding the reservations.
    function sweep(
        Task storage t,
        uint256 taskId,
        mapping(address account => uint256) storage owed,
        IParticipantRegistry registry
    ) external {
        (ITaskMarket.Phase phase,) = phaseOf(t);
        if (
            phase != ITaskMarket.Phase.Finalized
                && !(phase == ITaskMarket.Phase.Cancelled && t.outcome != ITaskMarket.Outcome.None)
        ) {
            revert ITaskMarket.TaskMarketWrongPhase(taskId, phase);
        }
        uint64 claimDeadline = t.claimsOpenAt + t.claimDuration;
        if (block.timestamp < claimDeadline) revert ITaskMarket.TaskMarketTooEarly(taskId, claimDeadline);

        // paid + refunded <= budget is enforced by every claim and refund.
        uint128 refund = t.budget - t.paid - t.refunded;
        uint128 unclaimedBonds = t.bondsHeld;
        t.refunded += refund;
        t.bondsHeld = 0;
        _setPhase(t, taskId, ITaskMarket.Phase.Closed);
        emit ITaskMarket.TaskSwept(taskId, refund, unclaimedBonds);
        _releaseCommittee(t, taskId, registry);
        // The refund (and the deposit unless the requester was at fault) to the requester;
        // unclaimed bonds (and an unclaimed mismatch deposit) burned. Both pushed; once one
        // failed the other is owed without a second try.
        uint256 deposit = t.depositHeld;
        t.depositHeld = 0;
        uint256 toRequester = refund;
        uint256 burned = unclaimedBonds;
        if (t.outcome == ITaskMarket.Outcome.ValidationMismatch) burned += deposit;
        else toRequester += deposit;
        IERC20 token = t.token;
        bool attempt = true;
        if (toRequester > 0) {
            emit ITaskMarket.Refunded(taskId, t.requester, toRequester);
            attempt = push(owed, taskId, token, t.requester, toRequester, true);
        }
        if (burned > 0) {
            emit ITaskMarket.BondsBurned(taskId, burned);
            push(owed, taskId, token, BURN_ADDRESS, burned, attempt);
        }
    }

    /// @notice `TaskMarket.resolveDispute` (the market checked the caller is the arbiter): a
    ///         Disputed task ends with `root`, which must have been revealed by at least
    ///         `ARBITER_MIN_ROOT_BPS` of the committee's stake.
    /// @param t The task.
    /// @param taskId Its id.
    /// @param owed The task's owed payments.
    /// @param root The root the arbiter picks.
    function resolveDispute(
        Task storage t,
        uint256 taskId,
        mapping(address account => uint256) storage owed,
        bytes32 root
    ) external {
        if (t.phase != ITaskMarket.Phase.Disputed) {
            (ITaskMarket.Phase inForce,) = phaseOf(t);
            revert ITaskMarket.TaskMarketWrongPhase(taskId, inForce);
        }
        if (block.timestamp > t.phaseDeadline) revert ITaskMarket.TaskMarketDeadlinePassed(taskId, t.phaseDeadline);
        uint256 stake = t.committee.rootStakes[root];
        if (stake == 0) revert ITaskMarket.TaskMarketRootNotRevealed(taskId, root);
        uint256 required = CommitteeVote.totalStake(t.committee) * ARBITER_MIN_ROOT_BPS / 10_000;
        if (stake < required) revert ITaskMarket.TaskMarketRootStakeTooLow(taskId, root, stake, required);
        t.arbiterRuled = true;
        endDispute(t, taskId, owed, root, true);
    }

    /// @notice Disputed → Finalized with `root` (or the mismatch failure); settles the dispute
    ///         bond (returned if the root changed, burned otherwise; pushed, else owed). Run by
    ///         `resolveDispute`, and by `TaskMarket.advance` when a disputed quorum root's
    ///         arbiter window passed (the quorum root stands).
    /// @param t The task.
    /// @param taskId Its id.
    /// @param owed The task's owed payments.
    /// @param root The final root.
    /// @param byArbiter Whether the arbiter ruled.
    function endDispute(
        Task storage t,
        uint256 taskId,
        mapping(address account => uint256) storage owed,
        bytes32 root,
        bool byArbiter
    ) public {
        bool changed = root != t.payoutRoot;
        t.payoutRoot = root;
        address disputer = t.disputer;
        uint128 bond = disputer == address(0) ? 0 : t.disputeBond;
        emit ITaskMarket.DisputeResolved(taskId, root, changed, byArbiter);
        bool attempt = true;
        uint64 now_ = uint64(block.timestamp);
        if (root == CommitteeVote.VALIDATION_MISMATCH) {
            // Scoring failed with the requester at fault: the budget is the trainers' fallback
            // pool (or back to the requester if nobody committed a sample); the provers claim
            // the deposit. Mirrors TaskMarket._fail.
            t.phase = ITaskMarket.Phase.Cancelled;
            t.outcome = ITaskMarket.Outcome.ValidationMismatch;
            t.claimsOpenAt = now_;
            t.phaseDeadline = now_ + t.claimDuration;
            uint128 pool = t.totalSamples == 0 ? 0 : t.budget;
            emit ITaskMarket.PhaseAdvanced(taskId, ITaskMarket.Phase.Disputed, ITaskMarket.Phase.Cancelled, t.currentRound);
            emit ITaskMarket.ScoringFailed(taskId, ITaskMarket.Outcome.ValidationMismatch, pool, now_ + t.claimDuration);
            if (pool == 0) {
                uint128 refund = t.budget - t.paid - t.refunded;
                t.refunded += refund;
                emit ITaskMarket.Refunded(taskId, t.requester, refund);
                attempt = push(owed, taskId, t.token, t.requester, refund, true);
            }
        } else {
            t.phase = ITaskMarket.Phase.Finalized;
            t.outcome = ITaskMarket.Outcome.Scored;
            t.phaseDeadline = now_;
            t.claimsOpenAt = now_;
            emit ITaskMarket.PhaseAdvanced(taskId, ITaskMarket.Phase.Disputed, ITaskMarket.Phase.Finalized, t.currentRound);
            emit ITaskMarket.TaskFinalized(taskId, root, now_, now_ + t.claimDuration);
        }
        if (bond > 0) {
            if (!changed) {
                emit ITaskMarket.BondsBurned(taskId, bond);
                disputer = BURN_ADDRESS;
            }
            push(owed, taskId, t.token, disputer, bond, attempt);
        }
    }

    /// @dev Releases every accepted, unslashed seat (at most MAX_COMMITTEE registry calls).
    function _releaseCommittee(Task storage t, uint256 taskId, IParticipantRegistry registry) private {
        CommitteeVote.State storage c = t.committee;
        uint256 n = c.size;
        uint128 amount = t.oracleSlash;
        for (uint256 i; i < n; ++i) {
            address oracle = c.members[i];
            CommitteeVote.Seat storage seat = c.seats[oracle];
            if (CommitteeVote.accepted(c, oracle) && !seat.released) {
                seat.released = true;
                emit ITaskMarket.StakeReleased(taskId, oracle, amount);
                registry.release(oracle, amount);
            }
        }
    }

    /// @dev The phase in force (`phaseOf`) → `to`, with its event.
    function _setPhase(Task storage t, uint256 taskId, ITaskMarket.Phase to) private {
        (ITaskMarket.Phase from,) = phaseOf(t);
        t.phase = to;
        emit ITaskMarket.PhaseAdvanced(taskId, from, to, t.currentRound);
    }

    /// @dev Pays `amount` of a task's token to `to` without letting the token block the caller:
    ///      tried only if `attempt` (no earlier push of this transaction failed) and, when the
    ///      token refuses, reverts, returns false or runs out of gas, owed to `to` instead
    ///      (`sendOwed`). Callers change every state and release every reservation first. The try
    ///      copies at most 32 bytes of returndata; after a failed one only an SSTORE and an event
    ///      run, so a token that burns its whole 63/64 of the gas needs the caller to supply about
    ///      64 × 25,000 gas at the call (`advance`, `sweep`: ~1.7M, ~3.4M at most). Returns
    ///      whether the tokens moved. Internal: TaskMarket's own pushes inline the same code.
    function push(
        mapping(address account => uint256) storage owed,
        uint256 taskId,
        IERC20 token,
        address to,
        uint256 amount,
        bool attempt
    ) internal returns (bool pushed) {
        if (attempt && _tryTransfer(token, to, amount)) return true;
        owed[to] += amount;
        emit ITaskMarket.PaymentDeferred(taskId, to, amount);
    }

    /// @dev OpenZeppelin's `SafeERC20.trySafeTransfer` (5.x) check, here so the strict transfer
    ///      stays specialised (claim's gas): true iff the call succeeded and returned `true`, or
    ///      returned nothing from an address with code. At most 32 bytes of returndata are
    ///      copied, so a token cannot make the caller pay for a huge revert reason.
    function _tryTransfer(IERC20 token, address to, uint256 amount) private returns (bool ok) {
        bytes4 selector = IERC20.transfer.selector;
        assembly ("memory-safe") {
            let fmp := mload(0x40)
            mstore(0x00, selector)
            mstore(0x04, and(to, shr(96, not(0))))
            mstore(0x24, amount)
            ok := call(gas(), token, 0, 0x00, 0x44, 0x00, 0x20)
            if iszero(and(ok, eq(mload(0x00), 1))) {
                ok := and(ok, and(iszero(returndatasize()), gt(extcodesize(token), 0)))
            }
            mstore(0x40, fmp)
        }
    }

    function _check(ITaskMarket.TaskParams calldata p) private view {
        if (address(p.token) == address(0)) revert ITaskMarket.TaskMarketZeroAddress();
        if (p.budget == 0) revert ITaskMarket.TaskMarketZeroBudget();
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert ITaskMarket.TaskMarketInvalidRounds(p.rounds);
        if (p.minTrainers == 0 || p.minTrainers > p.maxTrainers) {
            revert ITaskMarket.TaskMarketInvalidTrainerBounds(p.minTrainers, p.maxTrainers);
        }
        if (p.minReputationPpm > ReputationMath.ONE) revert ITaskMarket.TaskMarketInvalidReputation(p.minReputationPpm);
        if (p.joinDeadline <= block.timestamp) revert ITaskMarket.TaskMarketDeadlineInPast(p.joinDeadline);
        _checkDuration(p.acceptDuration, MAX_PHASE_DURATION);
        _checkDuration(p.joinDeadline - uint64(block.timestamp), MAX_PHASE_DURATION);
        _checkDuration(p.roundDuration, MAX_PHASE_DURATION);
        _checkDuration(p.commitDuration, MAX_PHASE_DURATION);
        _checkDuration(p.revealDuration, MAX_PHASE_DURATION);
        _checkDuration(p.disputeDuration, MAX_PHASE_DURATION);
        _checkDuration(p.claimDuration, MAX_CLAIM_DURATION);
        if (p.initialModelDigest == bytes32(0) || p.validationCommitment == bytes32(0)) {
            revert ITaskMarket.TaskMarketZeroHash();
        }
        if (p.quorumBps <= 5000 || p.quorumBps > 10_000) revert ITaskMarket.TaskMarketInvalidQuorum(p.quorumBps);
        if (p.minStake < MIN_STAKE) revert ITaskMarket.TaskMarketStakeBelowMinimum(p.minStake, MIN_STAKE);
        if (p.oracleSlash < MIN_STAKE) revert ITaskMarket.TaskMarketStakeBelowMinimum(p.oracleSlash, MIN_STAKE);
        uint256 minBond = minTrainerBond(address(p.token));
        if (p.trainerBond < minBond) revert ITaskMarket.TaskMarketBondBelowMinimum(p.trainerBond, minBond);
    }

    /// @notice The protocol minimum trainer bond in `token`: one whole token, `10 ** decimals()`
    ///         (a 6-decimal stablecoin: 1e6), or `MIN_TRAINER_BOND` when the token does not say.
    /// @param token The task's token.
    /// @return The minimum `trainerBond`, in the token's smallest units.
    function minTrainerBond(address token) internal view returns (uint256) {
        // A bounded static call: a token without `decimals()` (optional in ERC-20) or with an
        // absurd answer gets the 18-decimal minimum; only 32 bytes of return data are read.
        (bool ok, bytes memory data) = token.staticcall{gas: 30_000}(abi.encodeWithSignature("decimals()"));
        if (!ok || data.length != 32) return MIN_TRAINER_BOND;
        uint256 decimals = abi.decode(data, (uint256));
        return decimals > MAX_DECIMALS ? MIN_TRAINER_BOND : 10 ** decimals;
    }

    function _checkDuration(uint64 duration, uint64 cap) private pure {
        if (duration == 0) revert ITaskMarket.TaskMarketZeroDuration();
        if (duration > cap) revert ITaskMarket.TaskMarketDurationTooLong(duration, cap);
    }

    function _u128(uint256 amount) private pure returns (uint128) {
        if (amount > type(uint128).max) revert ITaskMarket.TaskMarketAmountTooLarge(amount);
        return uint128(amount);
    }
}
