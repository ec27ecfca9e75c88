// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IParticipantRegistry} from "./IParticipantRegistry.sol";

/// @title ITaskMarket
/// @notice Federated-learning tasks: a requester escrows a budget, staked trainers join and commit
///         their encrypted updates round by round, an oracle committee commits and reveals the
///         Merkle root of the payout table, and trainers claim their share (pull payments). Cheaters
///         flagged in the table are slashed; oracles that do not reveal or disagree with the final
///         root are slashed only for not revealing or for a root the arbiter ruled against; a
///         dispute freezes claims until an arbiter picks one of the revealed roots.
/// @dev Life of a task: Forming (the proposed committee accepts its seats) → Open (trainers join)
///      → Training(round 1..R) → Committing → Revealing → Finalized → Closed, with Disputed between
///      Revealing/Finalized and claims, and Cancelled when the committee does not accept in time,
///      too few trainers join, the requester cancels before training, or scoring fails (then the
///      trainers that committed updates claim a fallback pay from the escrow). Every phase's
///      deadline runs from the moment the phase actually starts. No function loops over trainers;
///      only committee-sized loops (at most 16) exist.
///      The task's token cannot block a phase or a stake release: every transfer to a third party
///      (a refund to the requester, a dispute bond to its disputer, a burn) and a trainer's bond
///      from `withdrawBond` are tried after the task's state and reservations have changed and,
///      if the token refuses, recorded as owed (`PaymentDeferred`, `owedTo`) for anyone to retry
///      with `sendOwed`. A token that burns all the gas it is given makes such a call cost about
///      64 times its bookkeeping (up to ~3.5M gas for `sweep`): callers supply headroom.
interface ITaskMarket {
    /// @notice Where a task is in its life.
    enum Phase {
        Open,
        Training,
        Committing,
        Revealing,
        Finalized,
        Disputed,
        Closed,
        Cancelled,
        Forming
    }

    /// @notice How scoring ended.
    enum Outcome {
        None, // not scored yet (or cancelled before scoring)
        Scored, // a payout root is final
        Failed, // nothing revealed, or no quorum and no ruling: fallback pay by committed samples
        ValidationMismatch // the committee (or arbiter) found the sealed validation set wrong
    }

    /// @notice What a requester fixes when creating a task.
    /// @dev Durations are seconds, each at most the protocol cap; `joinDeadline` is a unix time:
    ///      `joinDeadline − now` at creation is the join window, which starts when the committee
    ///      has accepted. `acceptDuration` is the committee's window to accept. `joinGate` (zero:
    ///      open joining) is asked `canJoin` on every join. `requesterDeposit` (task token) is paid
    ///      to the committee if the sealed validation set (digest `sealedValidationDigest`) turns
    ///      out not to match `validationCommitment`. `oracleSlash` is each seat's reserved stake:
    ///      its vote weight and what it risks. `minStake` and `oracleSlash` are at least
    ///      `MIN_STAKE`, `trainerBond` at least one whole token (`10 ** decimals()`). Strings are emitted, not stored.
    struct TaskParams {
        IERC20 token;
        uint256 budget;
        string modelSpecCid;
        string initialModelCid;
        bytes32 initialModelDigest;
        string configCid;
        bytes32 validationCommitment;
        uint16 rounds;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint256 minStake;
        uint32 minReputationPpm;
        uint256 trainerBond;
        uint256 disputeBond;
        uint64 joinDeadline;
        uint64 roundDuration;
        uint64 commitDuration;
        uint64 revealDuration;
        uint64 disputeDuration;
        uint64 claimDuration;
        address[] oracles;
        uint16 quorumBps;
        uint256 oracleSlash;
        uint64 acceptDuration;
        address joinGate;
        uint256 requesterDeposit;
        bytes32 sealedValidationDigest;
    }

    /// @notice A task's state, as returned by `task`.
    /// @dev `phaseDeadline` is the deadline of the current phase: the join deadline while Open, the
    ///      round deadline while Training, the commit or reveal deadline, the end of the dispute
    ///      window while Finalized (equal to `claimsOpenAt`), the arbiter's deadline while Disputed.
    ///      `leadingRoot`/`leadingStake` track the revealed root with the most oracle stake.
    /// @notice One trainer's leaf in a round's batch (task and round are given beside it). Its
    ///         EIP-712 digest (`UpdateLeaf` under the "FedMarket" domain, see RoundBatch) is what
    ///         the trainer signs and gossips, and what the batch's Merkle tree commits to.
    struct UpdateLeaf {
        address trainer; // the leaf's trainer (the EIP-712 `sender`)
        bytes32 digest; // sha256 of its encrypted update
        bytes32 cidHash; // keccak256 of the update's CID string (EIP-712 encoding of `string cid`)
        uint64 numSamples; // training samples of this round's update
    }

    /// @notice One oracle's consent to its seat, signed off-chain for `acceptSeatsFor`: its EIP-712
    ///         `SeatAcceptance(uint256 taskId,address oracle,uint256 deadline)` signature in the
    ///         EIP-2098 compact form (`vs` is `s` with the recovery bit `v − 27` in bit 255).
    struct SeatSignature {
        address oracle; // the oracle that signed
        uint256 deadline; // the signature's expiry (unix time)
        bytes32 r;
        bytes32 vs;
    }

