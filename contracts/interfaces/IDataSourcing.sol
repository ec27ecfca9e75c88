// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IJoinGate} from "./IJoinGate.sol";
import {ITaskMarket} from "./ITaskMarket.sol";

/// @title IDataSourcing
/// @notice Sourcing before training: a requester's data request with an escrowed procurement
///         budget, sealed offers by commit-reveal, the oracle committee's selection (winners and
///         threshold payments as a Merkle root) committed and revealed by quorum, a join gate
///         that admits only winners, payments claimed by winners whose final payout leaf in the
///         task is unflagged (or, if scoring failed, who trained the last round), and refunds of
///         the unspent or withheld budget.
/// @dev The schedule is fixed at creation (offer, reveal, selection commit and reveal deadlines;
///      the claim deadline), so phases follow the clock and nobody has to advance them. No
///      function loops over offers or winners; only `createRequest` loops over the committee
///      (at most `MAX_COMMITTEE`). Offers are bounded and paid for: only a registered trainer
///      whose unreserved registry stake covers the task's `minStake` (and whose reputation meets
///      its `minReputationPpm`) — an account that could win and then join — may commit one, at
///      most `MAX_OFFERS` are committed per request, and each posts the request's `offerBond`,
///      returned at its reveal and forfeited to the requester if it is never revealed.
///      Invariant: this contract's balance of a token is Σ over its requests of
///      (budget − paid − refunded + bondsHeld).
interface IDataSourcing is IJoinGate {
    /// @notice What a requester fixes when creating a data request.
    /// @param taskId The TaskMarket task this request sources data for (the caller must be its
    ///        requester; the task should name this contract as its join gate).
    /// @param token The ERC-20 the budget is escrowed in (the task's token).
    /// @param budget The procurement budget: the most all winners are paid together.
    /// @param offerBond What each offer posts in `token` at `commitOffer` (at least
    ///        `minOfferBond(token)`, one whole token): returned at its reveal, forfeited to the
    ///        requester if it is never revealed.
    /// @param schemaCid CID of the request document (model and feature schema, label set, sketch
    ///        spec); emitted, not stored.
    /// @param validationCommitment The requester's commitment to its validation set.
    /// @param oracles The committee; each must accept its seat before the offer deadline.
    /// @param quorum Number of identical revealed selections that finalize it.
    /// @param offerDeadline Unix time: offers are committed before it.
    /// @param revealDeadline Unix time: offers are revealed before it.
    /// @param selectCommitDeadline Unix time: oracles commit their selection before it, at least
    ///        `MIN_SELECTION_WINDOW` after `revealDeadline` (time to fetch every capped offer).
    /// @param selectRevealDeadline Unix time: oracles reveal their selection before it.
    /// @param claimDeadline Unix time: winners claim before it; the rest returns to the requester.
    struct RequestParams {
        uint256 taskId;
        IERC20 token;
        uint256 budget;
        uint256 offerBond;
        string schemaCid;
        bytes32 validationCommitment;
        address[] oracles;
        uint8 quorum;
        uint64 offerDeadline;
        uint64 revealDeadline;
        uint64 selectCommitDeadline;
        uint64 selectRevealDeadline;
        uint64 claimDeadline;
    }

