// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IDataSourcing} from "./interfaces/IDataSourcing.sol";
import {IJoinGate} from "./interfaces/IJoinGate.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {PayoutLeaf} from "./libraries/PayoutLeaf.sol";
import {TaskState} from "./libraries/TaskState.sol";

/// @title DataSourcing
/// @notice Data requests, sealed offers, the committee's selection by commit-reveal quorum, the
///         join gate of selected data owners, their threshold payments and refunds.
/// @dev The selection itself (OT valuation, truthful budget-feasible mechanism) is computed off
///      chain by every oracle deterministically (`marketplace.sourcing`); the chain only orders
///      commitments, counts identical reveals and moves money. Winners prove their leaf once
///      (`registerWinner`), so nothing loops over winners. The registered payments can never
///      exceed the revealed total, which can never exceed the escrowed budget. A winner is paid
///      only if the task's final payout leaf of its account has no flag (or scoring failed and it
///      committed the last round); a withheld payment returns to the requester with `refund`
///      after the claim deadline. Offers cost the offerer something and are bounded (issue 10's
///      F9 for data owners): only a registered trainer with the task's `minStake` unreserved
///      and its minimum reputation (an account that could join if it won) may offer, at most
///      `MAX_OFFERS` per request, each with a bond returned at its reveal and forfeited to the
///      requester if never revealed — so a Sybil flood of junk sketches costs stake and bonds,
///      and can never exceed what the committee's collection budget fetches in time.
contract DataSourcing is IDataSourcing, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The largest committee; bounds the only loop (in `createRequest`).
    uint256 public constant MAX_COMMITTEE = 16;

    /// @notice The most offers one request takes. Sized for the committee's off-chain collection
    ///         (`marketplace/protocol/sourcing.py`): 8 fetches at a time, each bounded by 10 s
    ///         (≤ 20 s for a sketch whose root block alone is served), so every capped offer is
    ///         tried at least once in 64 · 20 / 8 = 160 s, within `MIN_SELECTION_WINDOW` less
    ///         the committee's 60 s margin.
    uint256 public constant MAX_OFFERS = 64;

    /// @notice Shortest selection-commit window (`selectCommitDeadline − revealDeadline`, seconds):
    ///         160 s to fetch `MAX_OFFERS` unserved sketches, 60 s kept for the selection and the
    ///         commit, and 80 s for an oracle that starts late.
    uint64 public constant MIN_SELECTION_WINDOW = 300;

    uint8 private constant SEAT_NONE = 0;
    uint8 private constant SEAT_OFFERED = 1;
    uint8 private constant SEAT_ACCEPTED = 2;

    struct Request {
        // slot 0
        address requester;
        uint64 offerDeadline;
        uint8 committeeSize;
        uint8 accepted;
        uint8 quorum;
        bool cancelled;
        // slot 1
        IERC20 token;
        uint64 revealDeadline;
        bool unspentRefunded;
        // slot 2
        uint256 taskId;
        // slot 3
        uint128 budget;
        uint128 paid;
        // slot 4
        uint128 refunded;
        uint128 selectedTotal;
        // slot 5
        uint128 registeredTotal;
        uint64 selectCommitDeadline;
        uint64 selectRevealDeadline;
        // slot 6
        uint64 claimDeadline;
        uint32 minReputationPpm;
        uint16 offerCount;
        // slots 7-8
        bytes32 validationCommitment;
        bytes32 selectionRoot;
        // slot 9
        uint128 offerBond;
        uint128 bondsHeld;
        // slot 10
        uint128 minStake;
    }

    struct OfferState {
        uint256 ask;
        uint64 samples;
        bool revealed;
    }

    struct WinnerState {
        uint128 payment;
        bool registered;
        bool claimed;
    }

    /// @inheritdoc IDataSourcing
    ITaskMarket public immutable market;
    /// @notice The market's participant registry (who may offer).
    IParticipantRegistry public immutable registry;

    uint256 private _requestCount;
    mapping(uint256 requestId => Request) private _requests;
    mapping(uint256 taskId => uint256 requestId) private _requestOfTask;
    mapping(uint256 requestId => mapping(address oracle => uint8 seat)) private _seats;
    mapping(uint256 requestId => mapping(address owner => bytes32)) private _offerCommits;
    mapping(uint256 requestId => mapping(address owner => OfferState)) private _offers;
    mapping(uint256 requestId => mapping(address oracle => bytes32)) private _selectionCommits;
    mapping(uint256 requestId => mapping(address oracle => bool)) private _selectionRevealed;
    mapping(uint256 requestId => mapping(bytes32 vote => uint8 count)) private _votes;
    mapping(uint256 requestId => mapping(address owner => WinnerState)) private _winners;

    /// @param market_ The TaskMarket whose tasks this contract sources data for.
    constructor(ITaskMarket market_) {
        market = market_;
        registry = market_.registry();
    }

    // --- requester --------------------------------------------------------------------------

    /// @inheritdoc IDataSourcing
    function createRequest(RequestParams calldata p) external nonReentrant returns (uint256 requestId) {
        ITaskMarket.TaskInfo memory task = market.task(p.taskId);
        if (task.requester != msg.sender) {
            revert DataSourcingNotTaskRequester(p.taskId, msg.sender);
        }
        if (_requestOfTask[p.taskId] != 0) revert DataSourcingTaskAlreadySourced(p.taskId);
        if (p.budget == 0 || p.budget > type(uint128).max) revert DataSourcingBadBudget(p.budget);
        uint256 minBond = minOfferBond(p.token);
        if (p.offerBond < minBond || p.offerBond > type(uint128).max) {
            revert DataSourcingBondBelowMinimum(p.offerBond, minBond);
        }
        uint256 n = p.oracles.length;
        if (n == 0 || n > MAX_COMMITTEE || p.quorum == 0 || p.quorum > n) revert DataSourcingBadCommittee();
        if (
            !(block.timestamp < p.offerDeadline && p.offerDeadline < p.revealDeadline
                    && p.revealDeadline < p.selectCommitDeadline
                    && p.selectCommitDeadline < p.selectRevealDeadline
                    && p.selectRevealDeadline < p.claimDeadline)
                || p.selectCommitDeadline - p.revealDeadline < MIN_SELECTION_WINDOW
        ) revert DataSourcingBadSchedule();

        requestId = ++_requestCount;
        for (uint256 i = 0; i < n; ++i) {
            address o = p.oracles[i];
            if (o == address(0) || _seats[requestId][o] != SEAT_NONE) revert DataSourcingBadCommittee();
            _seats[requestId][o] = SEAT_OFFERED;
        }
        Request storage r = _requests[requestId];
        r.requester = msg.sender;
        r.offerDeadline = p.offerDeadline;
        r.committeeSize = uint8(n); // n <= MAX_COMMITTEE
        r.quorum = p.quorum;
        r.token = p.token;
        r.revealDeadline = p.revealDeadline;
        r.taskId = p.taskId;
        r.budget = uint128(p.budget); // checked above
        r.selectCommitDeadline = p.selectCommitDeadline;
        r.selectRevealDeadline = p.selectRevealDeadline;
        r.claimDeadline = p.claimDeadline;
        r.validationCommitment = p.validationCommitment;
        r.offerBond = uint128(p.offerBond); // checked above
        // The task fixed these at its creation: what joining it will ask of a winner.
        r.minStake = uint128(task.minStake); // TaskMarket stores it in 128 bits
        r.minReputationPpm = task.minReputationPpm;
        _requestOfTask[p.taskId] = requestId;
        emit RequestCreated(requestId, p.taskId, msg.sender, p.budget, p.schemaCid);

        _pull(p.token, msg.sender, p.budget);
    }

    // --- committee --------------------------------------------------------------------------

    /// @inheritdoc IDataSourcing
    function acceptSeat(uint256 requestId) external {
        Request storage r = _existing(requestId);
        if (block.timestamp >= r.offerDeadline) revert DataSourcingWrongTime(requestId, r.offerDeadline);
        uint8 seat = _seats[requestId][msg.sender];
        if (seat == SEAT_NONE) revert DataSourcingNotOracle(requestId, msg.sender);
        if (seat == SEAT_ACCEPTED) revert DataSourcingSeatAlreadyAccepted(requestId, msg.sender);
        _seats[requestId][msg.sender] = SEAT_ACCEPTED;
        ++r.accepted;
        emit SeatAccepted(requestId, msg.sender);
    }

    /// @inheritdoc IDataSourcing
    function commitSelection(uint256 requestId, bytes32 commitment) external {
        Request storage r = _existing(requestId);
        if (block.timestamp < r.revealDeadline) revert DataSourcingWrongTime(requestId, r.revealDeadline);
        if (block.timestamp >= r.selectCommitDeadline) {
            revert DataSourcingWrongTime(requestId, r.selectCommitDeadline);
        }
        if (_seats[requestId][msg.sender] != SEAT_ACCEPTED) revert DataSourcingSeatNotAccepted(requestId, msg.sender);
        if (commitment == bytes32(0)) revert DataSourcingEmptyCommitment();
        if (_selectionCommits[requestId][msg.sender] != bytes32(0)) {
            revert DataSourcingAlreadyCommitted(requestId, msg.sender);
        }
        _selectionCommits[requestId][msg.sender] = commitment;
        emit SelectionCommitted(requestId, msg.sender);
    }

    /// @inheritdoc IDataSourcing
    function revealSelection(uint256 requestId, bytes32 root, uint256 total, string calldata reportCid, bytes32 salt)
        external
    {
        Request storage r = _existing(requestId);
        if (block.timestamp < r.selectCommitDeadline) {
            revert DataSourcingWrongTime(requestId, r.selectCommitDeadline);
        }
        if (block.timestamp >= r.selectRevealDeadline) {
            revert DataSourcingWrongTime(requestId, r.selectRevealDeadline);
        }
        bytes32 committed = _selectionCommits[requestId][msg.sender];
        if (committed == bytes32(0) || committed != selectionCommitment(requestId, msg.sender, root, total, reportCid, salt))
        {
            revert DataSourcingRevealMismatch(requestId, msg.sender);
        }
        if (_selectionRevealed[requestId][msg.sender]) revert DataSourcingAlreadyRevealed(requestId, msg.sender);
        if (total > r.budget) revert DataSourcingSelectionOverBudget(total, r.budget);
        _selectionRevealed[requestId][msg.sender] = true;
        bytes32 vote = keccak256(abi.encode(root, total));
        uint8 count = ++_votes[requestId][vote];
        emit SelectionRevealed(requestId, msg.sender, root, total, reportCid);
        if (count == r.quorum && r.selectionRoot == bytes32(0)) {
            r.selectionRoot = root;
            r.selectedTotal = uint128(total); // total <= budget < 2**128
            emit SelectionFinalized(requestId, root, total);
        }
    }

    // --- data owners ------------------------------------------------------------------------

    /// @inheritdoc IDataSourcing
    function commitOffer(uint256 requestId, bytes32 commitment) external nonReentrant {
        Request storage r = _existing(requestId);
        if (block.timestamp >= r.offerDeadline) revert DataSourcingWrongTime(requestId, r.offerDeadline);
        if (commitment == bytes32(0)) revert DataSourcingEmptyCommitment();
        if (_offerCommits[requestId][msg.sender] != bytes32(0)) {
            revert DataSourcingAlreadyCommitted(requestId, msg.sender);
        }
        uint16 count = r.offerCount;
        if (count >= MAX_OFFERS) revert DataSourcingOffersFull(requestId, MAX_OFFERS);
        // Only an account that could join the task if it won (TaskMarket.join's checks, bar the
        // gate): the stake is checked, not reserved — joining reserves it.
        IParticipantRegistry.Participant memory p = registry.participant(msg.sender);
        if (p.role != IParticipantRegistry.Role.Trainer) revert DataSourcingNotTrainer(requestId, msg.sender);
        uint256 free = p.stake - p.reserved;
        if (free < r.minStake) revert DataSourcingStakeTooLow(requestId, msg.sender, free, r.minStake);
        if (p.reputationPpm < r.minReputationPpm) {
            revert DataSourcingReputationTooLow(requestId, msg.sender, p.reputationPpm, r.minReputationPpm);
        }
        uint128 bond = r.offerBond;
        _offerCommits[requestId][msg.sender] = commitment;
        r.offerCount = count + 1; // count < MAX_OFFERS
        r.bondsHeld += bond;
        emit OfferCommitted(requestId, msg.sender, commitment);

        _pull(r.token, msg.sender, bond);
    }

    /// @inheritdoc IDataSourcing
    function revealOffer(uint256 requestId, uint256 ask, uint64 samples, string calldata sketchCid, bytes32 salt)
        external
        nonReentrant
    {
        Request storage r = _existing(requestId);
        if (block.timestamp < r.offerDeadline) revert DataSourcingWrongTime(requestId, r.offerDeadline);
        if (block.timestamp >= r.revealDeadline) revert DataSourcingWrongTime(requestId, r.revealDeadline);
        bytes32 committed = _offerCommits[requestId][msg.sender];
        if (committed == bytes32(0) || committed != offerCommitment(requestId, msg.sender, ask, samples, sketchCid, salt)) {
            revert DataSourcingRevealMismatch(requestId, msg.sender);
        }
        OfferState storage o = _offers[requestId][msg.sender];
        if (o.revealed) revert DataSourcingAlreadyRevealed(requestId, msg.sender);
        if (samples == 0) revert DataSourcingZeroSamples();
        o.ask = ask;
        o.samples = samples;
        o.revealed = true;
        uint128 bond = r.offerBond;
        r.bondsHeld -= bond; // this offer's bond was held since its commit
        emit OfferRevealed(requestId, msg.sender, ask, samples, sketchCid);
        emit OfferBondReturned(requestId, msg.sender, bond);

        r.token.safeTransfer(msg.sender, bond);
    }

    /// @inheritdoc IDataSourcing
    function registerWinner(uint256 requestId, uint256 payment, bytes32[] calldata proof) external {
        Request storage r = _selected(requestId);
        if (block.timestamp > r.claimDeadline) revert DataSourcingWrongTime(requestId, r.claimDeadline);
        WinnerState storage w = _winners[requestId][msg.sender];
        if (w.registered) revert DataSourcingAlreadyRegistered(requestId, msg.sender);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(requestId, msg.sender, payment))));
        if (!MerkleProof.verifyCalldata(proof, r.selectionRoot, leaf)) revert DataSourcingBadProof(requestId, msg.sender);
        uint256 registered = uint256(r.registeredTotal) + payment;
        if (registered > r.selectedTotal) revert DataSourcingSelectionOverBudget(registered, r.selectedTotal);
        r.registeredTotal = uint128(registered); // <= selectedTotal < 2**128
        w.payment = uint128(payment); // <= selectedTotal
        w.registered = true;
        emit WinnerRegistered(requestId, msg.sender, payment);
    }

    /// @inheritdoc IDataSourcing
    function claimPayment(
        uint256 requestId,
        uint256 index,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external nonReentrant {
        Request storage r = _selected(requestId);
        if (block.timestamp > r.claimDeadline) revert DataSourcingWrongTime(requestId, r.claimDeadline);
        WinnerState storage w = _winners[requestId][msg.sender];
        if (!w.registered || w.claimed) revert DataSourcingNothingToClaim(requestId, msg.sender);
        uint256 taskId = r.taskId;
        ITaskMarket.TaskInfo memory info = market.task(taskId);
        if (info.outcome == ITaskMarket.Outcome.Scored) {
            // The payout root is final once its dispute window is over (Finalized from
            // claimsOpenAt on, or Closed by the sweep); a Disputed root may still change.
            if (
                info.phase != ITaskMarket.Phase.Closed
                    && (info.phase != ITaskMarket.Phase.Finalized || block.timestamp < info.claimsOpenAt)
            ) revert DataSourcingPayoutNotFinal(requestId, taskId);
            bytes32 leaf =
                PayoutLeaf.hash(block.chainid, address(market), taskId, index, msg.sender, amount, scorePpm, flags);
            if (!MerkleProof.verifyCalldata(proof, info.payoutRoot, leaf)) {
                revert DataSourcingBadPayoutLeaf(requestId, msg.sender);
            }
            if (flags != 0) revert DataSourcingWinnerFlagged(requestId, msg.sender, flags);
        } else if (info.outcome == ITaskMarket.Outcome.None) {
            // Training or scoring is not over (or the task was cancelled before training).
            ITaskMarket.Phase phase = info.phase;
            if (
                phase == ITaskMarket.Phase.Forming || phase == ITaskMarket.Phase.Open
                    || phase == ITaskMarket.Phase.Training || phase == ITaskMarket.Phase.Cancelled
            ) revert DataSourcingRoundsNotCompleted(requestId, msg.sender);
            revert DataSourcingPayoutNotFinal(requestId, taskId);
        }
        // Scored and unflagged, or scoring failed (no root: the failure is not the winner's, as
        // with TaskMarket's fallback pay): the winner must have committed the last round's update.
        (bytes32 digest,) = market.update(taskId, info.rounds, msg.sender);
        if (digest == bytes32(0)) revert DataSourcingRoundsNotCompleted(requestId, msg.sender);
        uint256 payment = w.payment;
        w.claimed = true;
        r.paid += uint128(payment); // paid <= registeredTotal <= selectedTotal <= budget
        emit PaymentClaimed(requestId, msg.sender, payment);

        r.token.safeTransfer(msg.sender, payment);
    }

    // --- anyone -----------------------------------------------------------------------------

    /// @inheritdoc IDataSourcing
    function refund(uint256 requestId) external nonReentrant {
        Request storage r = _selected(requestId);
        uint256 amount = 0;
        if (block.timestamp > r.claimDeadline) {
            amount = uint256(r.budget) - r.paid - r.refunded;
            r.unspentRefunded = true;
        } else if (!r.unspentRefunded) {
            amount = uint256(r.budget) - r.selectedTotal;
            r.unspentRefunded = true;
        }
        if (amount == 0) revert DataSourcingNothingToRefund(requestId);
        r.refunded += uint128(amount); // refunded + paid <= budget
        emit Refunded(requestId, amount);

        r.token.safeTransfer(r.requester, amount);
    }

    /// @inheritdoc IDataSourcing
    function forfeitBonds(uint256 requestId) external nonReentrant {
        Request storage r = _existing(requestId);
        // After the reveal deadline no offer can be revealed: every bond still held is forfeit.
        if (block.timestamp < r.revealDeadline) revert DataSourcingWrongTime(requestId, r.revealDeadline);
        uint256 amount = r.bondsHeld;
        if (amount == 0) revert DataSourcingNoBondsToForfeit(requestId);
        r.bondsHeld = 0;
        emit OfferBondsForfeited(requestId, amount / r.offerBond, amount);

        r.token.safeTransfer(r.requester, amount);
    }

    /// @inheritdoc IDataSourcing
    function cancel(uint256 requestId) external nonReentrant {
        Request storage r = _existing(requestId);
        if (r.cancelled || r.selectionRoot != bytes32(0) || block.timestamp < r.selectRevealDeadline) {
            revert DataSourcingNotCancellable(requestId);
        }
        r.cancelled = true;
        uint256 amount = uint256(r.budget) - r.refunded; // nothing was paid without a selection
        r.refunded += uint128(amount);
        emit RequestCancelled(requestId);
        emit Refunded(requestId, amount);

        r.token.safeTransfer(r.requester, amount);
    }

    // --- views ------------------------------------------------------------------------------

    /// @inheritdoc IJoinGate
    function canJoin(uint256 taskId, address trainer) external view returns (bool) {
        uint256 requestId = _requestOfTask[taskId];
        if (requestId == 0) return false;
        Request storage r = _requests[requestId];
        return !r.cancelled && r.selectionRoot != bytes32(0) && _winners[requestId][trainer].registered;
    }

    /// @inheritdoc IDataSourcing
    function request(uint256 requestId) external view returns (RequestInfo memory info) {
        Request storage r = _existing(requestId);
        info = RequestInfo({
            requester: r.requester,
            token: r.token,
            taskId: r.taskId,
            budget: r.budget,
            paid: r.paid,
            refunded: r.refunded,
            selectedTotal: r.selectedTotal,
            validationCommitment: r.validationCommitment,
            selectionRoot: r.selectionRoot,
            offerDeadline: r.offerDeadline,
            revealDeadline: r.revealDeadline,
            selectCommitDeadline: r.selectCommitDeadline,
            selectRevealDeadline: r.selectRevealDeadline,
            claimDeadline: r.claimDeadline,
            committeeSize: r.committeeSize,
            accepted: r.accepted,
            quorum: r.quorum,
            cancelled: r.cancelled,
            offerBond: r.offerBond,
            minStake: r.minStake,
            minReputationPpm: r.minReputationPpm,
            offerCount: r.offerCount,
            bondsHeld: r.bondsHeld
        });
    }

    /// @inheritdoc IDataSourcing
    function minOfferBond(IERC20 token) public view returns (uint256) {
        return TaskState.minTrainerBond(address(token)); // one whole token, as a trainer's bond
    }

    /// @inheritdoc IDataSourcing
    function requestOfTask(uint256 taskId) external view returns (uint256) {
        return _requestOfTask[taskId];
    }

    /// @inheritdoc IDataSourcing
    function offer(uint256 requestId, address owner) external view returns (uint256 ask, uint64 samples) {
        OfferState storage o = _offers[requestId][owner];
        return (o.ask, o.samples);
    }

    /// @inheritdoc IDataSourcing
    function winner(uint256 requestId, address owner) external view returns (uint256 payment, bool claimed) {
        WinnerState storage w = _winners[requestId][owner];
        return (w.payment, w.claimed);
    }

    /// @inheritdoc IDataSourcing
    function offerCommitment(
        uint256 requestId,
        address owner,
        uint256 ask,
        uint64 samples,
        string calldata sketchCid,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(requestId, owner, ask, samples, keccak256(bytes(sketchCid)), salt));
    }

    /// @inheritdoc IDataSourcing
    function selectionCommitment(
        uint256 requestId,
        address oracle,
        bytes32 root,
        uint256 total,
        string calldata reportCid,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(requestId, oracle, root, total, keccak256(bytes(reportCid)), salt));
    }

    // --- internal ---------------------------------------------------------------------------

    function _existing(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.requester == address(0)) revert DataSourcingUnknownRequest(requestId);
    }

    function _selected(uint256 requestId) private view returns (Request storage r) {
        r = _existing(requestId);
        if (r.selectionRoot == bytes32(0) || r.cancelled) revert DataSourcingNotSelected(requestId);
    }

    /// @dev Pulls `amount` of `token` and insists the balance grew by exactly that much, so the
    ///      books (budgets and bonds) always equal the balance.
    function _pull(IERC20 token, address from, uint256 amount) private {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(from, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert DataSourcingFeeOnTransfer(amount, received);
    }
}