    struct TaskInfo {
        address requester;
        IERC20 token;
        Phase phase;
        uint16 currentRound;
        uint16 rounds;
        uint256 budget;
        uint256 paid;
        uint256 refunded;
        uint256 trainerBond;
        uint256 disputeBond;
        uint256 bondsHeld;
        uint256 minStake;
        uint32 minReputationPpm;
        uint32 minTrainers;
        uint32 maxTrainers;
        uint32 trainerCount;
        uint32 roundCommits;
        uint64 joinDeadline;
        uint64 phaseDeadline;
        uint64 claimsOpenAt;
        uint64 claimDeadline;
        uint64 roundDuration;
        uint64 commitDuration;
        uint64 revealDuration;
        uint64 disputeDuration;
        uint64 claimDuration;
        bytes32 initialModelDigest;
        bytes32 validationCommitment;
        bytes32 payoutRoot;
        bytes32 leadingRoot;
        uint256 leadingStake;
        uint256 committeeStake;
        uint16 quorumBps;
        uint8 committeeSize;
        uint8 committedCount;
        uint8 revealedCount;
        uint256 oracleSlash;
        address disputer;
        bool scoringFailed;
        Outcome outcome;
        bool arbiterRuled;
        uint8 acceptedCount;
        uint64 acceptDuration;
        uint64 joinDuration;
        uint64 totalSamples;
        address joinGate;
        uint256 requesterDeposit;
        uint256 depositHeld;
        bytes32 sealedValidationDigest;
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when a duration is above its protocol cap.
    /// @param duration The duration given.
    /// @param cap The cap.
    error TaskMarketDurationTooLong(uint64 duration, uint64 cap);
    /// @notice Thrown when a task's stake per seat or per trainer is below the protocol minimum.
    /// @param amount The amount given.
    /// @param minimum The protocol minimum.
    error TaskMarketStakeBelowMinimum(uint256 amount, uint256 minimum);
    /// @notice Thrown when a task's trainer bond is below the protocol minimum (one whole token).
    /// @param amount The bond given.
    /// @param minimum The protocol minimum.
    error TaskMarketBondBelowMinimum(uint256 amount, uint256 minimum);
    /// @notice Thrown when an oracle accepts a seat it already accepted.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketSeatAlreadyAccepted(uint256 taskId, address oracle);
    /// @notice Thrown when a seat-acceptance signature is not the oracle's.
    /// @param taskId The task.
    /// @param oracle The oracle named.
    error TaskMarketInvalidSignature(uint256 taskId, address oracle);
    /// @notice Thrown when a seat-acceptance signature's deadline passed.
    /// @param deadline The signature's deadline.
    error TaskMarketSignatureExpired(uint256 deadline);
    /// @notice Thrown when `acceptSeatsFor` is given no signature.
    /// @param taskId The task.
    error TaskMarketNoSignatures(uint256 taskId);
    /// @notice Thrown when the task's join gate refuses the trainer.
    /// @param taskId The task.
    /// @param trainer The trainer.
    error TaskMarketJoinRefused(uint256 taskId, address trainer);
    /// @notice Thrown when the arbiter picks a root revealed by less stake than the protocol minimum.
    /// @param taskId The task.
    /// @param root The root.
    /// @param stake Its revealed stake.
    /// @param required The minimum.
    error TaskMarketRootStakeTooLow(uint256 taskId, bytes32 root, uint256 stake, uint256 required);
    /// @notice Thrown when a fallback, deposit or release claim does not apply.
    /// @param taskId The task.
    /// @param account The caller.
    error TaskMarketNothingToClaim(uint256 taskId, address account);