    /// @notice A request's state, as returned by `request`. `minStake` and `minReputationPpm`
    ///         are the task's, read at creation (what an offer's owner must meet); `offerCount`
    ///         counts committed offers (at most `MAX_OFFERS`); `bondsHeld` is the offer bonds in
    ///         escrow (committed, not revealed, not forfeited).
    struct RequestInfo {
        address requester;
        IERC20 token;
        uint256 taskId;
        uint256 budget;
        uint256 paid;
        uint256 refunded;
        uint256 selectedTotal;
        bytes32 validationCommitment;
        bytes32 selectionRoot;
        uint64 offerDeadline;
        uint64 revealDeadline;
        uint64 selectCommitDeadline;
        uint64 selectRevealDeadline;
        uint64 claimDeadline;
        uint8 committeeSize;
        uint8 accepted;
        uint8 quorum;
        bool cancelled;
        uint256 offerBond;
        uint256 minStake;
        uint32 minReputationPpm;
        uint16 offerCount;
        uint256 bondsHeld;
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when no request has this id.
    /// @param requestId The id asked for.
    error DataSourcingUnknownRequest(uint256 requestId);
    /// @notice Thrown when the caller is not the requester of the TaskMarket task.
    /// @param taskId The task.
    /// @param caller The caller.
    error DataSourcingNotTaskRequester(uint256 taskId, address caller);
    /// @notice Thrown when a task already has a data request.
    /// @param taskId The task.
    error DataSourcingTaskAlreadySourced(uint256 taskId);
    /// @notice Thrown when the budget is zero or above 2**128 − 1.
    /// @param budget The budget given.
    error DataSourcingBadBudget(uint256 budget);
    /// @notice Thrown when the committee is empty, too large, has a duplicate or zero address, or
    ///         the quorum is zero or larger than the committee.
    error DataSourcingBadCommittee();
    /// @notice Thrown when the deadlines are not strictly increasing from now, or the selection
    ///         commit window (`selectCommitDeadline − revealDeadline`) is shorter than
    ///         `MIN_SELECTION_WINDOW`.
    error DataSourcingBadSchedule();
    /// @notice Thrown when a request's offer bond is below the protocol minimum (one whole token).
    /// @param bond The bond given.
    /// @param minimum The minimum (`minOfferBond(token)`).
    error DataSourcingBondBelowMinimum(uint256 bond, uint256 minimum);
    /// @notice Thrown when this contract received fewer tokens than it pulled (fee-on-transfer).
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error DataSourcingFeeOnTransfer(uint256 expected, uint256 received);
    /// @notice Thrown when an offer comes from an account not registered as a trainer: only an
    ///         account that could join the task if it won may offer.
    /// @param requestId The request.
    /// @param account The caller.
    error DataSourcingNotTrainer(uint256 requestId, address account);
    /// @notice Thrown when an offer's owner has less unreserved registry stake than the task's
    ///         `minStake` (what joining the task would reserve).
    /// @param requestId The request.
    /// @param account The caller.
    /// @param free Its stake that is not reserved.
    /// @param required The task's `minStake`.
    error DataSourcingStakeTooLow(uint256 requestId, address account, uint256 free, uint256 required);
    /// @notice Thrown when an offer's owner's reputation is below the task's `minReputationPpm`.
    /// @param requestId The request.
    /// @param account The caller.
    /// @param reputationPpm Its reputation.
    /// @param required The task's minimum.
    error DataSourcingReputationTooLow(uint256 requestId, address account, uint32 reputationPpm, uint32 required);
    /// @notice Thrown when a request already holds `MAX_OFFERS` committed offers.
    /// @param requestId The request.
    /// @param max The cap.
    error DataSourcingOffersFull(uint256 requestId, uint256 max);
    /// @notice Thrown when there are no unrevealed offer bonds to forfeit (none held, or forfeited).
    /// @param requestId The request.
    error DataSourcingNoBondsToForfeit(uint256 requestId);
    /// @notice Thrown when the action is not allowed at this time of the request's schedule.
    /// @param requestId The request.
    /// @param deadline The deadline that decides (passed or not yet reached).
    error DataSourcingWrongTime(uint256 requestId, uint64 deadline);
    /// @notice Thrown when the caller holds no seat on the request's committee.
    /// @param requestId The request.
    /// @param caller The caller.
    error DataSourcingNotOracle(uint256 requestId, address caller);
    /// @notice Thrown when an oracle accepts its seat twice.
    /// @param requestId The request.
    /// @param oracle The oracle.
    error DataSourcingSeatAlreadyAccepted(uint256 requestId, address oracle);
    /// @notice Thrown when an oracle that did not accept its seat commits a selection.
    /// @param requestId The request.
    /// @param oracle The oracle.
    error DataSourcingSeatNotAccepted(uint256 requestId, address oracle);
    /// @notice Thrown when the commitment is zero.
    error DataSourcingEmptyCommitment();
    /// @notice Thrown when an offer or a selection is committed twice by the same account.
    /// @param requestId The request.
    /// @param account The account.
    error DataSourcingAlreadyCommitted(uint256 requestId, address account);
    /// @notice Thrown when a reveal does not match the commitment (or there is none).
    /// @param requestId The request.
    /// @param account The revealing account.
    error DataSourcingRevealMismatch(uint256 requestId, address account);
    /// @notice Thrown when an offer or a selection is revealed twice.
    /// @param requestId The request.
    /// @param account The account.
    error DataSourcingAlreadyRevealed(uint256 requestId, address account);
    /// @notice Thrown when a revealed offer declares zero samples.
    error DataSourcingZeroSamples();
    /// @notice Thrown when a revealed selection pays more than the budget.
    /// @param total The selection's total payment.
    /// @param budget The budget.
    error DataSourcingSelectionOverBudget(uint256 total, uint256 budget);
    /// @notice Thrown when the request's selection is not final (no quorum yet) or it was cancelled.
    /// @param requestId The request.
    error DataSourcingNotSelected(uint256 requestId);
    /// @notice Thrown when a winner's Merkle proof does not verify against the selection root.
    /// @param requestId The request.
    /// @param owner The claimed winner.
    error DataSourcingBadProof(uint256 requestId, address owner);
    /// @notice Thrown when a winner registers twice.
    /// @param requestId The request.
    /// @param owner The winner.
    error DataSourcingAlreadyRegistered(uint256 requestId, address owner);
    /// @notice Thrown when a winner claims before completing the task's rounds (its update in the
    ///         last round is not committed, or training has not ended).
    /// @param requestId The request.
    /// @param owner The winner.
    error DataSourcingRoundsNotCompleted(uint256 requestId, address owner);
    /// @notice Thrown when the task's payout root is not final yet (scoring under way, a dispute
    ///         open, or the dispute window not over): a scored winner can only be paid once its
    ///         leaf is checked against the final root.
    /// @param requestId The request.
    /// @param taskId The request's task.
    error DataSourcingPayoutNotFinal(uint256 requestId, uint256 taskId);
    /// @notice Thrown when the claimed payout leaf (with the caller as its account) does not verify
    ///         against the task's final payout root.
    /// @param requestId The request.
    /// @param owner The caller.
    error DataSourcingBadPayoutLeaf(uint256 requestId, address owner);
    /// @notice Thrown when the committee flagged the winner in the task's final payout table
    ///         (invalid update, poisoner, free rider, copier): it is not paid, and its payment
    ///         returns to the requester with `refund` after the claim deadline.
    /// @param requestId The request.
    /// @param owner The flagged winner.
    /// @param flags The leaf's flag bits (`PayoutLeaf.FLAG_*`).
    error DataSourcingWinnerFlagged(uint256 requestId, address owner, uint256 flags);
    /// @notice Thrown when the caller is not a registered, unpaid winner.
    /// @param requestId The request.
    /// @param owner The caller.
    error DataSourcingNothingToClaim(uint256 requestId, address owner);
    /// @notice Thrown when the request cannot be cancelled (a selection finalized, or its reveal
    ///         window is still open) or is cancelled already.
    /// @param requestId The request.
    error DataSourcingNotCancellable(uint256 requestId);
    /// @notice Thrown when there is nothing to refund now.
    /// @param requestId The request.
    error DataSourcingNothingToRefund(uint256 requestId);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when a data request is created and its budget escrowed.
    /// @param requestId The new request.
    /// @param taskId The TaskMarket task.
    /// @param requester The requester.
    /// @param budget The escrowed budget.
    /// @param schemaCid The request document's CID.
    event RequestCreated(
        uint256 indexed requestId, uint256 indexed taskId, address indexed requester, uint256 budget, string schemaCid
    );
    /// @notice Emitted when an oracle accepts its seat.
    /// @param requestId The request.
    /// @param oracle The oracle.
    event SeatAccepted(uint256 indexed requestId, address indexed oracle);
    /// @notice Emitted when a data owner commits a sealed offer.
    /// @param requestId The request.
    /// @param owner The data owner.
    /// @param commitment `offerCommitment(requestId, owner, ask, samples, sketchCid, salt)`.
    event OfferCommitted(uint256 indexed requestId, address indexed owner, bytes32 commitment);
    /// @notice Emitted when an offer's bond returns to its owner at the reveal.
    /// @param requestId The request.
    /// @param owner The data owner.
    /// @param amount The bond.
    event OfferBondReturned(uint256 indexed requestId, address indexed owner, uint256 amount);
    /// @notice Emitted when the bonds of offers never revealed go to the requester.
    /// @param requestId The request.
    /// @param offers How many offers were never revealed.
    /// @param amount The bonds forfeited.
    event OfferBondsForfeited(uint256 indexed requestId, uint256 offers, uint256 amount);
    /// @notice Emitted when a data owner reveals its offer.
    /// @param requestId The request.
    /// @param owner The data owner.
    /// @param ask The asking price (token units).
    /// @param samples The declared sample count.
    /// @param sketchCid CID of the sketch, sealed to the committee.
    event OfferRevealed(uint256 indexed requestId, address indexed owner, uint256 ask, uint64 samples, string sketchCid);
    /// @notice Emitted when an oracle commits its selection.
    /// @param requestId The request.
    /// @param oracle The oracle.
    event SelectionCommitted(uint256 indexed requestId, address indexed oracle);
    /// @notice Emitted when an oracle reveals its selection.
    /// @param requestId The request.
    /// @param oracle The oracle.
    /// @param root Merkle root of the (requestId, owner, payment) leaves.
    /// @param total Sum of the payments.
    /// @param reportCid CID of the valuation report (values, rejections, reasons).
    event SelectionRevealed(
        uint256 indexed requestId, address indexed oracle, bytes32 root, uint256 total, string reportCid
    );
    /// @notice Emitted when a selection reaches the quorum and becomes final.
    /// @param requestId The request.
    /// @param root The selection root.
    /// @param total Sum of the winners' payments.
    event SelectionFinalized(uint256 indexed requestId, bytes32 root, uint256 total);
    /// @notice Emitted when a winner proves its place in the selection (it may then join).
    /// @param requestId The request.
    /// @param owner The winner.
    /// @param payment Its threshold payment.
    event WinnerRegistered(uint256 indexed requestId, address indexed owner, uint256 payment);
    /// @notice Emitted when a winner is paid.
    /// @param requestId The request.
    /// @param owner The winner.
    /// @param amount The payment.
    event PaymentClaimed(uint256 indexed requestId, address indexed owner, uint256 amount);
    /// @notice Emitted when budget returns to the requester.
    /// @param requestId The request.
    /// @param amount The amount refunded.
    event Refunded(uint256 indexed requestId, uint256 amount);
    /// @notice Emitted when a request without a final selection is cancelled.
    /// @param requestId The request.
    event RequestCancelled(uint256 indexed requestId);

