// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IModelVersions} from "./IModelVersions.sol";
import {ITaskMarket} from "./ITaskMarket.sol";

/// @title IModelMarket
/// @notice The life of a task's model after training: at most K validation submissions evaluated by
///         the task's committee (commit-reveal, quorum of committee stake), a bounty for the first
///         submission that meets the requester's threshold, M independent auditors' EIP-712
///         attestations before approval, then listings whose sales pay the requester, the developer,
///         the auditors and — by their finalized score — the trainers.
/// @dev Reads the task (requester, token, phase, payout root, committee) through `ITaskMarket`
///      views only. Gas per sale does not depend on the number of trainers: a delivered sale adds
///      its price to the listing's cumulative pools; every party's entitlement is a pure function
///      of them (a trainer's: `trainerPool * scorePpm / totalScore`, proven with its payout leaf),
///      and each claims the difference to what it was already paid. `totalScore` (the sum of
///      the leaves' `scorePpm`) is not stored by TaskMarket, so the committee fixes it by a quorum
///      of its stake for the finalized root (`attestTotalScore`). ParticipantRegistry has no
///      Developer or Auditor role, so this contract keeps its own role list (`register`).
interface IModelMarket {
    /// @notice The roles this contract registers (one per address, for good).
    enum Role {
        None,
        Developer,
        Auditor
    }

    /// @notice Where a sale is.
    enum SaleStatus {
        None,
        Paid,
        Delivered,
        Refunded
    }

    /// @notice What the requester fixes once per task (`configure`); nothing can be changed later.
    /// @param maxSubmissions K: validation submissions allowed (1..MAX_SUBMISSIONS), the final
    ///        aggregate included (it is submission 1).
    /// @param thresholdPpm The validation score (ppm) a submission must reach to pass.
    /// @param bounty Tokens paid to the developer of the first passing submission (escrowed).
    /// @param requiredAttestations M: approving attestations needed before approval (0..MAX_AUDITORS).
    /// @param auditorFee Tokens paid per attestation, for the first M attestations (M fees escrowed).
    /// @param evalCommitDuration Seconds after a submission during which the committee commits.
    /// @param evalRevealDuration Seconds after the commit window during which it reveals.
    struct ProductParams {
        uint8 maxSubmissions;
        uint32 thresholdPpm;
        uint256 bounty;
        uint8 requiredAttestations;
        uint256 auditorFee;
        uint64 evalCommitDuration;
        uint64 evalRevealDuration;
    }

    /// @notice A task's product state, as returned by `product`.
    struct ProductInfo {
        bool configured;
        bool bountyPaid;
        bool feesReclaimed;
        uint8 maxSubmissions;
        uint8 submissionCount;
        uint8 requiredAttestations;
        uint8 feesPaid;
        uint8 approvedSubmission;
        uint32 thresholdPpm;
        uint64 evalCommitDuration;
        uint64 evalRevealDuration;
        IERC20 token;
        address requester;
        uint256 bounty;
        uint256 auditorFee;
        uint256 totalScore;
        bytes32 totalScoreRoot;
    }

    /// @notice One validation submission, as returned by `submission`.
    /// @dev `resolved` is true once a score reached quorum or the reveal window ended without one.
    struct SubmissionInfo {
        address developer;
        bytes32 digest;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint8 commitCount;
        uint8 revealCount;
        bool decided;
        bool passed;
        bool resolved;
        uint32 scorePpm;
        uint8 approvals;
        uint8 rejections;
        bool approved;
    }

