// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IEfficacyMarket} from "./interfaces/IEfficacyMarket.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";

/// @title EfficacyMarket
/// @notice Pay data owners per ppm of measured improvement of a model owner's model (see
///         IEfficacyMarket). No owner or admin; the only loop runs over the committee (≤ 16) at creation.
contract EfficacyMarket is IEfficacyMarket, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Largest committee.
    uint256 public constant MAX_COMMITTEE = 16;
    /// @notice Most data owners per offer (bounds the off-chain Shapley valuation, not a loop here).
    uint32 public constant MAX_OWNERS = 64;

    uint256 private constant BPS = 10_000;

    struct Offer {
        address owner;
        uint16 quorumBps;
        uint32 maxOwners;
        uint32 ownerCount;
        bool refunded;
        bool final_;
        IERC20 token;
        uint64 enrollDeadline;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint64 claimDeadline;
        uint256 cap;
        uint256 pricePerPpm;
        uint256 paid;
        uint256 committeeStake;
        bytes32 modelDigest;
        bytes32 testSetCommitment;
        bytes32 payoutRoot;
    }

    IParticipantRegistry private immutable _registry;
    mapping(uint256 offerId => Offer) private _offers;
    mapping(uint256 offerId => mapping(address oracle => uint256)) private _weights;
    mapping(uint256 offerId => mapping(address oracle => bytes32)) private _commits;
    mapping(uint256 offerId => mapping(address oracle => bool)) private _revealed;
    mapping(uint256 offerId => mapping(bytes32 root => uint256)) private _rootStake;
    mapping(uint256 offerId => mapping(address account => bool)) private _enrolled;
    mapping(uint256 offerId => mapping(uint256 index => bool)) private _claimed;
    uint256 private _offerCount;

    /// @param registry_ The participant registry (roles and stake of oracles and data owners).
    constructor(IParticipantRegistry registry_) {
        _registry = registry_;
    }

    /// @inheritdoc IEfficacyMarket
    function createOffer(OfferParams calldata p) external nonReentrant returns (uint256 offerId) {
        uint256 n = p.oracles.length;
        if (
            address(p.token) == address(0) || p.cap == 0 || p.pricePerPpm == 0 || p.modelDigest == bytes32(0)
                || p.testSetCommitment == bytes32(0) || n == 0 || n > MAX_COMMITTEE || p.quorumBps <= 5000
                || p.quorumBps > BPS || p.maxOwners == 0 || p.maxOwners > MAX_OWNERS
                || p.enrollDeadline <= block.timestamp || p.commitDuration == 0 || p.revealDuration == 0
                || p.claimDuration == 0 || p.cap > type(uint128).max || p.pricePerPpm > type(uint128).max
        ) revert EfficacyMarketInvalidParams();
        offerId = ++_offerCount;
        Offer storage o = _offers[offerId];
        o.owner = msg.sender;
        o.token = p.token;
        o.cap = p.cap;
        o.pricePerPpm = p.pricePerPpm;
        o.modelDigest = p.modelDigest;
        o.testSetCommitment = p.testSetCommitment;
        o.quorumBps = p.quorumBps;
        o.maxOwners = p.maxOwners;
        o.enrollDeadline = p.enrollDeadline;
        o.commitDeadline = p.enrollDeadline + p.commitDuration;
        o.revealDeadline = o.commitDeadline + p.revealDuration;
        o.claimDeadline = o.revealDeadline + p.claimDuration;
        uint256 stake = 0;
        for (uint256 i; i < n; ++i) {
            address oracle = p.oracles[i];
            if (_registry.roleOf(oracle) != IParticipantRegistry.Role.Oracle) {
                revert EfficacyMarketWrongRole(oracle, IParticipantRegistry.Role.Oracle);
            }
            if (oracle == msg.sender || _weights[offerId][oracle] != 0) revert EfficacyMarketConflictOfInterest(oracle);
            uint256 w = _registry.stakeOf(oracle);
            if (w == 0) revert EfficacyMarketInvalidParams();
            _weights[offerId][oracle] = w;
            stake += w;
        }
        o.committeeStake = stake;
        emit OfferCreated(offerId, msg.sender, p.token, p.cap, p.pricePerPpm, p.modelCid, p.testSetCommitment);
        uint256 before = p.token.balanceOf(address(this));
        p.token.safeTransferFrom(msg.sender, address(this), p.cap);
        uint256 received = p.token.balanceOf(address(this)) - before;
        if (received != p.cap) revert EfficacyMarketFeeOnTransfer(p.cap, received);
    }

    /// @inheritdoc IEfficacyMarket
    function enroll(uint256 offerId, string calldata dataCid, bytes32 dataDigest) external {
        Offer storage o = _offer(offerId);
        if (block.timestamp > o.enrollDeadline) revert EfficacyMarketOutsideWindow(0, o.enrollDeadline);
        if (_registry.roleOf(msg.sender) != IParticipantRegistry.Role.Trainer) {
            revert EfficacyMarketWrongRole(msg.sender, IParticipantRegistry.Role.Trainer);
        }
        if (msg.sender == o.owner || _enrolled[offerId][msg.sender]) revert EfficacyMarketConflictOfInterest(msg.sender);
        if (dataDigest == bytes32(0)) revert EfficacyMarketInvalidParams();
        if (o.ownerCount >= o.maxOwners) revert EfficacyMarketFull(o.maxOwners);
        _enrolled[offerId][msg.sender] = true;
        o.ownerCount += 1;
        emit OwnerEnrolled(offerId, msg.sender, dataCid, dataDigest);
    }

    /// @inheritdoc IEfficacyMarket
    function commitValuation(uint256 offerId, bytes32 commitment) external {
        Offer storage o = _offer(offerId);
        if (_weights[offerId][msg.sender] == 0) revert EfficacyMarketNotCommitteeMember(msg.sender);
        if (block.timestamp <= o.enrollDeadline || block.timestamp > o.commitDeadline) {
            revert EfficacyMarketOutsideWindow(o.enrollDeadline + 1, o.commitDeadline);
        }
        if (commitment == bytes32(0) || _commits[offerId][msg.sender] != bytes32(0)) {
            revert EfficacyMarketBadVote(msg.sender);
        }
        _commits[offerId][msg.sender] = commitment;
        emit ValuationCommitted(offerId, msg.sender);
    }

    /// @inheritdoc IEfficacyMarket
    function revealValuation(uint256 offerId, bytes32 root, string calldata reportCid, bytes32 salt) external {
        Offer storage o = _offer(offerId);
        if (block.timestamp <= o.commitDeadline || block.timestamp > o.revealDeadline) {
            revert EfficacyMarketOutsideWindow(o.commitDeadline + 1, o.revealDeadline);
        }
        bytes32 committed = _commits[offerId][msg.sender];
        if (
            committed == bytes32(0) || _revealed[offerId][msg.sender] || root == bytes32(0)
                || committed != _valuationCommitment(offerId, msg.sender, root, reportCid, salt)
        ) revert EfficacyMarketBadVote(msg.sender);
        _revealed[offerId][msg.sender] = true;
        uint256 stake = _rootStake[offerId][root] + _weights[offerId][msg.sender];
        _rootStake[offerId][root] = stake;
        emit ValuationRevealed(offerId, msg.sender, root, reportCid);
        if (!o.final_ && stake * BPS >= uint256(o.quorumBps) * o.committeeStake) {
            o.final_ = true;
            o.payoutRoot = root;
            emit ValuationFinalized(offerId, root);
        }
    }

    /// @inheritdoc IEfficacyMarket
    function claim(
        uint256 offerId,
        uint256 index,
        address account,
        uint32 shapleyPpm,
        uint256 amount,
        bytes32[] calldata proof
    ) external nonReentrant {
        Offer storage o = _offer(offerId);
        if (!o.final_) revert EfficacyMarketNotFinal(offerId);
        if (block.timestamp > o.claimDeadline) revert EfficacyMarketOutsideWindow(0, o.claimDeadline);
        bytes32 leaf = keccak256(
            bytes.concat(keccak256(abi.encode(block.chainid, address(this), offerId, index, account, shapleyPpm, amount)))
        );
        uint256 paid = o.paid + amount;
        if (
            _claimed[offerId][index] || !_enrolled[offerId][account] || amount == 0
                || amount > o.pricePerPpm * shapleyPpm || paid > o.cap
                || !MerkleProof.verifyCalldata(proof, o.payoutRoot, leaf)
        ) revert EfficacyMarketInvalidClaim(offerId, index);
        _claimed[offerId][index] = true;
        o.paid = paid;
        emit EfficacyClaimed(offerId, index, account, shapleyPpm, amount);
        o.token.safeTransfer(account, amount);
    }

    /// @inheritdoc IEfficacyMarket
    function refund(uint256 offerId) external nonReentrant {
        Offer storage o = _offer(offerId);
        bool due = block.timestamp > o.claimDeadline || (!o.final_ && block.timestamp > o.revealDeadline);
        if (!due || o.refunded) revert EfficacyMarketNotRefundable(offerId);
        uint256 amount = o.cap - o.paid;
        o.refunded = true;
        o.paid = o.cap;
        emit OfferRefunded(offerId, amount);
        if (amount != 0) o.token.safeTransfer(o.owner, amount);
    }

    /// @inheritdoc IEfficacyMarket
    function offer(uint256 offerId) external view returns (OfferInfo memory info) {
        Offer storage o = _offers[offerId];
        info.owner = o.owner;
        info.token = o.token;
        info.cap = o.cap;
        info.pricePerPpm = o.pricePerPpm;
        info.paid = o.paid;
        info.modelDigest = o.modelDigest;
        info.testSetCommitment = o.testSetCommitment;
        info.payoutRoot = o.payoutRoot;
        info.committeeStake = o.committeeStake;
        info.quorumBps = o.quorumBps;
        info.maxOwners = o.maxOwners;
        info.ownerCount = o.ownerCount;
        info.enrollDeadline = o.enrollDeadline;
        info.commitDeadline = o.commitDeadline;
        info.revealDeadline = o.revealDeadline;
        info.claimDeadline = o.claimDeadline;
        info.refunded = o.refunded;
    }

    /// @inheritdoc IEfficacyMarket
    function isEnrolled(uint256 offerId, address account) external view returns (bool) {
        return _enrolled[offerId][account];
    }

    /// @inheritdoc IEfficacyMarket
    function valuationCommitment(uint256 offerId, address oracle, bytes32 root, string calldata reportCid, bytes32 salt)
        external
        view
        returns (bytes32)
    {
        return _valuationCommitment(offerId, oracle, root, reportCid, salt);
    }

    function _valuationCommitment(uint256 offerId, address oracle, bytes32 root, string calldata reportCid, bytes32 salt)
        private
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), offerId, oracle, root, keccak256(bytes(reportCid)), salt));
    }

    function _offer(uint256 offerId) private view returns (Offer storage o) {
        o = _offers[offerId];
        if (o.owner == address(0)) revert EfficacyMarketUnknownOffer(offerId);
    }
}
