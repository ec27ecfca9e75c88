// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IModelMarket} from "./interfaces/IModelMarket.sol";
import {IModelVersions} from "./interfaces/IModelVersions.sol";
import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {PayoutLeaf} from "./libraries/PayoutLeaf.sol";

/// @title ModelMarket
/// @notice Validation submissions, audits, listings and sales of a task's model (see IModelMarket).
/// @dev No loop runs over trainers: royalties are a pure function of a listing's cumulative gross,
///      claimed per payout leaf. Loops run over at most MAX_SUBMISSIONS submissions (bounty,
///      reclaim). Nobody can move escrowed tokens except by the rules below; there is no owner.
contract ModelMarket is IModelMarket, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Most validation submissions a task may allow (K).
    uint8 public constant MAX_SUBMISSIONS = 16;
    /// @notice Most attestations a task may require (M).
    uint8 public constant MAX_AUDITORS = 8;
    /// @notice Longest sealed key envelope `deliver` accepts, in bytes (a one-recipient envelope
    ///         of a model CID and a 32-byte key is about 600).
    uint256 public constant MAX_SEALED_KEY = 1024;
    /// @notice The attestation's EIP-712 type.
    bytes32 public constant ATTESTATION_TYPEHASH =
        keccak256("Attestation(uint256 taskId,bytes32 modelDigest,string reportCid,bool approved)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("FedMarket ModelMarket");
    bytes32 private constant VERSION_HASH = keccak256("1");
    uint256 private constant BPS = 10_000;
    uint256 private constant PPM = 1_000_000;
    uint256 private constant WAD = 1e18;
    uint256 private constant MAX_PRICE = type(uint128).max;
    uint8 private constant VERDICT_APPROVE = 1;
    uint8 private constant VERDICT_REJECT = 2;


    struct Submission {
        address developer;
        uint64 commitDeadline;
        uint8 commitCount;
        uint8 revealCount;
        bool decided;
        bool passed;
        uint32 scorePpm;
        uint64 revealDeadline;
        uint8 approvals;
        uint8 rejections;
        bytes32 digest;
    }

    /// @dev A listing's royalty weights once trainers withdraw. Deliveries between two settled
    ///      withdrawals form an epoch, shared by score over the scores still active in it; closed
    ///      epochs are folded into `perScore` (per score unit, ×WAD). Without withdrawals every
    ///      field stays zero and a leaf's accrual is exactly `trainerPool · score / totalScore`.
    struct Royalty {
        uint224 held; // trainer cuts delivered while a withdrawal was unsettled (Σ `_heldAt`)
        uint32 settled; // withdrawals settled on this listing, in withdrawal order
        uint256 perScore; // Σ over closed epochs of ⌊epochPool · WAD / activeScore⌋
        uint256 epochStart; // trainerPool when the current epoch began
        uint256 withdrawnScore; // scores of the settled withdrawn trainers
    }


    /// @dev An oracle's evaluation stake: reserved in the registry at commit, settled once.
    struct EvalStake {
        uint128 reserved;
        uint32 scorePpm;
        bool settled;
    }

    ITaskMarket private immutable _market;
    IParticipantRegistry private immutable _registry;

    mapping(address account => Role) private _roles;
    mapping(address account => bytes32) private _keys;
    mapping(uint256 taskId => ProductInfo) private _products;
    mapping(uint256 taskId => mapping(uint8 sub => Submission)) private _submissions;
    mapping(uint256 taskId => mapping(uint8 sub => mapping(address oracle => bytes32))) private _evalCommits;
    mapping(uint256 taskId => mapping(uint8 sub => mapping(address oracle => bool))) private _evalRevealed;
    mapping(uint256 taskId => mapping(uint8 sub => mapping(uint32 score => uint256))) private _scoreStake;
    mapping(uint256 taskId => mapping(uint8 sub => mapping(address oracle => EvalStake))) private _evalStakes;
    mapping(uint256 taskId => mapping(uint8 sub => mapping(address auditor => uint8))) private _verdicts;
    mapping(uint256 taskId => mapping(uint8 sub => address[])) private _approvers;
    mapping(uint256 taskId => mapping(address => bool)) private _developerOf;
    mapping(uint256 taskId => mapping(address => bool)) private _auditorOf;
    mapping(uint256 taskId => mapping(address oracle => bool)) private _totalVoted;
    mapping(uint256 taskId => mapping(bytes32 rootAndTotal => uint256)) private _totalStake;
    mapping(uint256 listingId => ListingInfo) private _listings;
    mapping(uint256 listingId => mapping(uint256 index => uint256)) private _royaltyPaid;
    mapping(uint256 listingId => Royalty) private _royalties;
    mapping(uint256 listingId => mapping(uint256 index => uint256)) private _stoppedAt; // perScore + 1
    mapping(uint256 listingId => mapping(uint32 withdrawals => uint256)) private _heldAt; // cuts by count
    mapping(uint256 listingId => mapping(address auditor => uint256)) private _auditorPaid;
    mapping(uint256 saleId => SaleInfo) private _sales;
    uint256 private _listingCount;
    uint256 private _saleCount;

    /// @param market_ The task market whose tasks' models are sold here.
    constructor(ITaskMarket market_) {
        _market = market_;
        _registry = market_.registry();
    }

    // --- roles ----------------------------------------------------------------------------------

    /// @inheritdoc IModelMarket
    function register(Role role, bytes32 encryptionKey) external {
        if (role == Role.None || encryptionKey == bytes32(0)) revert ModelMarketInvalidRegistration();
        Role current = _roles[msg.sender];
        if (current != Role.None) revert ModelMarketAlreadyRegistered(msg.sender, current);
        _roles[msg.sender] = role;
        _keys[msg.sender] = encryptionKey;
        emit Registered(msg.sender, role, encryptionKey);
    }

    // --- validation submissions -----------------------------------------------------------------

    /// @inheritdoc IModelMarket
    function configure(uint256 taskId, ProductParams calldata p) external nonReentrant {
        ITaskMarket.TaskInfo memory t = _market.task(taskId);
        if (t.requester != msg.sender) revert ModelMarketNotRequester(taskId, msg.sender);
        if (t.phase == ITaskMarket.Phase.Cancelled) revert ModelMarketWrongTaskPhase(taskId, t.phase);
        ProductInfo storage pr = _products[taskId];
        if (pr.configured) revert ModelMarketAlreadyConfigured(taskId);
        if (
            p.maxSubmissions == 0 || p.maxSubmissions > MAX_SUBMISSIONS || p.thresholdPpm > PPM
                || p.requiredAttestations > MAX_AUDITORS || p.evalCommitDuration == 0 || p.evalRevealDuration == 0
                || p.bounty > MAX_PRICE || p.auditorFee > MAX_PRICE
        ) revert ModelMarketInvalidParams();
        pr.configured = true;
        pr.maxSubmissions = p.maxSubmissions;
        pr.thresholdPpm = p.thresholdPpm;
        pr.requiredAttestations = p.requiredAttestations;
        pr.evalCommitDuration = p.evalCommitDuration;
        pr.evalRevealDuration = p.evalRevealDuration;
        pr.token = t.token;
        pr.requester = msg.sender;
        pr.bounty = p.bounty;
        pr.auditorFee = p.auditorFee;
        emit ProductConfigured(
            taskId, p.maxSubmissions, p.thresholdPpm, p.bounty, p.requiredAttestations, p.auditorFee
        );
        _pull(t.token, msg.sender, p.bounty + p.auditorFee * p.requiredAttestations);
    }

    /// @inheritdoc IModelMarket
    function submitFinalModel(uint256 taskId, string calldata modelCid) external returns (uint8) {
        ITaskMarket.TaskInfo memory t = _finalTask(taskId);
        ProductInfo storage pr = _configured(taskId);
        if (t.requester != msg.sender) revert ModelMarketNotRequester(taskId, msg.sender);
        if (pr.submissionCount != 0) revert ModelMarketFinalModelFirst(taskId);
        bytes32 digest = _market.modelDigest(taskId, t.rounds + 1);
        if (digest == bytes32(0)) revert ModelMarketNoFinalModel(taskId);
        return _addSubmission(taskId, pr, modelCid, digest);
    }

    /// @inheritdoc IModelMarket
    function submit(uint256 taskId, string calldata modelCid, bytes32 digest) external returns (uint8) {
        ProductInfo storage pr = _configured(taskId);
        if (pr.submissionCount == 0) revert ModelMarketFinalModelFirst(taskId);
        if (pr.submissionCount >= pr.maxSubmissions) revert ModelMarketSubmissionLimit(taskId, pr.maxSubmissions);
        if (digest == bytes32(0)) revert ModelMarketZeroHash();
        if (msg.sender != pr.requester && _roles[msg.sender] != Role.Developer) {
            revert ModelMarketWrongRole(msg.sender, Role.Developer);
        }
        if (_auditorOf[taskId][msg.sender] || _market.isOracle(taskId, msg.sender)) {
            revert ModelMarketConflictOfInterest(taskId, msg.sender);
        }
        return _addSubmission(taskId, pr, modelCid, digest);
    }

    /// @inheritdoc IModelMarket
    function commitEvaluation(uint256 taskId, uint8 sub, bytes32 commitment) external nonReentrant {
        Submission storage s = _submission(taskId, sub);
        if (!_market.isOracle(taskId, msg.sender)) revert ModelMarketNotCommitteeMember(taskId, msg.sender);
        if (block.timestamp > s.commitDeadline) revert ModelMarketDeadlinePassed(s.commitDeadline);
        if (commitment == bytes32(0)) revert ModelMarketZeroHash();
        if (_evalCommits[taskId][sub][msg.sender] != bytes32(0)) {
            revert ModelMarketAlreadyCommitted(taskId, sub, msg.sender);
        }
        // TaskMarket stores oracleSlash as a uint128, so the cast is exact.
        uint128 stake = uint128(_market.task(taskId).oracleSlash);
        _evalCommits[taskId][sub][msg.sender] = commitment;
        _evalStakes[taskId][sub][msg.sender].reserved = stake;
        s.commitCount += 1;
        emit EvaluationCommitted(taskId, sub, msg.sender);
        // The registry is trusted (the task market's own); it refuses a member without free stake.
        _registry.reserve(msg.sender, stake);
    }

    /// @inheritdoc IModelMarket
    function revealEvaluation(uint256 taskId, uint8 sub, uint32 scorePpm, bytes32 salt) external {
        Submission storage s = _submission(taskId, sub);
        ITaskMarket.TaskInfo memory t = _market.task(taskId);
        if (block.timestamp <= s.commitDeadline && s.commitCount < t.committeeSize) {
            revert ModelMarketTooEarly(s.commitDeadline + 1);
        }
        if (block.timestamp > s.revealDeadline) revert ModelMarketDeadlinePassed(s.revealDeadline);
        if (scorePpm > PPM) revert ModelMarketInvalidScore(scorePpm);
        bytes32 committed = _evalCommits[taskId][sub][msg.sender];
        if (
            committed == bytes32(0) || _evalRevealed[taskId][sub][msg.sender]
                || committed != _evaluationCommitment(taskId, sub, msg.sender, scorePpm, salt)
        ) revert ModelMarketBadReveal(taskId, sub, msg.sender);
        _evalRevealed[taskId][sub][msg.sender] = true;
        _evalStakes[taskId][sub][msg.sender].scorePpm = scorePpm;
        s.revealCount += 1;
        uint256 stake = _scoreStake[taskId][sub][scorePpm] + _market.oracleWeight(taskId, msg.sender);
        _scoreStake[taskId][sub][scorePpm] = stake;
        emit EvaluationRevealed(taskId, sub, msg.sender, scorePpm);
        if (!s.decided && stake * BPS >= uint256(t.quorumBps) * t.committeeStake) {
            bool passed = scorePpm >= _products[taskId].thresholdPpm;
            s.decided = true;
            s.passed = passed;
            s.scorePpm = scorePpm;
            emit EvaluationDecided(taskId, sub, scorePpm, passed);
        }
    }

    /// @inheritdoc IModelMarket
    function settleEvaluation(uint256 taskId, uint8 sub, address oracle) external nonReentrant {
        Submission storage s = _submission(taskId, sub);
        EvalStake storage e = _evalStakes[taskId][sub][oracle];
        if (_evalCommits[taskId][sub][oracle] == bytes32(0) || e.settled) {
            revert ModelMarketNothingToSettle(taskId, sub, oracle);
        }
        bool revealed = _evalRevealed[taskId][sub][oracle];
        // A missing reveal is final only after the reveal deadline; a revealed score once decided.
        if ((!revealed || !s.decided) && block.timestamp <= s.revealDeadline) {
            revert ModelMarketTooEarly(s.revealDeadline + 1);
        }
        // Only silence is slashable: with no arbiter over evaluations, slashing a revealed score
        // the quorum disagrees with would let a colluding quorum burn an honest dissenter (F2).
        uint256 amount = e.reserved;
        e.settled = true;
        if (!revealed) {
            emit EvaluationSettled(taskId, sub, oracle, 0, amount);
            _registry.slash(oracle, amount, amount, taskId, keccak256(abi.encode(sub, s.digest, s.scorePpm)));
        } else {
            emit EvaluationSettled(taskId, sub, oracle, amount, 0);
            _registry.release(oracle, amount);
        }
    }

    /// @inheritdoc IModelMarket
    function claimBounty(uint256 taskId) external nonReentrant {
        ProductInfo storage pr = _configured(taskId);
        if (pr.bountyPaid || pr.bounty == 0) revert ModelMarketNoBounty(taskId);
        uint8 winner = _firstPassing(taskId, pr);
        if (winner == 0) revert ModelMarketNoBounty(taskId);
        address developer = _submissions[taskId][winner].developer;
        uint256 amount = pr.bounty;
        pr.bountyPaid = true;
        emit BountyPaid(taskId, winner, developer, amount);
        pr.token.safeTransfer(developer, amount);
    }

    // --- audits and approval --------------------------------------------------------------------

    /// @inheritdoc IModelMarket
    function attest(
        uint256 taskId,
        uint8 sub,
        bytes32 modelDigest,
        string calldata reportCid,
        bool approved,
        bytes calldata signature
    ) external nonReentrant {
        ProductInfo storage pr = _configured(taskId);
        Submission storage s = _submission(taskId, sub);
        if (pr.approvedSubmission != 0) revert ModelMarketAlreadyApproved(taskId);
        if (!s.passed) revert ModelMarketNotPassed(taskId, sub);
        if (modelDigest != s.digest) revert ModelMarketDigestMismatch(s.digest, modelDigest);
        address auditor = ECDSA.recover(_attestationDigest(taskId, modelDigest, reportCid, approved), signature);
        if (_roles[auditor] != Role.Auditor) revert ModelMarketBadAttestation(auditor);
        _checkIndependent(taskId, pr, auditor);
        if (_verdicts[taskId][sub][auditor] != 0) revert ModelMarketAlreadyAttested(taskId, sub, auditor);
        uint256 fee = 0;
        if (pr.feesPaid < pr.requiredAttestations) {
            pr.feesPaid += 1;
            fee = pr.auditorFee;
        }
        _auditorOf[taskId][auditor] = true;
        if (approved) {
            if (s.approvals >= MAX_AUDITORS) revert ModelMarketInvalidParams();
            _verdicts[taskId][sub][auditor] = VERDICT_APPROVE;
            s.approvals += 1;
            _approvers[taskId][sub].push(auditor);
        } else {
            _verdicts[taskId][sub][auditor] = VERDICT_REJECT;
            s.rejections += 1;
        }
        emit Attested(taskId, sub, auditor, reportCid, approved, fee);
        if (fee != 0) pr.token.safeTransfer(auditor, fee);
    }

    /// @inheritdoc IModelMarket
    function approve(uint256 taskId, uint8 sub) external {
        ProductInfo storage pr = _configured(taskId);
        Submission storage s = _submission(taskId, sub);
        if (msg.sender != pr.requester) revert ModelMarketNotRequester(taskId, msg.sender);
        if (pr.approvedSubmission != 0) revert ModelMarketAlreadyApproved(taskId);
        if (!s.passed) revert ModelMarketNotPassed(taskId, sub);
        if (s.approvals < pr.requiredAttestations || s.rejections != 0) {
            revert ModelMarketNotEnoughAttestations(s.approvals, s.rejections, pr.requiredAttestations);
        }
        pr.approvedSubmission = sub;
        emit ModelApproved(taskId, sub);
    }

    /// @inheritdoc IModelMarket
    function reclaim(uint256 taskId) external nonReentrant {
        ProductInfo storage pr = _configured(taskId);
        bool exhausted = pr.submissionCount == pr.maxSubmissions && _allResolvedNonePassed(taskId, pr);
        uint256 amount = 0;
        if (!pr.bountyPaid && exhausted) {
            pr.bountyPaid = true;
            amount = pr.bounty;
        }
        if (!pr.feesReclaimed && (exhausted || pr.approvedSubmission != 0)) {
            pr.feesReclaimed = true;
            amount += pr.auditorFee * (pr.requiredAttestations - pr.feesPaid);
            pr.feesPaid = pr.requiredAttestations;
        }
        if (amount == 0) revert ModelMarketNotReclaimable(taskId);
        emit EscrowReclaimed(taskId, amount);
        pr.token.safeTransfer(pr.requester, amount);
    }

    // --- listing and sales ----------------------------------------------------------------------

    /// @inheritdoc IModelMarket
    function attestTotalScore(uint256 taskId, uint256 totalScore) external {
        ITaskMarket.TaskInfo memory t = _finalTask(taskId);
        ProductInfo storage pr = _configured(taskId);
        uint256 weight = _market.oracleWeight(taskId, msg.sender);
        if (weight == 0) revert ModelMarketNotCommitteeMember(taskId, msg.sender);
        if (_totalVoted[taskId][msg.sender]) revert ModelMarketAlreadyVoted(taskId, msg.sender);
        if (totalScore == 0) revert ModelMarketInvalidParams();
        _totalVoted[taskId][msg.sender] = true;
        bytes32 key = keccak256(abi.encode(t.payoutRoot, totalScore));
        uint256 stake = _totalStake[taskId][key] + weight;
        _totalStake[taskId][key] = stake;
        emit TotalScoreVoted(taskId, msg.sender, totalScore);
        if (pr.totalScore == 0 && stake * BPS >= uint256(t.quorumBps) * t.committeeStake) {
            pr.totalScore = totalScore;
            pr.totalScoreRoot = t.payoutRoot;
            emit TotalScoreFixed(taskId, t.payoutRoot, totalScore);
        }
    }

    /// @inheritdoc IModelMarket
    function list(ListingParams calldata p) external nonReentrant returns (uint256 listingId) {
        ITaskMarket.TaskInfo memory t = _finalTask(p.taskId);
        ProductInfo storage pr = _configured(p.taskId);
        if (msg.sender != pr.requester) revert ModelMarketNotRequester(p.taskId, msg.sender);
        if (pr.approvedSubmission == 0 || p.submission != pr.approvedSubmission) {
            revert ModelMarketNotApproved(p.taskId, p.submission);
        }
        if (pr.totalScore == 0 || pr.totalScoreRoot != t.payoutRoot) revert ModelMarketNoTotalScore(p.taskId);
        uint8 auditors = uint8(_approvers[p.taskId][p.submission].length);
        if (
            p.price == 0 || p.price > MAX_PRICE || p.expiry <= block.timestamp || p.deliveryWindow == 0
                || p.royaltyWindow == 0 || p.keyHolder == address(0)
                || uint256(p.requesterBps) + p.developerBps + p.auditorBps > BPS
                || (auditors == 0 && p.auditorBps != 0)
        ) revert ModelMarketInvalidListing();
        listingId = ++_listingCount;
        ListingInfo storage l = _listings[listingId];
        l.taskId = p.taskId;
        l.token = pr.token;
        l.requester = pr.requester;
        l.developer = _submissions[p.taskId][p.submission].developer;
        l.keyHolder = p.keyHolder;
        l.versions = p.versions;
        l.version = p.version;
        l.price = p.price;
        l.expiry = p.expiry;
        l.deliveryWindow = p.deliveryWindow;
        l.royaltyDeadline = p.expiry + p.deliveryWindow + p.royaltyWindow;
        l.requesterBps = p.requesterBps;
        l.developerBps = p.developerBps;
        l.auditorBps = p.auditorBps;
        l.auditorCount = auditors;
        l.submission = p.submission;
        l.payoutRoot = t.payoutRoot;
        l.totalScore = pr.totalScore;
        emit Listed(listingId, p.taskId, p.submission, p.price, p.licenseCid, p.expiry);
    }

    /// @inheritdoc IModelMarket
    function buy(uint256 listingId, bytes32 buyerKey) external nonReentrant returns (uint256) {
        return _buy(listingId, buyerKey);
    }

    /// @inheritdoc IModelMarket
    // The permit is a call to the listing's token before the sale's writes; every function that
    // writes a listing or a sale is nonReentrant, so no re-entry reaches that state.
    // slither-disable-next-line reentrancy-no-eth
    function buyWithPermit(uint256 listingId, bytes32 buyerKey, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
        returns (uint256)
    {
        ListingInfo storage l = _listing(listingId);
        // A permit front-run by someone else leaves the allowance in place: go on if it is there.
        try IERC20Permit(address(l.token)).permit(msg.sender, address(this), l.price, deadline, v, r, s) {} catch {}
        return _buy(listingId, buyerKey);
    }

    /// @inheritdoc IModelMarket
    function deliver(uint256 saleId, bytes calldata sealedKey) external nonReentrant {
        SaleInfo storage s = _sale(saleId);
        ListingInfo storage l = _listings[s.listingId];
        if (msg.sender != l.keyHolder) revert ModelMarketNotKeyHolder(msg.sender);
        if (s.status != SaleStatus.Paid) revert ModelMarketWrongSaleStatus(saleId, s.status);
        if (block.timestamp > s.deliverBy) revert ModelMarketDeadlinePassed(s.deliverBy);
        if (sealedKey.length == 0 || sealedKey.length > MAX_SEALED_KEY) {
            revert ModelMarketBadSealedKeyLength(sealedKey.length, MAX_SEALED_KEY);
        }
        uint256 price = s.price;
        bytes32 sealedKeyHash = keccak256(sealedKey);
        s.status = SaleStatus.Delivered;
        s.sealedKeyHash = sealedKeyHash;
        l.pending -= price;
        l.gross += price;
        // Each sale is split on its own price, so every pool only grows (claims never underflow);
        // the requester's share is the sale's remainder, so the pools sum to gross exactly.
        uint256 developerCut = price * l.developerBps / BPS;
        uint256 auditorCut = price * l.auditorBps / BPS;
        uint256 trainerCut = price * (BPS - l.requesterBps - l.developerBps - l.auditorBps) / BPS;
        l.developerPool += developerCut;
        l.auditorPool += auditorCut;
        l.trainerPool += trainerCut;
        // A withdrawal not yet settled here: its trainer's score is unknown, so the cut waits.
        IModelVersions versions = l.versions;
        if (address(versions) != address(0)) {
            uint32 withdrawals = versions.withdrawalCount(l.taskId);
            Royalty storage r = _royalties[s.listingId];
            if (withdrawals != r.settled) {
                // ≤ Σ prices of the listing's sales, each ≤ MAX_PRICE (2^128): far below 2^224
                r.held += uint224(trainerCut);
                _heldAt[s.listingId][withdrawals] += trainerCut;
            }
        }
        emit Delivered(saleId, sealedKeyHash, sealedKey);
    }

    /// @inheritdoc IModelMarket
    function refund(uint256 saleId) external nonReentrant {
        SaleInfo storage s = _sale(saleId);
        if (msg.sender != s.buyer) revert ModelMarketNotBuyer(msg.sender);
        if (s.status != SaleStatus.Paid) revert ModelMarketWrongSaleStatus(saleId, s.status);
        if (block.timestamp <= s.deliverBy) revert ModelMarketTooEarly(s.deliverBy + 1);
        ListingInfo storage l = _listings[s.listingId];
        uint256 price = s.price;
        s.status = SaleStatus.Refunded;
        l.pending -= price;
        emit Refunded(saleId, price);
        l.token.safeTransfer(msg.sender, price);
    }

    /// @inheritdoc IModelMarket
    function claimRoyalty(
        uint256 listingId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external nonReentrant {
        ListingInfo storage l = _listing(listingId);
        if (block.timestamp > l.royaltyDeadline) revert ModelMarketDeadlinePassed(l.royaltyDeadline);
        if (
            flags != 0
                || !MerkleProof.verifyCalldata(proof, l.payoutRoot, _leaf(l.taskId, index, account, amount, scorePpm, flags))
        ) revert ModelMarketInvalidRoyaltyClaim(listingId, index);
        uint256 pool = l.trainerPool;
        uint256 accrued = _accrued(listingId, l, index, scorePpm);
        uint256 paid = _royaltyPaid[listingId][index];
        // Folding an epoch rounds down once more, so an accrual may dip a wei below what was paid.
        if (accrued <= paid) revert ModelMarketNothingDue();
        uint256 due = accrued - paid;
        // A total score below the leaves' true sum cannot take more than the trainers' pool.
        if (l.trainerClaimed + due > pool) revert ModelMarketInvalidRoyaltyClaim(listingId, index);
        _royaltyPaid[listingId][index] = accrued;
        l.trainerClaimed += due;
        emit RoyaltyClaimed(listingId, index, account, due);
        l.token.safeTransfer(account, due);
    }

    /// @inheritdoc IModelMarket
    function claimShare(uint256 listingId) external nonReentrant {
        ListingInfo storage l = _listing(listingId);
        uint256 due = 0;
        if (msg.sender == l.requester) {
            uint256 owed = l.gross - l.trainerPool - l.developerPool - l.auditorPool;
            due += owed - l.requesterPaid;
            l.requesterPaid = owed;
        }
        if (msg.sender == l.developer) {
            uint256 owed = l.developerPool;
            due += owed - l.developerPaid;
            l.developerPaid = owed;
        }
        if (_verdicts[l.taskId][l.submission][msg.sender] == VERDICT_APPROVE) {
            uint256 owed = l.auditorPool / l.auditorCount;
            due += owed - _auditorPaid[listingId][msg.sender];
            _auditorPaid[listingId][msg.sender] = owed;
        }
        if (due == 0) revert ModelMarketNothingDue();
        emit ShareClaimed(listingId, msg.sender, due);
        l.token.safeTransfer(msg.sender, due);
    }

    /// @inheritdoc IModelMarket
    function sweepRoyalties(uint256 listingId) external nonReentrant {
        ListingInfo storage l = _listing(listingId);
        if (block.timestamp <= l.royaltyDeadline) revert ModelMarketTooEarly(l.royaltyDeadline + 1);
        if (l.swept) revert ModelMarketAlreadySwept(listingId);
        uint256 remainder = l.trainerPool - l.trainerClaimed;
        // The auditors' split leaves < auditorCount wei that no auditor can claim; gross is final now.
        uint256 dust = l.auditorCount == 0 ? 0 : l.auditorPool % l.auditorCount;
        l.swept = true;
        l.trainerClaimed += remainder;
        remainder += dust;
        emit RoyaltiesSwept(listingId, remainder);
        if (remainder != 0) l.token.safeTransfer(l.requester, remainder);
    }

    /// @inheritdoc IModelMarket
    function settleWithdrawal(
        uint256 listingId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags,
        bytes32[] calldata proof
    ) external {
        ListingInfo storage l = _listing(listingId);
        bytes32 leaf = _leaf(l.taskId, index, account, amount, scorePpm, flags);
        if (!MerkleProof.verifyCalldata(proof, l.payoutRoot, leaf)) revert ModelMarketInvalidRoyaltyClaim(listingId, index);
        IModelVersions versions = l.versions;
        Royalty storage r = _royalties[listingId];
        uint32 settled = r.settled + 1; // one per withdrawn trainer: bounded by the task's trainers
        // Withdrawals settle in their order, each once, so every held cut knows who shares it.
        if (address(versions) == address(0) || versions.withdrawalOf(l.taskId, account) != settled) {
            revert ModelMarketNoWithdrawalToSettle(listingId, account);
        }
        uint256 active = l.totalScore - r.withdrawnScore;
        // A total score below the leaves' true sum cannot make the weights negative.
        if (scorePpm > active) revert ModelMarketInvalidRoyaltyClaim(listingId, index);
        uint256 pool = l.trainerPool;
        // Close the epoch: what was delivered before this withdrawal was shared over `active`.
        if (active != 0) r.perScore += (pool - r.epochStart - r.held) * WAD / active;
        _stoppedAt[listingId][index] = r.perScore + 1;
        r.withdrawnScore += scorePpm;
        r.settled = settled;
        // The cuts delivered after this withdrawal and before the next open the next epoch, shared
        // over the scores still active (the next withdrawn trainer's too: it had not left yet).
        uint224 held = r.held;
        r.epochStart = pool - held;
        r.held = held - uint224(_heldAt[listingId][settled]); // a part of `held`
        emit WithdrawalSettled(listingId, index, account, scorePpm);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc IModelMarket
    function taskMarket() external view returns (ITaskMarket) {
        return _market;
    }

    /// @inheritdoc IModelMarket
    function roleOf(address account) external view returns (Role) {
        return _roles[account];
    }

    /// @inheritdoc IModelMarket
    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _keys[account];
    }

    /// @inheritdoc IModelMarket
    function product(uint256 taskId) external view returns (ProductInfo memory) {
        return _products[taskId];
    }

    /// @inheritdoc IModelMarket
    function submission(uint256 taskId, uint8 sub) external view returns (SubmissionInfo memory info) {
        Submission storage s = _submissions[taskId][sub];
        info.developer = s.developer;
        info.digest = s.digest;
        info.commitDeadline = s.commitDeadline;
        info.revealDeadline = s.revealDeadline;
        info.commitCount = s.commitCount;
        info.revealCount = s.revealCount;
        info.decided = s.decided;
        info.passed = s.passed;
        info.resolved = _resolved(s);
        info.scorePpm = s.scorePpm;
        info.approvals = s.approvals;
        info.rejections = s.rejections;
        info.approved = sub != 0 && _products[taskId].approvedSubmission == sub;
    }

    /// @inheritdoc IModelMarket
    function evaluationOf(uint256 taskId, uint8 sub, address oracle)
        external
        view
        returns (bool committed, bool revealed, bool settled, uint32 scorePpm)
    {
        EvalStake storage e = _evalStakes[taskId][sub][oracle];
        return (_evalCommits[taskId][sub][oracle] != bytes32(0), _evalRevealed[taskId][sub][oracle], e.settled, e.scorePpm);
    }

    /// @inheritdoc IModelMarket
    function approvingAuditors(uint256 taskId, uint8 sub) external view returns (address[] memory) {
        return _approvers[taskId][sub];
    }

    /// @inheritdoc IModelMarket
    function listing(uint256 listingId) external view returns (ListingInfo memory) {
        return _listings[listingId];
    }

    /// @inheritdoc IModelMarket
    function sale(uint256 saleId) external view returns (SaleInfo memory) {
        return _sales[saleId];
    }

    /// @inheritdoc IModelMarket
    function trainerGross(uint256 listingId) external view returns (uint256) {
        return _listings[listingId].trainerPool;
    }

    /// @inheritdoc IModelMarket
    function royaltyOf(uint256 listingId, uint256 index, uint32 scorePpm)
        external
        view
        returns (uint256 accrued, uint256 paid)
    {
        ListingInfo storage l = _listings[listingId];
        accrued = l.totalScore == 0 ? 0 : _accrued(listingId, l, index, scorePpm);
        paid = _royaltyPaid[listingId][index];
    }

    /// @inheritdoc IModelMarket
    function evaluationCommitment(uint256 taskId, uint8 sub, address oracle, uint32 scorePpm, bytes32 salt)
        external
        view
        returns (bytes32)
    {
        return _evaluationCommitment(taskId, sub, oracle, scorePpm, salt);
    }

    /// @inheritdoc IModelMarket
    function attestationDigest(uint256 taskId, bytes32 modelDigest, string calldata reportCid, bool approved)
        external
        view
        returns (bytes32)
    {
        return _attestationDigest(taskId, modelDigest, reportCid, approved);
    }

    // --- internals ------------------------------------------------------------------------------

    function _buy(uint256 listingId, bytes32 buyerKey) private returns (uint256 saleId) {
        ListingInfo storage l = _listing(listingId);
        if (block.timestamp > l.expiry) revert ModelMarketListingExpired(listingId, l.expiry);
        if (buyerKey == bytes32(0)) revert ModelMarketZeroHash();
        IModelVersions versions = l.versions;
        if (address(versions) != address(0) && !versions.isSellable(l.taskId, l.version)) {
            revert ModelMarketVersionNotSellable(l.taskId, l.version);
        }
        uint256 price = l.price;
        uint64 deliverBy = uint64(block.timestamp) + l.deliveryWindow;
        saleId = ++_saleCount;
        SaleInfo storage s = _sales[saleId];
        s.listingId = listingId;
        s.buyer = msg.sender;
        s.deliverBy = deliverBy;
        s.status = SaleStatus.Paid;
        s.buyerKey = buyerKey;
        s.price = price;
        l.pending += price;
        l.sales += 1;
        emit Purchased(saleId, listingId, msg.sender, buyerKey, price, deliverBy);
        _pull(l.token, msg.sender, price);
    }

    function _addSubmission(uint256 taskId, ProductInfo storage pr, string calldata modelCid, bytes32 digest)
        private
        returns (uint8 sub)
    {
        sub = ++pr.submissionCount;
        Submission storage s = _submissions[taskId][sub];
        uint64 commitDeadline = uint64(block.timestamp) + pr.evalCommitDuration;
        s.developer = msg.sender;
        s.digest = digest;
        s.commitDeadline = commitDeadline;
        s.revealDeadline = commitDeadline + pr.evalRevealDuration;
        _developerOf[taskId][msg.sender] = true;
        emit ModelSubmitted(taskId, sub, msg.sender, modelCid, digest, commitDeadline);
    }

    function _checkIndependent(uint256 taskId, ProductInfo storage pr, address auditor) private view {
        if (
            auditor == pr.requester || _developerOf[taskId][auditor] || _market.isTrainer(taskId, auditor)
                || _market.isOracle(taskId, auditor)
        ) revert ModelMarketConflictOfInterest(taskId, auditor);
    }

    /// @dev The lowest-numbered passing submission, or 0; reverts while an earlier one is open.
    function _firstPassing(uint256 taskId, ProductInfo storage pr) private view returns (uint8) {
        uint8 count = pr.submissionCount;
        for (uint8 i = 1; i <= count; ++i) {
            Submission storage s = _submissions[taskId][i];
            if (s.passed) return i;
            if (!_resolved(s)) revert ModelMarketNoBounty(taskId);
        }
        return 0;
    }

    function _allResolvedNonePassed(uint256 taskId, ProductInfo storage pr) private view returns (bool) {
        uint8 count = pr.submissionCount;
        for (uint8 i = 1; i <= count; ++i) {
            Submission storage s = _submissions[taskId][i];
            if (s.passed || !_resolved(s)) return false;
        }
        return true;
    }

    function _resolved(Submission storage s) private view returns (bool) {
        return s.decided || (s.revealDeadline != 0 && block.timestamp > s.revealDeadline);
    }

    /// @dev A leaf's royalty entitlement: the closed epochs by `perScore` (frozen at its settlement
    ///      for a withdrawn trainer), plus its score's part of the open epoch while it is active.
    function _accrued(uint256 listingId, ListingInfo storage l, uint256 index, uint32 scorePpm)
        private
        view
        returns (uint256)
    {
        Royalty storage r = _royalties[listingId];
        // Nothing settled yet (the usual case, one storage read): no leaf is stopped, no epoch closed.
        if (r.settled == 0) return (l.trainerPool - r.held) * scorePpm / l.totalScore;
        uint256 stoppedAt = _stoppedAt[listingId][index];
        if (stoppedAt != 0) return (stoppedAt - 1) * scorePpm / WAD;
        uint256 active = l.totalScore - r.withdrawnScore;
        uint256 open = active == 0 ? 0 : (l.trainerPool - r.epochStart - r.held) * scorePpm / active;
        return r.perScore * scorePpm / WAD + open;
    }

    /// @dev The one place a payout leaf is hashed: through PayoutLeaf, in the domain TaskMarket
    ///      finalized it in (this chain, the TaskMarket the root was read from, the task).
    function _leaf(uint256 taskId, uint256 index, address account, uint256 amount, uint32 scorePpm, uint256 flags)
        private
        view
        returns (bytes32)
    {
        return PayoutLeaf.hash(block.chainid, address(_market), taskId, index, account, amount, scorePpm, flags);
    }

    function _evaluationCommitment(uint256 taskId, uint8 sub, address oracle, uint32 scorePpm, bytes32 salt)
        private
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), taskId, sub, oracle, scorePpm, salt));
    }

    function _attestationDigest(uint256 taskId, bytes32 modelDigest, string calldata reportCid, bool approved)
        private
        view
        returns (bytes32)
    {
        bytes32 domain = keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
        return MessageHashUtils.toTypedDataHash(
            domain, keccak256(abi.encode(ATTESTATION_TYPEHASH, taskId, modelDigest, keccak256(bytes(reportCid)), approved))
        );
    }

    /// @dev The task once its payout root is final: Finalized with claims open, or Closed.
    function _finalTask(uint256 taskId) private view returns (ITaskMarket.TaskInfo memory t) {
        t = _market.task(taskId);
        bool open = t.phase == ITaskMarket.Phase.Finalized && block.timestamp >= t.claimsOpenAt;
        // A task closed without a final root (scoring failed) has no leaves to pay royalties on.
        if ((!open && t.phase != ITaskMarket.Phase.Closed) || t.payoutRoot == bytes32(0)) {
            revert ModelMarketWrongTaskPhase(taskId, t.phase);
        }
    }

    function _configured(uint256 taskId) private view returns (ProductInfo storage pr) {
        pr = _products[taskId];
        if (!pr.configured) revert ModelMarketNotConfigured(taskId);
    }

    function _submission(uint256 taskId, uint8 sub) private view returns (Submission storage s) {
        s = _submissions[taskId][sub];
        if (sub == 0 || s.developer == address(0)) revert ModelMarketUnknownSubmission(taskId, sub);
    }

    function _listing(uint256 listingId) private view returns (ListingInfo storage l) {
        l = _listings[listingId];
        if (l.price == 0) revert ModelMarketUnknownListing(listingId);
    }

    function _sale(uint256 saleId) private view returns (SaleInfo storage s) {
        s = _sales[saleId];
        if (s.status == SaleStatus.None) revert ModelMarketUnknownSale(saleId);
    }

    /// @dev Pull `amount` and insist the balance grew by exactly that (no fee-on-transfer tokens).
    function _pull(IERC20 token, address from, uint256 amount) private {
        if (amount == 0) return;
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(from, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert ModelMarketFeeOnTransfer(amount, received);
    }
}