    // --- functions ------------------------------------------------------------------------------

    /// @notice Create a data request for a TaskMarket task and escrow its budget.
    /// @param p The request's parameters.
    /// @return requestId The new request's id (from 1).
    function createRequest(RequestParams calldata p) external returns (uint256 requestId);

    /// @notice Accept the caller's committee seat (before the offer deadline).
    /// @param requestId The request.
    function acceptSeat(uint256 requestId) external;

    /// @notice Commit a sealed offer (before the offer deadline) and post the request's offer
    ///         bond (approve it first). The caller must be a registered trainer whose unreserved
    ///         stake covers the task's `minStake` and whose reputation meets its
    ///         `minReputationPpm`; at most `MAX_OFFERS` offers per request.
    /// @param requestId The request.
    /// @param commitment `offerCommitment(requestId, msg.sender, ask, samples, sketchCid, salt)`.
    function commitOffer(uint256 requestId, bytes32 commitment) external;

    /// @notice Reveal the caller's offer (after the offer deadline, before the reveal deadline);
    ///         its offer bond is returned.
    /// @param requestId The request.
    /// @param ask The asking price.
    /// @param samples The declared sample count.
    /// @param sketchCid The sketch's CID.
    /// @param salt The commitment's salt.
    function revealOffer(uint256 requestId, uint256 ask, uint64 samples, string calldata sketchCid, bytes32 salt)
        external;