    /// @notice What the requester gives to list an approved model.
    /// @param taskId The task.
    /// @param submission The approved submission (1-based).
    /// @param price Tokens per sale (the task's token).
    /// @param licenseCid CID of the licence terms (emitted).
    /// @param expiry Unix time after which nothing can be bought.
    /// @param deliveryWindow Seconds the key holder has to record a sale's sealed key.
    /// @param royaltyWindow Seconds after the last possible delivery during which trainers claim.
    /// @param keyHolder Who seals the content key to buyers (the requester's node).
    /// @param requesterBps Requester's share of each sale (basis points).
    /// @param developerBps Developer's share.
    /// @param auditorBps The approving auditors' share (split equally; zero if none).
    /// @param versions Optional `IModelVersions` consulted on every sale (zero: none).
    /// @param version The model version sold under this listing.
    struct ListingParams {
        uint256 taskId;
        uint8 submission;
        uint256 price;
        string licenseCid;
        uint64 expiry;
        uint64 deliveryWindow;
        uint64 royaltyWindow;
        address keyHolder;
        uint16 requesterBps;
        uint16 developerBps;
        uint16 auditorBps;
        IModelVersions versions;
        uint256 version;
    }

    /// @notice A listing, as returned by `listing`.
    /// @dev `gross` is the sum of delivered sales; `pending` the sum of paid, undelivered ones.
    ///      Each delivered sale is split on its own price: `⌊price·bps/10⁴⌋` into the developer,
    ///      auditor and trainer pools, the remainder to the requester, so the pools only grow and
    ///      the requester's part is `gross − trainerPool − developerPool − auditorPool`.
    struct ListingInfo {
        uint256 taskId;
        IERC20 token;
        uint64 expiry;
        address requester;
        uint64 deliveryWindow;
        address developer;
        uint64 royaltyDeadline;
        address keyHolder;
        uint16 requesterBps;
        uint16 developerBps;
        uint16 auditorBps;
        uint8 auditorCount;
        uint8 submission;
        bool swept;
        IModelVersions versions;
        uint256 version;
        uint256 price;
        bytes32 payoutRoot;
        uint256 totalScore;
        uint256 gross;
        uint256 trainerPool;
        uint256 developerPool;
        uint256 auditorPool;
        uint256 pending;
        uint256 trainerClaimed;
        uint256 requesterPaid;
        uint256 developerPaid;
        uint256 sales;
    }