    /// @notice Thrown when no task has this id.
    /// @param taskId The id asked for.
    error TaskMarketUnknownTask(uint256 taskId);
    /// @notice Thrown when the function is not allowed in the task's current phase.
    /// @param taskId The task.
    /// @param phase Its current phase.
    error TaskMarketWrongPhase(uint256 taskId, Phase phase);
    /// @notice Thrown when an action comes after its deadline.
    /// @param taskId The task.
    /// @param deadline The deadline that passed (unix time).
    error TaskMarketDeadlinePassed(uint256 taskId, uint64 deadline);
    /// @notice Thrown when an action comes before the time it is allowed.
    /// @param taskId The task.
    /// @param notBefore The earliest time the action succeeds (unix time).
    error TaskMarketTooEarly(uint256 taskId, uint64 notBefore);
    /// @notice Thrown when an address is zero where a contract or account is required.
    error TaskMarketZeroAddress();
    /// @notice Thrown when a digest, commitment or root is zero.
    error TaskMarketZeroHash();
    /// @notice Thrown when the budget is zero.
    error TaskMarketZeroBudget();
    /// @notice Thrown when an amount does not fit the market's 128-bit accounting.
    /// @param amount The amount given.
    error TaskMarketAmountTooLarge(uint256 amount);
    /// @notice Thrown when `rounds` is zero or above `MAX_ROUNDS`.
    /// @param rounds The number given.
    error TaskMarketInvalidRounds(uint16 rounds);
    /// @notice Thrown unless 1 <= minTrainers <= maxTrainers.
    /// @param minTrainers The minimum given.
    /// @param maxTrainers The maximum given.
    error TaskMarketInvalidTrainerBounds(uint32 minTrainers, uint32 maxTrainers);
    /// @notice Thrown when the minimum reputation is above 1,000,000 ppm.
    /// @param minReputationPpm The value given.
    error TaskMarketInvalidReputation(uint32 minReputationPpm);
    /// @notice Thrown when a phase duration is zero.
    error TaskMarketZeroDuration();
    /// @notice Thrown when the join deadline is not in the future.
    /// @param joinDeadline The deadline given.
    error TaskMarketDeadlineInPast(uint64 joinDeadline);
    /// @notice Thrown unless 5000 < quorumBps <= 10000 (a quorum is a strict majority of stake).
    /// @param quorumBps The value given.
    error TaskMarketInvalidQuorum(uint16 quorumBps);
    /// @notice Thrown unless the committee has 1..MAX_COMMITTEE members.
    /// @param size The committee size given.
    error TaskMarketInvalidCommitteeSize(uint256 size);
    /// @notice Thrown when an oracle appears twice in the committee.
    /// @param oracle The repeated address.
    error TaskMarketDuplicateOracle(address oracle);
    /// @notice Thrown when an address would hold two roles in one task (requester, oracle, trainer).
    /// @param account The address.
    error TaskMarketConflictOfInterest(address account);
    /// @notice Thrown when an address is not registered with the role this action needs.
    /// @param account The address.
    /// @param required The role needed.
    error TaskMarketWrongRole(address account, IParticipantRegistry.Role required);
    /// @notice Thrown when an address's registry stake is below what this action needs.
    /// @param account The address.
    /// @param stake Its stake.
    /// @param required The stake needed.
    error TaskMarketStakeTooLow(address account, uint256 stake, uint256 required);
    /// @notice Thrown when a trainer's reputation is below the task's minimum.
    /// @param account The trainer.
    /// @param reputationPpm Its reputation.
    /// @param required The task's minimum.
    error TaskMarketReputationTooLow(address account, uint32 reputationPpm, uint32 required);
    /// @notice Thrown when the market received fewer tokens than it pulled (fee-on-transfer or
    ///         rebasing tokens are not supported: escrow accounting must be exact).
    /// @param token The token.
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error TaskMarketFeeOnTransfer(IERC20 token, uint256 expected, uint256 received);
    /// @notice Thrown when a trainer joins a task twice.
    /// @param taskId The task.
    /// @param account The trainer.
    error TaskMarketAlreadyJoined(uint256 taskId, address account);
    /// @notice Thrown when the task already has `maxTrainers` trainers.
    /// @param taskId The task.
    /// @param maxTrainers Its maximum.
    error TaskMarketTaskFull(uint256 taskId, uint32 maxTrainers);
    /// @notice Thrown when a trainer-only action comes from an address that did not join the task.
    /// @param taskId The task.
    /// @param account The caller.
    error TaskMarketNotJoined(uint256 taskId, address account);
    /// @notice Thrown when an update is committed for a round other than the current one.
    /// @param taskId The task.
    /// @param round The round given.
    /// @param currentRound The task's current round.
    error TaskMarketWrongRound(uint256 taskId, uint16 round, uint16 currentRound);
    /// @notice Thrown when a trainer commits a second update for the same round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The trainer.
    error TaskMarketUpdateAlreadyCommitted(uint256 taskId, uint16 round, address trainer);
    /// @notice Thrown when an update claims zero training samples.
    error TaskMarketZeroSamples();
    /// @notice Thrown when a model is posted for a round outside 2..rounds+1.
    /// @param taskId The task.
    /// @param round The round given.
    error TaskMarketInvalidModelRound(uint256 taskId, uint16 round);
    /// @notice Thrown when a model for `round` is posted before round-1 has ended.
    /// @param taskId The task.
    /// @param round The round given.
    error TaskMarketRoundNotEnded(uint256 taskId, uint16 round);
    /// @notice Thrown when someone other than the task's requester cancels it.
    /// @param taskId The task.
    /// @param account The caller.
    error TaskMarketNotRequester(uint256 taskId, address account);
    /// @notice Thrown when `withdrawBond` finds no bond to return.
    /// @param taskId The task.
    /// @param account The caller.
    error TaskMarketNoBond(uint256 taskId, address account);
    /// @notice Thrown when an oracle-only action comes from outside the task's committee.
    /// @param taskId The task.
    /// @param account The address.
    error TaskMarketNotCommitteeMember(uint256 taskId, address account);
    /// @notice Thrown when an oracle commits twice.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketScoreAlreadyCommitted(uint256 taskId, address oracle);
    /// @notice Thrown when an oracle reveals without having committed.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketNoCommitment(uint256 taskId, address oracle);
    /// @notice Thrown when an oracle reveals twice.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketAlreadyRevealed(uint256 taskId, address oracle);
    /// @notice Thrown when the revealed values do not hash to the oracle's commitment.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketCommitmentMismatch(uint256 taskId, address oracle);
    /// @notice Thrown when slashing an oracle that revealed the final root.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketOracleNotSlashable(uint256 taskId, address oracle);
    /// @notice Thrown when slashing an oracle a second time for the same task.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error TaskMarketOracleAlreadySlashed(uint256 taskId, address oracle);
    /// @notice Thrown when a dispute comes from neither a committee member nor a joined trainer.
    /// @param taskId The task.
    /// @param account The caller.
    error TaskMarketNotParticipant(uint256 taskId, address account);
    /// @notice Thrown when someone other than the arbiter resolves a dispute.
    /// @param account The caller.
    error TaskMarketNotArbiter(address account);
    /// @notice Thrown when the arbiter picks a root that no oracle revealed.
    /// @param taskId The task.
    /// @param root The root given.
    error TaskMarketRootNotRevealed(uint256 taskId, bytes32 root);
    /// @notice Thrown when a payout leaf was already claimed.
    /// @param taskId The task.
    /// @param index The leaf's index.
    error TaskMarketAlreadyClaimed(uint256 taskId, uint256 index);
    /// @notice Thrown when the Merkle proof does not prove the leaf under the task's payout root.
    /// @param taskId The task.
    /// @param index The leaf's index.
    error TaskMarketInvalidProof(uint256 taskId, uint256 index);
    /// @notice Thrown when a round already has its batch.
    /// @param taskId The task.
    /// @param round The round.
    error TaskMarketRoundAlreadyBatched(uint256 taskId, uint16 round);
    /// @notice Thrown when a batch comes after direct commits of the same round: they would not
    ///         be checked against its bitmap (the trainers commit directly only once the batch
    ///         is in or its closer's turn has timed out).
    /// @param taskId The task.
    /// @param round The round.
    /// @param commits Direct commits already made.
    error TaskMarketRoundHasDirectCommits(uint256 taskId, uint16 round, uint32 commits);
    /// @notice Thrown when a batch's bitmap has the wrong number of words, a bit past the last
    ///         trainer, or no bit at all.
    /// @param taskId The task.
    /// @param words The number of 256-bit words expected (one per 256 trainers).
    error TaskMarketInvalidBitmap(uint256 taskId, uint256 words);
    /// @notice Thrown when a leaf is not in the batch named (commitment or Merkle proof mismatch).
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The leaf's trainer.
    error TaskMarketLeafNotInBatch(uint256 taskId, uint16 round, address trainer);
    /// @notice Thrown when a challenged leaf is genuine: signed by its trainer, a member.
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The leaf's trainer.
    error TaskMarketLeafGenuine(uint256 taskId, uint16 round, address trainer);
    /// @notice Thrown when the closer of a forged batch has already settled (claimed, slashed).
    /// @param taskId The task.
    /// @param closer The closer.
    error TaskMarketCloserNotSlashable(uint256 taskId, address closer);
    /// @notice Thrown when a trainer's leaf for a round was already credited, voided by a
    ///         challenge, or superseded by its direct commit.
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The trainer.
    error TaskMarketLeafSettled(uint256 taskId, uint16 round, address trainer);
    /// @notice Thrown when paying a leaf would pay out more than the task's budget in total.
    /// @param taskId The task.
    /// @param paid The total after this claim.
    /// @param budget The task's budget.
    error TaskMarketBudgetExceeded(uint256 taskId, uint256 paid, uint256 budget);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when a task was created and its budget escrowed.
    /// @param taskId The new task's id.
    /// @param requester Who created and funded it.
    /// @param token The escrowed token.
    /// @param budget Tokens escrowed.
    /// @param modelSpecCid CID of the model specification (architecture, shapes, dtypes).
    /// @param initialModelCid CID of the initial weights (round 1's global model).
    /// @param initialModelDigest sha256 of the initial weights.
    /// @param configCid CID of the training configuration.
    event TaskCreated(
        uint256 indexed taskId,
        address indexed requester,
        IERC20 indexed token,
        uint256 budget,
        string modelSpecCid,
        string initialModelCid,
        bytes32 initialModelDigest,
        string configCid
    );
    /// @notice Emitted with `TaskCreated`: the terms that protect the committee and trainers.
    /// @param taskId The task.
    /// @param oracles The proposed committee (each must accept its seat).
    /// @param acceptDeadline When the committee's acceptance window ends.
    /// @param sealedValidationDigest Digest of the sealed validation blob the requester publishes.
    /// @param requesterDeposit Tokens deposited against a validation mismatch.
    /// @param joinGate The join gate (zero: open joining).
    event TaskTermsSet(
        uint256 indexed taskId,
        address[] oracles,
        uint64 acceptDeadline,
        bytes32 sealedValidationDigest,
        uint256 requesterDeposit,
        address joinGate
    );
    /// @notice Emitted when an oracle accepted its seat and its stake was reserved.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param reserved Stake reserved for the task.
    event SeatAccepted(uint256 indexed taskId, address indexed oracle, uint256 reserved);
    /// @notice Emitted when a reservation of this task was released (task ended for this account).
    /// @param taskId The task.
    /// @param account The staker.
    /// @param amount Stake released.
    event StakeReleased(uint256 indexed taskId, address indexed account, uint256 amount);
    /// @notice Emitted when scoring failed or found the validation set mismatched.
    /// @param taskId The task.
    /// @param outcome `Failed` or `ValidationMismatch`.
    /// @param fallbackPool Budget paid to trainers pro rata by committed samples.
    /// @param claimDeadline When fallback claims close.
    event ScoringFailed(uint256 indexed taskId, Outcome outcome, uint256 fallbackPool, uint64 claimDeadline);
    /// @notice Emitted when a trainer claimed its fallback pay.
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @param amount Tokens from the budget (its bond comes on top).
    /// @param samples Its committed samples.
    event FallbackClaimed(uint256 indexed taskId, address indexed trainer, uint256 amount, uint64 samples);
    /// @notice Emitted when an oracle that proved a validation mismatch took its share of the deposit.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param amount Tokens paid.
    event DepositClaimed(uint256 indexed taskId, address indexed oracle, uint256 amount);

