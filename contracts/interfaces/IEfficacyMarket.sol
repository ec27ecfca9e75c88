// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IParticipantRegistry} from "./IParticipantRegistry.sol";

/// @title IEfficacyMarket
/// @notice Model-data efficacy pricing: a model owner escrows a cap and pays each enrolled data
///         owner `pricePerPpm` per ppm of the measured improvement its data brings to the owner's
///         model on the owner's committed test set. A committee (registered oracles, weighted by
///         their registry stake when the offer is created) values the improvement off-chain
///         (Shapley across the enrolled owners), and commits the payout table's Merkle root by
///         commit-reveal; the root backed by a quorum of committee stake pays. The contract checks
///         each leaf against the price rule (`amount <= pricePerPpm * shapleyPpm`) and the cap.
/// @dev Schedule, all from creation: enrolment until `enrollDeadline`, commits for
///      `commitDuration`, reveals for `revealDuration`, claims for `claimDuration`; then the owner
///      takes back what is left. Without a quorum the whole escrow returns to the owner. Oracle stake
///      is read, not locked or slashed, by this contract (left to a later change).
interface IEfficacyMarket {
    /// @notice What a model owner fixes when posting an offer.
    struct OfferParams {
        IERC20 token;
        uint256 cap;
        uint256 pricePerPpm;
        string modelCid;
        bytes32 modelDigest;
        bytes32 testSetCommitment;
        address[] oracles;
        uint16 quorumBps;
        uint32 maxOwners;
        uint64 enrollDeadline;
        uint64 commitDuration;
        uint64 revealDuration;
        uint64 claimDuration;
    }

    /// @notice An offer, as returned by `offer`.
    struct OfferInfo {
        address owner;
        IERC20 token;
        uint256 cap;
        uint256 pricePerPpm;
        uint256 paid;
        bytes32 modelDigest;
        bytes32 testSetCommitment;
        bytes32 payoutRoot;
        uint256 committeeStake;
        uint16 quorumBps;
        uint32 maxOwners;
        uint32 ownerCount;
        uint64 enrollDeadline;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint64 claimDeadline;
        bool refunded;
    }

    /// @notice Thrown when an offer's parameters are out of range.
    error EfficacyMarketInvalidParams();
    /// @notice Thrown when no offer has this id.
    /// @param offerId The id.
    error EfficacyMarketUnknownOffer(uint256 offerId);
    /// @notice Thrown when an address lacks the registry role the action needs.
    /// @param account The address.
    /// @param required The role.
    error EfficacyMarketWrongRole(address account, IParticipantRegistry.Role required);
    /// @notice Thrown when an address would hold two roles in one offer, or appears twice.
    /// @param account The address.
    error EfficacyMarketConflictOfInterest(address account);
    /// @notice Thrown when the action is outside its time window.
    /// @param notBefore Start of the window.
    /// @param notAfter End of the window.
    error EfficacyMarketOutsideWindow(uint64 notBefore, uint64 notAfter);
    /// @notice Thrown when the offer has `maxOwners` data owners.
    /// @param maxOwners The limit.
    error EfficacyMarketFull(uint32 maxOwners);
    /// @notice Thrown when the caller is not on the offer's committee.
    /// @param account The caller.
    error EfficacyMarketNotCommitteeMember(address account);
    /// @notice Thrown when an oracle commits twice, reveals without or against its commitment, or twice.
    /// @param oracle The oracle.
    error EfficacyMarketBadVote(address oracle);
    /// @notice Thrown when claiming before a root reached quorum.
    /// @param offerId The offer.
    error EfficacyMarketNotFinal(uint256 offerId);
    /// @notice Thrown when a leaf does not prove, was claimed, is not an enrolled owner's, breaks
    ///         the price rule or the cap.
    /// @param offerId The offer.
    /// @param index The leaf's index.
    error EfficacyMarketInvalidClaim(uint256 offerId, uint256 index);
    /// @notice Thrown when the owner's refund is not due yet or was taken.
    /// @param offerId The offer.
    error EfficacyMarketNotRefundable(uint256 offerId);
    /// @notice Thrown when the contract received fewer tokens than it pulled.
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error EfficacyMarketFeeOnTransfer(uint256 expected, uint256 received);