    /// @notice A sale, as returned by `sale`.
    /// @dev `sealedKeyHash` is the keccak256 of the sealed key envelope `deliver` recorded (the
    ///      envelope itself is in the sale's `Delivered` event); zero until delivered.
    struct SaleInfo {
        uint256 listingId;
        address buyer;
        uint64 deliverBy;
        SaleStatus status;
        bytes32 buyerKey;
        uint256 price;
        bytes32 sealedKeyHash;
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when an address already holds a role here.
    /// @param account The address.
    /// @param role Its role.
    error ModelMarketAlreadyRegistered(address account, Role role);
    /// @notice Thrown when registering role None or a zero encryption key.
    error ModelMarketInvalidRegistration();
    /// @notice Thrown when the caller is not the task's requester.
    /// @param taskId The task.
    /// @param account The caller.
    error ModelMarketNotRequester(uint256 taskId, address account);
    /// @notice Thrown when a task is configured twice (K and M are fixed for good).
    /// @param taskId The task.
    error ModelMarketAlreadyConfigured(uint256 taskId);
    /// @notice Thrown when a task was not configured for validation submissions.
    /// @param taskId The task.
    error ModelMarketNotConfigured(uint256 taskId);
    /// @notice Thrown when product parameters are out of range.
    error ModelMarketInvalidParams();
    /// @notice Thrown when the task is not in a phase that allows the action.
    /// @param taskId The task.
    /// @param phase Its phase.
    error ModelMarketWrongTaskPhase(uint256 taskId, ITaskMarket.Phase phase);
    /// @notice Thrown when the K-th submission was already made.
    /// @param taskId The task.
    /// @param maxSubmissions K.
    error ModelMarketSubmissionLimit(uint256 taskId, uint8 maxSubmissions);
    /// @notice Thrown when a developer submits before the final aggregate took submission 1, or the
    ///         final aggregate is submitted after submission 1 exists.
    /// @param taskId The task.
    error ModelMarketFinalModelFirst(uint256 taskId);
    /// @notice Thrown when the task's final model digest is not posted yet.
    /// @param taskId The task.
    error ModelMarketNoFinalModel(uint256 taskId);
    /// @notice Thrown when an address lacks the role this action needs.
    /// @param account The address.
    /// @param required The role needed.
    error ModelMarketWrongRole(address account, Role required);
    /// @notice Thrown when an address would hold two conflicting roles in one task.
    /// @param taskId The task.
    /// @param account The address.
    error ModelMarketConflictOfInterest(uint256 taskId, address account);
    /// @notice Thrown when a digest, root or key is zero.
    error ModelMarketZeroHash();
    /// @notice Thrown when no submission has this number.
    /// @param taskId The task.
    /// @param submission The number given.
    error ModelMarketUnknownSubmission(uint256 taskId, uint8 submission);
    /// @notice Thrown when the caller is not on the task's committee.
    /// @param taskId The task.
    /// @param account The caller.
    error ModelMarketNotCommitteeMember(uint256 taskId, address account);
    /// @notice Thrown when an action comes after its deadline.
    /// @param deadline The deadline that passed.
    error ModelMarketDeadlinePassed(uint64 deadline);
    /// @notice Thrown when an action comes before it is allowed.
    /// @param notBefore The earliest time it succeeds.
    error ModelMarketTooEarly(uint64 notBefore);
    /// @notice Thrown when an oracle commits twice to one submission.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    error ModelMarketAlreadyCommitted(uint256 taskId, uint8 submission, address oracle);
    /// @notice Thrown when a reveal has no commitment, repeats, or does not match it.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    error ModelMarketBadReveal(uint256 taskId, uint8 submission, address oracle);
    /// @notice Thrown when an evaluation stake has nothing to settle: never committed, or settled.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    error ModelMarketNothingToSettle(uint256 taskId, uint8 submission, address oracle);
    /// @notice Thrown when the score is above 1,000,000 ppm.
    /// @param scorePpm The value given.
    error ModelMarketInvalidScore(uint32 scorePpm);
    /// @notice Thrown when the submission's evaluation has not decided a score that meets the threshold.
    /// @param taskId The task.
    /// @param submission The submission.
    error ModelMarketNotPassed(uint256 taskId, uint8 submission);
    /// @notice Thrown when the bounty was already paid or no submission is owed it yet.
    /// @param taskId The task.
    error ModelMarketNoBounty(uint256 taskId);
    /// @notice Thrown when an attestation's signature does not recover a registered auditor.
    /// @param signer The recovered address.
    error ModelMarketBadAttestation(address signer);
    /// @notice Thrown when an auditor attests the same submission twice.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param auditor The auditor.
    error ModelMarketAlreadyAttested(uint256 taskId, uint8 submission, address auditor);
    /// @notice Thrown when the attested digest is not the submission's.
    /// @param expected The submission's digest.
    /// @param given The attested digest.
    error ModelMarketDigestMismatch(bytes32 expected, bytes32 given);
    /// @notice Thrown when approval lacks attestations or meets a rejection.
    /// @param approvals Approving attestations.
    /// @param rejections Rejecting attestations.
    /// @param required M.
    error ModelMarketNotEnoughAttestations(uint8 approvals, uint8 rejections, uint8 required);
    /// @notice Thrown when the task already has an approved submission.
    /// @param taskId The task.
    error ModelMarketAlreadyApproved(uint256 taskId);
    /// @notice Thrown when the submission is not the task's approved one.
    /// @param taskId The task.
    /// @param submission The submission.
    error ModelMarketNotApproved(uint256 taskId, uint8 submission);
    /// @notice Thrown when the committee has not fixed the total score of the finalized root.
    /// @param taskId The task.
    error ModelMarketNoTotalScore(uint256 taskId);
    /// @notice Thrown when an oracle votes twice on the total score.
    /// @param taskId The task.
    /// @param oracle The oracle.
    error ModelMarketAlreadyVoted(uint256 taskId, address oracle);
    /// @notice Thrown when listing parameters are out of range (shares over 100%, zero price, ...).
    error ModelMarketInvalidListing();
    /// @notice Thrown when no listing has this id.
    /// @param listingId The id.
    error ModelMarketUnknownListing(uint256 listingId);
    /// @notice Thrown when buying after the listing's expiry.
    /// @param listingId The listing.
    /// @param expiry Its expiry.
    error ModelMarketListingExpired(uint256 listingId, uint64 expiry);
    /// @notice Thrown when the listing's `IModelVersions` says the version may not be sold.
    /// @param taskId The task.
    /// @param version The version.
    error ModelMarketVersionNotSellable(uint256 taskId, uint256 version);
    /// @notice Thrown when no sale has this id.
    /// @param saleId The id.
    error ModelMarketUnknownSale(uint256 saleId);
    /// @notice Thrown when a sale is not in the status the action needs.
    /// @param saleId The sale.
    /// @param status Its status.
    error ModelMarketWrongSaleStatus(uint256 saleId, SaleStatus status);
    /// @notice Thrown when someone other than the listing's key holder delivers.
    /// @param account The caller.
    error ModelMarketNotKeyHolder(address account);
    /// @notice Thrown when a delivered sealed key envelope is empty or longer than MAX_SEALED_KEY.
    /// @param length Its length in bytes.
    /// @param max The longest accepted.
    error ModelMarketBadSealedKeyLength(uint256 length, uint256 max);
    /// @notice Thrown when someone other than the buyer asks for a refund.
    /// @param account The caller.
    error ModelMarketNotBuyer(address account);
    /// @notice Thrown when a royalty leaf is flagged, does not prove under the listing's root, or
    ///         the claim would exceed the trainers' pool.
    /// @param listingId The listing.
    /// @param index The leaf's index.
    error ModelMarketInvalidRoyaltyClaim(uint256 listingId, uint256 index);
    /// @notice Thrown when there is nothing to pay.
    error ModelMarketNothingDue();
    /// @notice Thrown when a withdrawal is settled for a trainer that has not withdrawn consent
    ///         from the listing's task, or was settled on this listing already.
    /// @param listingId The listing.
    /// @param account The trainer.
    error ModelMarketNoWithdrawalToSettle(uint256 listingId, address account);
    /// @notice Thrown when the listing's royalties were already swept.
    /// @param listingId The listing.
    error ModelMarketAlreadySwept(uint256 listingId);
    /// @notice Thrown when the contract received fewer tokens than it pulled.
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error ModelMarketFeeOnTransfer(uint256 expected, uint256 received);
    /// @notice Thrown when the escrow cannot be reclaimed yet (no approval, submissions unresolved).
    /// @param taskId The task.
    error ModelMarketNotReclaimable(uint256 taskId);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when an address registered a role.
    /// @param account The address.
    /// @param role The role.
    /// @param encryptionKey Its X25519 public key (models and validation sets are sealed to it).
    event Registered(address indexed account, Role role, bytes32 encryptionKey);
    /// @notice Emitted when a task's product parameters were fixed and its escrow pulled.
    /// @param taskId The task.
    /// @param maxSubmissions K.
    /// @param thresholdPpm The pass threshold.
    /// @param bounty The bounty escrowed.
    /// @param requiredAttestations M.
    /// @param auditorFee The fee per attestation (M escrowed).
    event ProductConfigured(
        uint256 indexed taskId,
        uint8 maxSubmissions,
        uint32 thresholdPpm,
        uint256 bounty,
        uint8 requiredAttestations,
        uint256 auditorFee
    );
    /// @notice Emitted when a model was submitted for validation.
    /// @param taskId The task.
    /// @param submission Its number (1-based; 1 is the final aggregate).
    /// @param developer Who submitted it.
    /// @param modelCid CID of the encrypted model.
    /// @param digest sha256 of the model.
    /// @param commitDeadline End of the committee's commit window.
    event ModelSubmitted(
        uint256 indexed taskId,
        uint8 indexed submission,
        address indexed developer,
        string modelCid,
        bytes32 digest,
        uint64 commitDeadline
    );
    /// @notice Emitted when a committee member committed its evaluation.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    event EvaluationCommitted(uint256 indexed taskId, uint8 indexed submission, address indexed oracle);
    /// @notice Emitted when a committee member revealed its evaluation.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    /// @param scorePpm The revealed score.
    event EvaluationRevealed(uint256 indexed taskId, uint8 indexed submission, address indexed oracle, uint32 scorePpm);
    /// @notice Emitted when an oracle's evaluation stake was settled after its submission resolved.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    /// @param released Stake returned (0 when slashed).
    /// @param slashed Stake burned: it committed and did not reveal, or revealed a score the
    ///        quorum ruled against (0 when released).
    event EvaluationSettled(
        uint256 indexed taskId, uint8 indexed submission, address indexed oracle, uint256 released, uint256 slashed
    );
    /// @notice Emitted when a score reached the committee's quorum.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param scorePpm The score.
    /// @param passed Whether it meets the threshold.
    event EvaluationDecided(uint256 indexed taskId, uint8 indexed submission, uint32 scorePpm, bool passed);
    /// @notice Emitted when the bounty was paid.
    /// @param taskId The task.
    /// @param submission The first passing submission.
    /// @param developer Who was paid.
    /// @param amount Tokens paid.
    event BountyPaid(uint256 indexed taskId, uint8 submission, address indexed developer, uint256 amount);
    /// @notice Emitted when an auditor's attestation was recorded.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param auditor The auditor.
    /// @param reportCid CID of the audit report.
    /// @param approved The verdict.
    /// @param fee Tokens paid to the auditor (zero once M fees were paid).
    event Attested(
        uint256 indexed taskId, uint8 indexed submission, address indexed auditor, string reportCid, bool approved, uint256 fee
    );
    /// @notice Emitted when the requester approved a submission for sale.
    /// @param taskId The task.
    /// @param submission The submission.
    event ModelApproved(uint256 indexed taskId, uint8 submission);
    /// @notice Emitted when a committee member voted for the total score of the finalized root.
    /// @param taskId The task.
    /// @param oracle The oracle.
    /// @param totalScore The total voted.
    event TotalScoreVoted(uint256 indexed taskId, address indexed oracle, uint256 totalScore);
    /// @notice Emitted when a total score reached quorum.
    /// @param taskId The task.
    /// @param payoutRoot The finalized root it belongs to.
    /// @param totalScore The sum of the root's leaves' scores.
    event TotalScoreFixed(uint256 indexed taskId, bytes32 payoutRoot, uint256 totalScore);
    /// @notice Emitted when the requester reclaimed the unused bounty and auditor fees.
    /// @param taskId The task.
    /// @param amount Tokens returned.
    event EscrowReclaimed(uint256 indexed taskId, uint256 amount);
    /// @notice Emitted when a model was listed.
    /// @param listingId The new listing.
    /// @param taskId The task.
    /// @param submission The approved submission.
    /// @param price Tokens per sale.
    /// @param licenseCid CID of the licence.
    /// @param expiry Last time to buy.
    event Listed(
        uint256 indexed listingId, uint256 indexed taskId, uint8 submission, uint256 price, string licenseCid, uint64 expiry
    );
    /// @notice Emitted when a buyer paid.
    /// @param saleId The new sale.
    /// @param listingId The listing.
    /// @param buyer The buyer.
    /// @param buyerKey The buyer's X25519 public key.
    /// @param price Tokens paid (escrowed until delivery).
    /// @param deliverBy The delivery deadline.
    event Purchased(
        uint256 indexed saleId, uint256 indexed listingId, address indexed buyer, bytes32 buyerKey, uint256 price, uint64 deliverBy
    );
    /// @notice Emitted when the key holder recorded the content key sealed to the buyer. The
    ///         envelope is on-chain (this event's data): the buyer reads it from the log and
    ///         checks it against the sale's `sealedKeyHash`; no content store is involved.
    /// @param saleId The sale.
    /// @param sealedKeyHash keccak256 of `sealedKey` (stored in the sale).
    /// @param sealedKey The sealed key envelope (model CID and content key, sealed to the buyer).
    event Delivered(uint256 indexed saleId, bytes32 sealedKeyHash, bytes sealedKey);
    /// @notice Emitted when an undelivered sale was refunded.
    /// @param saleId The sale.
    /// @param amount Tokens returned to the buyer.
    event Refunded(uint256 indexed saleId, uint256 amount);
    /// @notice Emitted when a trainer's royalties were paid.
    /// @param listingId The listing.
    /// @param index The payout leaf's index.
    /// @param account The trainer.
    /// @param amount Tokens paid.
    event RoyaltyClaimed(uint256 indexed listingId, uint256 index, address indexed account, uint256 amount);
    /// @notice Emitted when the requester, developer or an auditor took its share.
    /// @param listingId The listing.
    /// @param account Who was paid.
    /// @param amount Tokens paid.
    event ShareClaimed(uint256 indexed listingId, address indexed account, uint256 amount);
    /// @notice Emitted when the trainers' unclaimed royalties, their rounding dust and the auditors'
    ///         split remainder went to the requester.
    /// @param listingId The listing.
    /// @param amount Tokens returned.
    event RoyaltiesSwept(uint256 indexed listingId, uint256 amount);
    /// @notice Emitted when a withdrawn trainer's royalties stopped on a listing: it keeps what it
    ///         accrued before its withdrawal; later deliveries go to the remaining trainers.
    /// @param listingId The listing.
    /// @param index The trainer's payout leaf.
    /// @param account The trainer.
    /// @param scorePpm The score that left the listing's royalty weights.
    event WithdrawalSettled(uint256 indexed listingId, uint256 index, address indexed account, uint32 scorePpm);