    /// @notice Commit the caller's selection (after the reveal deadline, before the selection
    ///         commit deadline); only oracles who accepted their seat.
    /// @param requestId The request.
    /// @param commitment `selectionCommitment(requestId, msg.sender, root, total, reportCid, salt)`.
    function commitSelection(uint256 requestId, bytes32 commitment) external;

    /// @notice Reveal the caller's selection; the `quorum`-th identical (root, total) finalizes.
    /// @param requestId The request.
    /// @param root Merkle root of the winners' (requestId, owner, payment) leaves.
    /// @param total Sum of the payments (at most the budget).
    /// @param reportCid CID of the valuation report.
    /// @param salt The commitment's salt.
    function revealSelection(uint256 requestId, bytes32 root, uint256 total, string calldata reportCid, bytes32 salt)
        external;

    /// @notice Prove the caller's place in the final selection; it may then join the task.
    /// @param requestId The request.
    /// @param payment The caller's threshold payment in the selection.
    /// @param proof The Merkle proof of the caller's leaf.
    function registerWinner(uint256 requestId, uint256 payment, bytes32[] calldata proof) external;

    /// @notice Claim the caller's threshold payment (before the claim deadline). Money follows
    ///         contribution: once the task is scored, the caller proves its leaf in the task's
    ///         final payout root (TaskMarket's `payoutRoot`, after the dispute window) and is paid
    ///         only if the leaf has no flag; a flagged winner's payment is withheld and returns to
    ///         the requester with `refund` after the claim deadline. If scoring failed (the task
    ///         ended with outcome `Failed` or `ValidationMismatch`: no root), the leaf arguments
    ///         are ignored and the winner is paid as TaskMarket's fallback pays trainers, for
    ///         having trained: the failure is not its fault. Either way the caller must have
    ///         committed its update in the task's last round.
    /// @param requestId The request.
    /// @param index The caller's row in the task's payout table.
    /// @param amount The row's task payout (hashed into the leaf; not what this contract pays).
    /// @param scorePpm The row's score.
    /// @param flags The row's flag bits; any set bit means no payment.
    /// @param proof The Merkle proof of the row's leaf (`PayoutLeaf.hash` with the caller as the
    ///        account) under the task's payout root.
    function claimPayment(
        uint256 requestId,
        uint256 index,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external;

    /// @notice Return budget to the requester: the part no winner can be paid once the selection
    ///         is final, and everything unclaimed after the claim deadline (flagged winners'
    ///         withheld payments included). Anyone may call it.
    /// @param requestId The request.
    function refund(uint256 requestId) external;

    /// @notice Cancel a request whose selection did not reach quorum by the selection reveal
    ///         deadline, returning the whole budget to the requester. Anyone may call it.
    /// @param requestId The request.
    function cancel(uint256 requestId) external;

    /// @notice Send the bonds of offers never revealed to the requester (after the reveal
    ///         deadline, once: no offer can be revealed any more). Anyone may call it.
    /// @param requestId The request.
    function forfeitBonds(uint256 requestId) external;

    /// @notice The protocol minimum offer bond in `token`: one whole token, `10 ** decimals()`,
    ///         or 1e18 when the token does not say.
    /// @param token The request's token.
    /// @return The minimum `offerBond`.
    function minOfferBond(IERC20 token) external view returns (uint256);

    /// @notice A request's state.
    /// @param requestId The request.
    /// @return info The state.
    function request(uint256 requestId) external view returns (RequestInfo memory info);

    /// @notice The request of a task (0 when none).
    /// @param taskId The task.
    /// @return The request id.
    function requestOfTask(uint256 taskId) external view returns (uint256);

    /// @notice A revealed offer.
    /// @param requestId The request.
    /// @param owner The data owner.
    /// @return ask The ask (0 if not revealed).
    /// @return samples The declared samples (0 if not revealed).
    function offer(uint256 requestId, address owner) external view returns (uint256 ask, uint64 samples);

    /// @notice A registered winner's payment and whether it was claimed.
    /// @param requestId The request.
    /// @param owner The winner.
    /// @return payment Its payment (0 if not a registered winner).
    /// @return claimed Whether it was paid.
    function winner(uint256 requestId, address owner) external view returns (uint256 payment, bool claimed);

    /// @notice The commitment of an offer: binds request, owner, ask, samples, sketch CID and salt.
    /// @param requestId The request.
    /// @param owner The data owner.
    /// @param ask The ask.
    /// @param samples The declared samples.
    /// @param sketchCid The sketch's CID.
    /// @param salt A secret random value.
    /// @return The commitment.
    function offerCommitment(
        uint256 requestId,
        address owner,
        uint256 ask,
        uint64 samples,
        string calldata sketchCid,
        bytes32 salt
    ) external pure returns (bytes32);

    /// @notice The commitment of a selection: binds request, oracle, root, total, report and salt.
    /// @param requestId The request.
    /// @param oracle The oracle.
    /// @param root The selection root.
    /// @param total The total payment.
    /// @param reportCid The report's CID.
    /// @param salt A secret random value.
    /// @return The commitment.
    function selectionCommitment(
        uint256 requestId,
        address oracle,
        bytes32 root,
        uint256 total,
        string calldata reportCid,
        bytes32 salt
    ) external pure returns (bytes32);

    /// @notice The TaskMarket whose tasks this contract gates.
    /// @return The market.
    function market() external view returns (ITaskMarket);
}