    /// @notice Emitted when a task moved from one phase to another.
    /// @param taskId The task.
    /// @param from The phase before.
    /// @param to The phase after.
    /// @param round The current round after the transition.
    event PhaseAdvanced(uint256 indexed taskId, Phase from, Phase to, uint16 round);
    /// @notice Emitted when a trainer joined a task and posted its bond.
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @param bond Tokens bonded.
    event TrainerJoined(uint256 indexed taskId, address indexed trainer, uint256 bond);
    /// @notice Emitted when a trainer committed its update for a round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The trainer.
    /// @param cid CID of the encrypted update.
    /// @param digest sha256 of the update.
    /// @param numSamples Training samples the update claims.
    event UpdateCommitted(
        uint256 indexed taskId, uint16 round, address indexed trainer, string cid, bytes32 digest, uint64 numSamples
    );
    /// @notice Emitted when the canonical global model that starts `round` was posted (first post wins).
    /// @param taskId The task.
    /// @param round The round it starts (rounds+1: the final model).
    /// @param poster The trainer that posted it.
    /// @param cid CID of the encrypted model.
    /// @param digest sha256 of the model.
    event ModelPosted(uint256 indexed taskId, uint16 round, address indexed poster, string cid, bytes32 digest);
    /// @notice Emitted when a trainer posted a model whose digest differs from the recorded one:
    ///         evidence that some peer aggregated differently. The record is not changed.
    /// @param taskId The task.
    /// @param round The round.
    /// @param reporter The trainer that posted the differing model.
    /// @param cid Its CID.
    /// @param digest Its digest.
    event ModelMismatchReported(
        uint256 indexed taskId, uint16 round, address indexed reporter, string cid, bytes32 digest
    );
    /// @notice Emitted when an oracle committed to a payout root.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param commitment The commitment hash.
    event ScoreCommitted(uint256 indexed taskId, address indexed oracle, bytes32 commitment);
    /// @notice Emitted when an oracle revealed its payout root and report.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param root The payout Merkle root.
    /// @param reportCid CID of the full scoring report.
    event ScoreRevealed(uint256 indexed taskId, address indexed oracle, bytes32 root, string reportCid);
    /// @notice Emitted when a payout root became final and the claim window was fixed.
    /// @param taskId The task.
    /// @param payoutRoot The final root.
    /// @param claimsOpenAt When claims open (the dispute window ends).
    /// @param claimDeadline When claims close and `sweep` becomes possible.
    event TaskFinalized(uint256 indexed taskId, bytes32 payoutRoot, uint64 claimsOpenAt, uint64 claimDeadline);
    /// @notice Emitted when escrowed budget went back to the requester (cancel, failed scoring, sweep),
    ///         or became owed to it if the token refused the transfer (then `PaymentDeferred`).
    /// @param taskId The task.
    /// @param requester The requester.
    /// @param amount Tokens refunded.
    event Refunded(uint256 indexed taskId, address indexed requester, uint256 amount);
    /// @notice Emitted when a trainer of a cancelled task took its bond back.
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @param amount Tokens returned.
    event BondWithdrawn(uint256 indexed taskId, address indexed trainer, uint256 amount);
    /// @notice Emitted when bonds were burned (a flagged trainer's, unclaimed ones at sweep, or a
    ///         rejected dispute's).
    /// @param taskId The task.
    /// @param amount Tokens burned.
    event BondsBurned(uint256 indexed taskId, uint256 amount);
    /// @notice Emitted when an oracle was slashed for not revealing or for revealing another root.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param amount Tokens actually slashed (burned by the registry).
    event OracleSlashed(uint256 indexed taskId, address indexed oracle, uint256 amount);
    /// @notice Emitted when a committee member or trainer disputed the final root.
    /// @param taskId The task.
    /// @param disputer Who disputed.
    /// @param bond Tokens bonded.
    event DisputeRaised(uint256 indexed taskId, address indexed disputer, uint256 bond);
    /// @notice Emitted when a dispute ended, by the arbiter or by its timeout.
    /// @param taskId The task.
    /// @param root The root that became final.
    /// @param rootChanged Whether it differs from the root before the dispute.
    /// @param byArbiter False when the arbiter did not act in time.
    event DisputeResolved(uint256 indexed taskId, bytes32 root, bool rootChanged, bool byArbiter);
    /// @notice Emitted when a payout leaf was claimed.
    /// @param taskId The task.
    /// @param index The leaf's index.
    /// @param account Who was paid.
    /// @param amount Tokens paid from the budget (a returned bond comes on top).
    /// @param flags The leaf's misbehaviour bits.
    event Claimed(uint256 indexed taskId, uint256 index, address indexed account, uint256 amount, uint256 flags);
    /// @notice Emitted when a round's batch was committed by its closer.
    /// @param taskId The task.
    /// @param round The round.
    /// @param closer The trainer that sent the batch (slashed if a leaf is proven forged).
    /// @param root Merkle root over the included trainers' signed leaves.
    /// @param included Bitmap of included trainers by join index (bit i of word i/256).
    /// @param count Trainers included.
    /// @param samples The leaves' total samples.
    /// @param leavesCid CID of the leaf set (JSON: every signed leaf), for anyone to check.
    event RoundCommitted(
        uint256 indexed taskId,
        uint16 round,
        address indexed closer,
        bytes32 root,
        uint256[] included,
        uint32 count,
        uint64 samples,
        string leavesCid
    );
    /// @notice Emitted when a batch's leaf was proven forged (not signed by its trainer, or its
    ///         trainer not a member): the closer's reserved stake is slashed (burned by the
    ///         registry) and its bond burned.
    /// @param taskId The task.
    /// @param round The round.
    /// @param closer The slashed closer.
    /// @param trainer The leaf's trainer.
    /// @param challenger Who proved it.
    /// @param leaf The leaf's EIP-712 digest (the evidence).
    event LeafChallenged(
        uint256 indexed taskId,
        uint16 round,
        address indexed closer,
        address indexed trainer,
        address challenger,
        bytes32 leaf
    );
    /// @notice Emitted when a trainer proved its batched leaves: their samples now count for
    ///         its fallback pay.
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @param added Samples credited by this call (the leaf's).
    /// @param samples The trainer's samples now on record.
    event SamplesProven(uint256 indexed taskId, address indexed trainer, uint64 added, uint64 samples);
    /// @notice Emitted when a task closed after its claim deadline.
    /// @param taskId The task.
    /// @param refund Unclaimed budget returned to the requester.
    /// @param bondsBurned Bonds of trainers that never claimed, burned.
    event TaskSwept(uint256 indexed taskId, uint256 refund, uint256 bondsBurned);
    /// @notice Emitted when the task's token refused a payment pushed to `account` (a refund, a
    ///         dispute bond, a burn to `BURN_ADDRESS`, a withdrawn bond): the amount is owed to
    ///         it instead, for `sendOwed`. The transition that made the payment went through.
    /// @param taskId The task.
    /// @param account The payee.
    /// @param amount Tokens added to what the task owes it.
    event PaymentDeferred(uint256 indexed taskId, address indexed account, uint256 amount);
    /// @notice Emitted when an owed amount was paid by `sendOwed`.
    /// @param taskId The task.
    /// @param account The payee.
    /// @param amount Tokens paid (all that was owed).
    event OwedPaid(uint256 indexed taskId, address indexed account, uint256 amount);

    // --- requester ------------------------------------------------------------------------------

    /// @notice Create a task and escrow `p.budget` of `p.token` from the caller (approve first).
    /// @dev Touches no stake: the proposed oracles accept their seats themselves (`acceptSeat`).
    ///      Also escrows `p.requesterDeposit`.
    /// @param p The task's parameters.
    /// @return taskId The new task's id (ids start at 1).
    function createTask(TaskParams calldata p) external returns (uint256 taskId);

    /// @notice Cancel a Forming or Open task (requester only): budget and deposit are refunded (or
    ///         owed, if the token refuses) and the committee's reservations released at once. Trainers then take their bonds back
    ///         (and their reservations released) with `withdrawBond`.
    /// @param taskId The task.
    function cancel(uint256 taskId) external;

    // --- committee consent ----------------------------------------------------------------------

    /// @notice Take the caller's seat on a Forming task's committee, before the acceptance
    ///         deadline: reserves `oracleSlash` of its stake for this task. When the last seat is
    ///         taken the task opens for joining (`PhaseAdvanced` Forming → Open, join deadline
    ///         `now + joinDuration`). That consent only records the committee's completion time:
    ///         `task` reports the task Open from then on, and the first `join` or `advance`
    ///         stores the phase. Once the committee is complete, a further acceptance reverts
    ///         (`TaskMarketSeatAlreadyAccepted`, or `TaskMarketWrongPhase` once stored).
    /// @param taskId The task.
    function acceptSeat(uint256 taskId) external;

    /// @notice Take the seats of the oracles that signed `signatures` (several in one
    ///         transaction: the requester seats its committee and pays the base cost once). Each
    ///         is an oracle's EIP-712 signature of
    ///         `SeatAcceptance(uint256 taskId,address oracle,uint256 deadline)` (domain
    ///         "FedMarket TaskMarket", version "1", this chain and market), EIP-2098 compact; a
    ///         high `s` is rejected. Anyone may submit them. Each seat is taken as by `acceptSeat`
    ///         (`SeatAccepted`, and `PhaseAdvanced` when the last seat completes the committee).
    ///         All or nothing: one expired (`TaskMarketSignatureExpired`), invalid
    ///         (`TaskMarketInvalidSignature`) or already taken seat (`TaskMarketSeatAlreadyAccepted`,
    ///         also for an oracle named twice) reverts the whole batch. A signature cannot be
    ///         replayed: a seat is taken once, and the digest binds the task, oracle, chain and market.
    /// @param taskId The task.
    /// @param signatures The oracles' signatures (at least one, else `TaskMarketNoSignatures`).
    function acceptSeatsFor(uint256 taskId, SeatSignature[] calldata signatures) external;

    // --- failure paths --------------------------------------------------------------------------

    /// @notice After scoring failed: a joined trainer takes its fallback pay (budget × its committed
    ///         samples / all committed samples), its bond, and its stake reservation back.
    /// @param taskId The task.
    function claimFallback(uint256 taskId) external;

    /// @notice After a validation mismatch: an oracle that revealed `VALIDATION_MISMATCH` takes its
    ///         equal share of the requester's deposit.
    /// @param taskId The task.
    function claimDeposit(uint256 taskId) external;

    /// @notice After a task closed: a trainer that never claimed releases its stake reservation.
    /// @param taskId The task.
    function releaseStake(uint256 taskId) external;

    /// @notice Pay `account` everything the task owes it (payments its token once refused, see
    ///         `PaymentDeferred`). Anyone may call; the transfer is strict (reverts if the token
    ///         still refuses), so it succeeds once the token lets the payment through.
    /// @param taskId The task.
    /// @param account The payee.
    function sendOwed(uint256 taskId, address account) external;

    // --- trainers -------------------------------------------------------------------------------

    /// @notice Join an Open task before its join deadline, posting the trainer bond (approve first).
    /// @dev Needs a registered Trainer with enough stake and reputation that is neither the task's
    ///      requester nor one of its oracles, admitted by the task's join gate if any. Reserves the
    ///      trainer's `minStake` for this task until it ends for the trainer.
    /// @param taskId The task.
    function join(uint256 taskId) external;

    /// @notice Commit the caller's update for the current round, before the round deadline.
    /// @param taskId The task.
    /// @param round The current round.
    /// @param cid CID of the encrypted update (emitted, not stored).
    /// @param digest sha256 of the update.
    /// @param numSamples Training samples used (positive).
    function commitUpdate(uint256 taskId, uint16 round, string calldata cid, bytes32 digest, uint64 numSamples)
        external;

    /// @notice Post the canonical global model that starts `round` (2..rounds+1; rounds+1 is the
    ///         final model) once round-1 has ended. The first post wins; a later post with another
    ///         digest is recorded as evidence (`ModelMismatchReported`) and changes nothing.
    /// @param taskId The task.
    /// @param round The round the model starts.
    /// @param cid CID of the encrypted model.
    /// @param digest sha256 of the model.
    function postModel(uint256 taskId, uint16 round, string calldata cid, bytes32 digest) external;

    /// @notice Commit round `round`'s set in one transaction, as its closer (a joined trainer):
    ///         the Merkle root over the included trainers' signed leaves and who is included. It
    ///         also posts the model that starts the round (round >= 2; zero digest: none) and,
    ///         when every trainer is included, ends the round. Otherwise the left-out trainers
    ///         commit directly (`commitUpdate`) until the round's deadline, which is moved to at
    ///         least a quarter round from now; an included trainer's direct commit reverts.
    /// @param taskId The task.
    /// @param round The current round (no direct commit yet, no batch yet).
    /// @param root Merkle root (OpenZeppelin StandardMerkleTree over the leaves' EIP-712 digests).
    /// @param included Bitmap by join index, one word per 256 trainers.
    /// @param samples Total samples of the included leaves (added to the task's total).
    /// @param leavesCid CID of the published leaf set.
    /// @param modelDigest sha256 of the model that starts `round` (zero for none).
    /// @param modelCid Its CID.
    function commitRound(
        uint256 taskId,
        uint16 round,
        bytes32 root,
        uint256[] calldata included,
        uint64 samples,
        string calldata leavesCid,
        bytes32 modelDigest,
        string calldata modelCid
    ) external;

    /// @notice Prove a batch's leaf forged: in the batch, but not signed by its trainer or its
    ///         trainer not a member. The closer's reserved stake is slashed (burned by the
    ///         registry, as for a flagged trainer) and its bond burned; the leaf's samples leave
    ///         the task's total; if the round is still open, the trainer may commit directly.
    /// @param taskId The task.
    /// @param round The batch's round.
    /// @param closer The batch's closer.
    /// @param root The batch's root.
    /// @param leaf The forged leaf.
    /// @param signature The signature that came with it.
    /// @param proof Its Merkle proof.
    function challengeLeaf(
        uint256 taskId,
        uint16 round,
        address closer,
        bytes32 root,
        UpdateLeaf calldata leaf,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external;

    /// @notice Credit the caller's leaf of a batched round to its samples on record (the weight
    ///         of its fallback pay): one call per batched round, each round's leaf counts once.
    /// @param taskId The task.
    /// @param round The batch's round.
    /// @param closer The batch's closer (from RoundCommitted).
    /// @param root The batch's root.
    /// @param leaf The caller's leaf.
    /// @param signature The caller's EIP-712 signature of the leaf.
    /// @param proof Its Merkle proof.
    function proveSamples(
        uint256 taskId,
        uint16 round,
        address closer,
        bytes32 root,
        UpdateLeaf calldata leaf,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external;

    /// @notice Take back the bond of a cancelled task (each trainer once) and release the
    ///         trainer's stake reservation. The bond is tried: if the token refuses it, it is
    ///         owed (`sendOwed`) and the reservation is released all the same.
    /// @param taskId The task.
    function withdrawBond(uint256 taskId) external;

    // --- anyone ---------------------------------------------------------------------------------

    /// @notice Move the task to its next phase when its deadline has passed or everyone it waits
    ///         for has acted (see the contract's documentation for each transition).
    /// @dev A refund it makes (cancel in Forming/Open, failed scoring with no sample, a dispute's
    ///      end) cannot make it revert: the refund is owed if the token refuses. Supply gas
    ///      headroom (~2M) when the token may burn all the gas of the transfer.
    /// @param taskId The task.
    function advance(uint256 taskId) external;

    /// @notice Pay one leaf of the payout table to its account (anyone may call for any leaf),
    ///         between the end of the dispute window and the claim deadline. A joined trainer's
    ///         reputation is updated; a flagged trainer is slashed and its bond burned, an unflagged
    ///         one gets its bond back with the payout.
    /// @param taskId The task.
    /// @param index The leaf's index.
    /// @param account The leaf's account.
    /// @param amount The leaf's amount.
    /// @param scorePpm The leaf's normalized score (ppm; values above 1,000,000 count as 1,000,000).
    /// @param flags The leaf's misbehaviour bits.
    /// @param proof The Merkle proof (OpenZeppelin StandardMerkleTree, sorted pairs).
    function claim(
        uint256 taskId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external;

    /// @notice After the claim deadline: refund unclaimed budget to the requester, burn the bonds
    ///         no trainer claimed back, release the committee's reservations, and close the task.
    /// @dev The refund and the burn cannot make it revert: whichever the token refuses is owed
    ///      (`sendOwed`). Supply gas headroom (~3.5M) when the token may burn all the gas of the
    ///      transfer.
    /// @param taskId The task.
    function sweep(uint256 taskId) external;

    // --- oracles --------------------------------------------------------------------------------

    /// @notice Commit to a payout root while the task is Committing (committee members, once).
    /// @param taskId The task.
    /// @param commitment `keccak256(abi.encode(taskId, oracle, payoutRoot, keccak256(bytes(reportCid)), salt))`.
    function commitScore(uint256 taskId, bytes32 commitment) external;

    /// @notice Reveal the committed payout root while the task is Revealing. Adds the oracle's stake
    ///         (snapshotted at task creation) to the root's tally.
    /// @param taskId The task.
    /// @param payoutRoot The committed root.
    /// @param reportCid The committed report's CID.
    /// @param salt The commitment's salt.
    function revealScore(uint256 taskId, bytes32 payoutRoot, string calldata reportCid, bytes32 salt) external;

    /// @notice Slash a committee member that did not reveal, or revealed a root the arbiter ruled
    ///         against (anyone, between the end of the dispute window and the claim deadline, or
    ///         within the claim window of a failed scoring). Dissent alone is not slashable.
    /// @param taskId The task.
    /// @param oracle The oracle.
    function slashOracle(uint256 taskId, address oracle) external;

    // --- disputes -------------------------------------------------------------------------------

    /// @notice Dispute the final root within the dispute window (a committee member or joined
    ///         trainer, posting the dispute bond). Freezes claims until the arbiter decides or times out.
    /// @param taskId The task.
    function dispute(uint256 taskId) external;

    /// @notice Arbiter only: pick one of the revealed roots as final; claims open at once. The
    ///         dispute bond returns to the disputer if the root changed, else it is burned.
    /// @param taskId The task.
    /// @param root A root that some oracle revealed.
    function resolveDispute(uint256 taskId, bytes32 root) external;

    // --- views ----------------------------------------------------------------------------------

    /// @notice A task's state.
    /// @param taskId The task.
    /// @return info Everything about the task except its committee (see `oracles`).
    function task(uint256 taskId) external view returns (TaskInfo memory info);

    /// @notice The number of tasks created (the last id).
    /// @return The count.
    function taskCount() external view returns (uint256);

    /// @notice Whether `account` joined the task.
    /// @param taskId The task.
    /// @param account The address.
    /// @return True if it joined.
    function isTrainer(uint256 taskId, address account) external view returns (bool);

    /// @notice Whether `account` is on the task's oracle committee.
    /// @param taskId The task.
    /// @param account The address.
    /// @return True if a member.
    function isOracle(uint256 taskId, address account) external view returns (bool);

    /// @notice The task's oracle committee, in creation order.
    /// @param taskId The task.
    /// @return The oracles.
    function oracles(uint256 taskId) external view returns (address[] memory);

    /// @notice Number of trainers that joined.
    /// @param taskId The task.
    /// @return The count.
    function trainerCount(uint256 taskId) external view returns (uint256);

    /// @notice A trainer's committed update for a round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param trainer The trainer.
    /// @return digest sha256 of the update (zero if none).
    /// @return numSamples Its sample count (zero if none).
    function update(uint256 taskId, uint16 round, address trainer)
        external
        view
        returns (bytes32 digest, uint64 numSamples);

    /// @notice Number of updates committed for a round.
    /// @param taskId The task.
    /// @param round The round.
    /// @return The count.
    function updateCount(uint256 taskId, uint16 round) external view returns (uint256);

    /// @notice Digest of the global model that starts `round` (round 1: the initial model).
    /// @param taskId The task.
    /// @param round The round (1..rounds+1).
    /// @return The digest, zero if not posted yet.
    function modelDigest(uint256 taskId, uint16 round) external view returns (bytes32);

    /// @notice An oracle's pending commitment.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @return The commitment; zero if it has not committed or has already revealed.
    function commitmentOf(uint256 taskId, address oracle) external view returns (bytes32);

    /// @notice The root an oracle revealed.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @return The root; zero if it has not revealed.
    function revealedRootOf(uint256 taskId, address oracle) external view returns (bytes32);

    /// @notice The committee stake (snapshotted at creation) of the oracles that revealed `root`.
    /// @param taskId The task.
    /// @param root The root.
    /// @return The stake.
    function rootStake(uint256 taskId, bytes32 root) external view returns (uint256);

    /// @notice An oracle's voting weight: its registry stake when the task was created.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @return The weight (zero if not a member).
    function oracleWeight(uint256 taskId, address oracle) external view returns (uint256);

    /// @notice Whether an oracle was slashed for this task.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @return True if slashed.
    function isOracleSlashed(uint256 taskId, address oracle) external view returns (bool);

    /// @notice Whether `oracle` accepted its seat.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @return True if accepted.
    function hasAccepted(uint256 taskId, address oracle) external view returns (bool);

    /// @notice The samples a trainer committed over all rounds, and its fallback pay if scoring failed.
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @return samples Committed samples.
    /// @return amount Fallback pay (zero unless scoring failed).
    function fallbackOf(uint256 taskId, address trainer) external view returns (uint64 samples, uint256 amount);

    /// @notice The EIP-712 digest an oracle signs to accept its seat.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param deadline The signature's expiry.
    /// @return The digest.
    function seatAcceptanceDigest(uint256 taskId, address oracle, uint256 deadline) external view returns (bytes32);

    /// @notice Tokens the task owes `account`: pushed payments its token refused, for `sendOwed`.
    /// @param taskId The task.
    /// @param account The payee (the requester, a disputer, a trainer, or `BURN_ADDRESS`).
    /// @return The amount owed.
    function owedTo(uint256 taskId, address account) external view returns (uint256);

    /// @notice Whether the payout leaf `index` was claimed.
    /// @param taskId The task.
    /// @param index The leaf's index.
    /// @return True if claimed.
    function isClaimed(uint256 taskId, uint256 index) external view returns (bool);

    /// @notice The participant registry.
    /// @return The registry.
    function registry() external view returns (IParticipantRegistry);

    /// @notice The arbiter that resolves disputes (immutable).
    /// @return The arbiter.
    function arbiter() external view returns (address);
}