    // --- roles ----------------------------------------------------------------------------------

    /// @notice Register the caller as a Developer or an Auditor (once).
    /// @param role The role.
    /// @param encryptionKey The caller's X25519 public key.
    function register(Role role, bytes32 encryptionKey) external;

    // --- validation submissions -----------------------------------------------------------------

    /// @notice Fix K, the threshold, the bounty and M for a task and escrow the bounty plus M
    ///         auditor fees in the task's token (the task's requester, once, unless cancelled).
    /// @param taskId The task.
    /// @param p The parameters.
    function configure(uint256 taskId, ProductParams calldata p) external;

    /// @notice Submission 1: the task's final aggregate (digest posted on TaskMarket as round
    ///         rounds+1), submitted by the requester as its developer once the root is final.
    /// @param taskId The task.
    /// @param modelCid CID of the encrypted final model.
    /// @return submission Always 1.
    function submitFinalModel(uint256 taskId, string calldata modelCid) external returns (uint8 submission);

    /// @notice Submit a model revision (a registered Developer, or the requester) while fewer than
    ///         K submissions exist; the committee then evaluates it.
    /// @param taskId The task.
    /// @param modelCid CID of the model sealed to the committee.
    /// @param digest sha256 of the model.
    /// @return submission Its number.
    function submit(uint256 taskId, string calldata modelCid, bytes32 digest) external returns (uint8 submission);