    /// @notice Emitted when an offer was posted and its cap escrowed.
    /// @param offerId The offer.
    /// @param owner The model owner.
    /// @param token The token.
    /// @param cap Tokens escrowed.
    /// @param pricePerPpm Tokens per ppm of improvement.
    /// @param modelCid CID of the owner's model (sealed to the committee).
    /// @param testSetCommitment sha256 of the owner's test set.
    event OfferCreated(
        uint256 indexed offerId,
        address indexed owner,
        IERC20 token,
        uint256 cap,
        uint256 pricePerPpm,
        string modelCid,
        bytes32 testSetCommitment
    );
    /// @notice Emitted when a data owner enrolled.
    /// @param offerId The offer.
    /// @param account The data owner.
    /// @param dataCid CID of its data sealed to the committee.
    /// @param dataDigest sha256 of its data.
    event OwnerEnrolled(uint256 indexed offerId, address indexed account, string dataCid, bytes32 dataDigest);
    /// @notice Emitted when an oracle committed.
    /// @param offerId The offer.
    /// @param oracle The oracle.
    event ValuationCommitted(uint256 indexed offerId, address indexed oracle);
    /// @notice Emitted when an oracle revealed.
    /// @param offerId The offer.
    /// @param oracle The oracle.
    /// @param root The payout root.
    /// @param reportCid CID of the valuation report.
    event ValuationRevealed(uint256 indexed offerId, address indexed oracle, bytes32 root, string reportCid);
    /// @notice Emitted when a root reached quorum.
    /// @param offerId The offer.
    /// @param root The payout root.
    event ValuationFinalized(uint256 indexed offerId, bytes32 root);
    /// @notice Emitted when a data owner was paid.
    /// @param offerId The offer.
    /// @param index The leaf's index.
    /// @param account The data owner.
    /// @param shapleyPpm Its Shapley share of the improvement, in ppm of the metric.
    /// @param amount Tokens paid.
    event EfficacyClaimed(uint256 indexed offerId, uint256 index, address indexed account, uint32 shapleyPpm, uint256 amount);
    /// @notice Emitted when the owner took back the unpaid escrow.
    /// @param offerId The offer.
    /// @param amount Tokens returned.
    event OfferRefunded(uint256 indexed offerId, uint256 amount);

    /// @notice Post an offer and escrow `p.cap` (approve first). Oracles must be registered
    ///         Oracles; their registry stake now is their weight.
    /// @param p The parameters.
    /// @return offerId The new offer.
    function createOffer(OfferParams calldata p) external returns (uint256 offerId);

    /// @notice Enrol as a data owner (a registered Trainer) before the enrolment deadline.
    /// @param offerId The offer.
    /// @param dataCid CID of the data sealed to the committee.
    /// @param dataDigest sha256 of the data.
    function enroll(uint256 offerId, string calldata dataCid, bytes32 dataDigest) external;

    /// @notice Commit to a payout root during the commit window (committee, once).
    /// @param offerId The offer.
    /// @param commitment `valuationCommitment(offerId, oracle, root, reportCid, salt)`.
    function commitValuation(uint256 offerId, bytes32 commitment) external;

    /// @notice Reveal during the reveal window; the first root backed by the quorum is final.
    /// @param offerId The offer.
    /// @param root The payout root.
    /// @param reportCid CID of the valuation report.
    /// @param salt The commitment's salt.
    function revealValuation(uint256 offerId, bytes32 root, string calldata reportCid, bytes32 salt) external;

    /// @notice Pay one leaf `(chainId, this, offerId, index, account, shapleyPpm, amount)` (anyone
    ///         may call) after the root is final and before the claim deadline.
    /// @param offerId The offer.
    /// @param index The leaf's index.
    /// @param account The data owner.
    /// @param shapleyPpm Its Shapley share of the improvement (ppm).
    /// @param amount Tokens owed.
    /// @param proof The Merkle proof.
    function claim(
        uint256 offerId,
        uint256 index,
        address account,
        uint32 shapleyPpm,
        uint256 amount,
        bytes32[] calldata proof
    ) external;

    /// @notice Return the unpaid escrow to the owner: after the claim deadline, or after the reveal
    ///         deadline when no root reached quorum.
    /// @param offerId The offer.
    function refund(uint256 offerId) external;

    /// @notice An offer.
    /// @param offerId The offer.
    /// @return The offer.
    function offer(uint256 offerId) external view returns (OfferInfo memory);

    /// @notice Whether `account` enrolled in the offer.
    /// @param offerId The offer.
    /// @param account The address.
    /// @return True if enrolled.
    function isEnrolled(uint256 offerId, address account) external view returns (bool);

    /// @notice The commitment an oracle makes.
    /// @param offerId The offer.
    /// @param oracle The oracle.
    /// @param root The payout root.
    /// @param reportCid The report's CID.
    /// @param salt A secret random value.
    /// @return `keccak256(abi.encode(block.chainid, this, offerId, oracle, root, keccak256(bytes(reportCid)), salt))`.
    function valuationCommitment(uint256 offerId, address oracle, bytes32 root, string calldata reportCid, bytes32 salt)
        external
        view
        returns (bytes32);
}