    /// @notice Commit to an evaluation (committee members, once, before the commit deadline).
    ///         Reserves the task's `oracleSlash` of the member's free registry stake until
    ///         `settleEvaluation` (this contract must be an active market of the registry).
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param commitment `evaluationCommitment(taskId, submission, oracle, scorePpm, salt)`.
    function commitEvaluation(uint256 taskId, uint8 submission, bytes32 commitment) external;

    /// @notice Reveal an evaluation once the commit window closed (or every member committed),
    ///         before the reveal deadline. The first score backed by the task's quorum decides.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param scorePpm The committed score.
    /// @param salt The commitment's salt.
    function revealEvaluation(uint256 taskId, uint8 submission, uint32 scorePpm, bytes32 salt) external;

    /// @notice Settle a committee member's evaluation stake (reserved in the registry at its
    ///         commitment, the task's `oracleSlash`) once the submission is resolved; anyone may call.
    ///         Slashed if it committed and did not reveal by the reveal deadline; released for
    ///         every revealer (dissent is not slashable: no arbiter rules over submissions).
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The committee member.
    function settleEvaluation(uint256 taskId, uint8 submission, address oracle) external;

    /// @notice One committee member's evaluation of a submission.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The committee member.
    /// @return committed Whether it committed.
    /// @return revealed Whether it revealed.
    /// @return settled Whether its stake was settled (released or slashed).
    /// @return scorePpm Its revealed score (0 before the reveal).
    function evaluationOf(uint256 taskId, uint8 submission, address oracle)
        external
        view
        returns (bool committed, bool revealed, bool settled, uint32 scorePpm);

    /// @notice Pay the bounty to the developer of the first passing submission, once every earlier
    ///         submission is resolved (anyone may call).
    /// @param taskId The task.
    function claimBounty(uint256 taskId) external;

    // --- audits and approval --------------------------------------------------------------------

    /// @notice Record an auditor's EIP-712 attestation (anyone may relay it). Pays the auditor's
    ///         fee for the task's first M attestations.
    /// @param taskId The task.
    /// @param submission The submission attested.
    /// @param modelDigest The model's digest (must be the submission's).
    /// @param reportCid CID of the audit report.
    /// @param approved The verdict.
    /// @param signature The auditor's signature over `Attestation`.
    function attest(
        uint256 taskId,
        uint8 submission,
        bytes32 modelDigest,
        string calldata reportCid,
        bool approved,
        bytes calldata signature
    ) external;

    /// @notice Approve a passed submission with at least M approving and no rejecting
    ///         attestations (requester, once per task).
    /// @param taskId The task.
    /// @param submission The submission.
    function approve(uint256 taskId, uint8 submission) external;

    /// @notice Return the unused bounty and auditor fees to the requester: once a submission is
    ///         approved, or once all K submissions are resolved with none passing.
    /// @param taskId The task.
    function reclaim(uint256 taskId) external;

    // --- listing and sales ----------------------------------------------------------------------

    /// @notice Committee members vote for the sum of `scorePpm` over the finalized root's leaves;
    ///         a quorum of committee stake (the task's rule) fixes it.
    /// @param taskId The task.
    /// @param totalScore The sum.
    function attestTotalScore(uint256 taskId, uint256 totalScore) external;

    /// @notice List the approved model (requester).
    /// @param p The listing's parameters.
    /// @return listingId The new listing.
    function list(ListingParams calldata p) external returns (uint256 listingId);

    /// @notice Buy: pay the listing's price (approve first) and name the X25519 key the content key
    ///         is sealed to.
    /// @param listingId The listing.
    /// @param buyerKey The buyer's X25519 public key.
    /// @return saleId The new sale.
    function buy(uint256 listingId, bytes32 buyerKey) external returns (uint256 saleId);

    /// @notice `buy` in one transaction with an EIP-2612 permit for the price.
    /// @param listingId The listing.
    /// @param buyerKey The buyer's X25519 public key.
    /// @param deadline The permit's deadline.
    /// @param v Signature v.
    /// @param r Signature r.
    /// @param s Signature s.
    /// @return saleId The new sale.
    function buyWithPermit(uint256 listingId, bytes32 buyerKey, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (uint256 saleId);

    /// @notice Record the content key sealed to the buyer (the listing's key holder, before the
    ///         delivery deadline); the price joins the listing's gross. The envelope is emitted in
    ///         `Delivered` and only its keccak256 is stored, so a delivered buyer needs no content
    ///         store to get its key. Whether the envelope opens to the right key is not checked
    ///         here (the contract cannot open it).
    /// @param saleId The sale.
    /// @param sealedKey The sealed key envelope (1 to MAX_SEALED_KEY bytes).
    function deliver(uint256 saleId, bytes calldata sealedKey) external;

    /// @notice Take back the price of a sale not delivered by its deadline (the buyer).
    /// @param saleId The sale.
    function refund(uint256 saleId) external;

    /// @notice Pay a trainer its accrued royalties, proven with its payout leaf of the task's
    ///         finalized root (anyone may call for any leaf; flagged leaves earn nothing).
    /// @param listingId The listing.
    /// @param index The leaf's index.
    /// @param account The leaf's account.
    /// @param amount The leaf's amount.
    /// @param scorePpm The leaf's score (the royalty weight).
    /// @param flags The leaf's flags.
    /// @param proof The Merkle proof.
    function claimRoyalty(
        uint256 listingId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external;

    /// @notice Pay the caller's accrued share as the listing's requester, developer or approving
    ///         auditor (each approving auditor: `⌊auditorPool / auditorCount⌋`).
    /// @param listingId The listing.
    function claimShare(uint256 listingId) external;

    /// @notice After the royalty deadline: send the trainers' unclaimed royalties and rounding dust,
    ///         and the auditors' split remainder, to the requester (anyone may call, once).
    /// @param listingId The listing.
    function sweepRoyalties(uint256 listingId) external;

    /// @notice Stop the royalties of a trainer that withdrew consent from the listing's task (in the
    ///         listing's version registry), proven with its payout leaf; anyone may call. Trainer
    ///         cuts delivered after a withdrawal and before its settlement are held and then shared
    ///         by score among the remaining trainers (never by the withdrawn one).
    /// @param listingId The listing.
    /// @param index The leaf's index.
    /// @param account The leaf's account (the withdrawn trainer).
    /// @param amount The leaf's amount.
    /// @param scorePpm The leaf's score.
    /// @param flags The leaf's flags.
    /// @param proof The Merkle proof.
    function settleWithdrawal(
        uint256 listingId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external;

    // --- views ----------------------------------------------------------------------------------

    /// @notice The task market this contract reads.
    /// @return The market.
    function taskMarket() external view returns (ITaskMarket);

    /// @notice An address's role here.
    /// @param account The address.
    /// @return The role.
    function roleOf(address account) external view returns (Role);

    /// @notice An address's registered X25519 key.
    /// @param account The address.
    /// @return The key.
    function encryptionKeyOf(address account) external view returns (bytes32);

    /// @notice A task's product state.
    /// @param taskId The task.
    /// @return The state.
    function product(uint256 taskId) external view returns (ProductInfo memory);

    /// @notice A submission.
    /// @param taskId The task.
    /// @param submission Its number.
    /// @return The submission.
    function submission(uint256 taskId, uint8 submission) external view returns (SubmissionInfo memory);

    /// @notice The approving auditors of a submission, in order.
    /// @param taskId The task.
    /// @param submission Its number.
    /// @return The auditors.
    function approvingAuditors(uint256 taskId, uint8 submission) external view returns (address[] memory);

    /// @notice A listing.
    /// @param listingId The listing.
    /// @return The listing.
    function listing(uint256 listingId) external view returns (ListingInfo memory);

    /// @notice A sale.
    /// @param saleId The sale.
    /// @return The sale.
    function sale(uint256 saleId) external view returns (SaleInfo memory);

    /// @notice The trainers' part of a listing's gross (its trainer pool).
    /// @param listingId The listing.
    /// @return Tokens accrued to trainers in total.
    function trainerGross(uint256 listingId) external view returns (uint256);

    /// @notice Royalties a leaf's trainer has accrued and been paid.
    /// @param listingId The listing.
    /// @param index The leaf's index.
    /// @param scorePpm The leaf's score.
    /// @return accrued Its entitlement so far.
    /// @return paid What it was paid.
    function royaltyOf(uint256 listingId, uint256 index, uint32 scorePpm)
        external
        view
        returns (uint256 accrued, uint256 paid);

    /// @notice The commitment an oracle makes for an evaluation.
    /// @param taskId The task.
    /// @param submission The submission.
    /// @param oracle The oracle.
    /// @param scorePpm The score.
    /// @param salt A secret random value.
    /// @return `keccak256(abi.encode(block.chainid, this, taskId, submission, oracle, scorePpm, salt))`.
    function evaluationCommitment(uint256 taskId, uint8 submission, address oracle, uint32 scorePpm, bytes32 salt)
        external
        view
        returns (bytes32);

    /// @notice The EIP-712 digest an auditor signs.
    /// @param taskId The task.
    /// @param modelDigest The model's digest.
    /// @param reportCid CID of the report.
    /// @param approved The verdict.
    /// @return The typed-data hash.
    function attestationDigest(uint256 taskId, bytes32 modelDigest, string calldata reportCid, bool approved)
        external
        view
        returns (bytes32);
}
