// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IParticipantRegistry
/// @notice Who takes part in the marketplace: one primary role per address, an X25519 public key
///         for encrypted envelopes, a stake in the registry's token (with an unbonding delay), and a
///         reputation. Authorized markets *reserve* part of a stake for one task the staker accepted
///         (an oracle's seat, a trainer's join), release it when that task ends, slash (burn) only
///         what they reserved, and record scores. Unreserved stake is always free to unbond.
interface IParticipantRegistry {
    /// @notice The primary role of an address. `None` means not registered.
    enum Role {
        None,
        Trainer,
        Oracle,
        Requester
    }

    /// @notice A market's standing. `Retired` markets keep every power over the reservations they
    ///         already hold (release, slash, score) but cannot reserve again: governance cannot
    ///         strand the claims of existing tasks.
    enum MarketStatus {
        None,
        Active,
        Retired
    }

    /// @notice Everything the registry knows about an account, as returned by `participant`.
    /// @param role Its primary role (`None` if unregistered).
    /// @param encryptionKey Its X25519 public key.
    /// @param stake Tokens staked (reserved ones included).
    /// @param reserved Part of `stake` reserved by live tasks the account accepted.
    /// @param unbonding Tokens in the first unbonding batch.
    /// @param unbondingReleaseAt When the first batch can be withdrawn.
    /// @param queued Tokens in the second (latest) unbonding batch.
    /// @param queuedReleaseAt When the second batch can be withdrawn.
    /// @param reputationPpm Reputation in parts per million.
    struct Participant {
        Role role;
        bytes32 encryptionKey;
        uint256 stake;
        uint256 reserved;
        uint256 unbonding;
        uint64 unbondingReleaseAt;
        uint256 queued;
        uint64 queuedReleaseAt;
        uint32 reputationPpm;
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when registering with role `None`.
    error ParticipantRegistryInvalidRole();
    /// @notice Thrown when an address registers twice.
    /// @param account The address.
    error ParticipantRegistryAlreadyRegistered(address account);
    /// @notice Thrown when an action needs a registered address.
    /// @param account The address.
    error ParticipantRegistryNotRegistered(address account);
    /// @notice Thrown when the X25519 key is zero.
    error ParticipantRegistryZeroEncryptionKey();
    /// @notice Thrown when an amount must be positive.
    error ParticipantRegistryZeroAmount();
    /// @notice Thrown when unbonding or reserving more than the unreserved stake.
    /// @param account The address.
    /// @param available Its stake that is not reserved.
    /// @param requested The amount asked for.
    error ParticipantRegistryInsufficientStake(address account, uint256 available, uint256 requested);
    /// @notice Thrown when releasing or slashing more than the account has reserved.
    /// @param account The address.
    /// @param reserved Its reserved stake.
    /// @param requested The amount asked for.
    error ParticipantRegistryNotReserved(address account, uint256 reserved, uint256 requested);
    /// @notice Thrown when `withdraw` finds nothing released.
    /// @param account The caller.
    error ParticipantRegistryNothingToWithdraw(address account);
    /// @notice Thrown when `withdraw` is called before the first unbonding batch is released.
    /// @param account The caller.
    /// @param releaseAt When it will be.
    error ParticipantRegistryUnbondingNotReleased(address account, uint64 releaseAt);
    /// @notice Thrown when a market-only function is called by an address that never was a market.
    /// @param caller The caller.
    error ParticipantRegistryNotMarket(address caller);
    /// @notice Thrown when a retired (or unknown) market tries to reserve stake for a new task.
    /// @param caller The caller.
    error ParticipantRegistryMarketNotActive(address caller);
    /// @notice Thrown when an address argument is zero.
    error ParticipantRegistryZeroAddress();
    /// @notice Thrown when a score or weight is above 1,000,000 ppm.
    /// @param value The value given.
    error ParticipantRegistryScoreOutOfRange(uint32 value);
    /// @notice Thrown when the registry received fewer tokens than it pulled (fee-on-transfer).
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error ParticipantRegistryFeeOnTransfer(uint256 expected, uint256 received);
    /// @notice Thrown when an amount does not fit the registry's packed storage.
    /// @param amount The amount.
    error ParticipantRegistryAmountTooLarge(uint256 amount);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when an address registered.
    /// @param account The address.
    /// @param role Its role.
    /// @param encryptionKey Its X25519 public key.
    event Registered(address indexed account, Role role, bytes32 encryptionKey);
    /// @notice Emitted when an address changed its X25519 key.
    /// @param account The address.
    /// @param encryptionKey The new key.
    event EncryptionKeyChanged(address indexed account, bytes32 encryptionKey);
    /// @notice Emitted when stake was deposited.
    /// @param account The staker.
    /// @param amount Tokens added.
    /// @param newStake The stake after.
    event StakeDeposited(address indexed account, uint256 amount, uint256 newStake);
    /// @notice Emitted when stake started unbonding.
    /// @param account The staker.
    /// @param amount Tokens unbonding.
    /// @param releaseAt When this batch can be withdrawn.
    event UnstakeRequested(address indexed account, uint256 amount, uint64 releaseAt);
    /// @notice Emitted when released unbonding tokens were withdrawn.
    /// @param account The staker.
    /// @param amount Tokens paid out.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice Emitted when a market reserved stake for a task the account accepted.
    /// @param account The staker.
    /// @param market The market.
    /// @param amount Tokens reserved.
    /// @param reserved The account's total reserved stake after.
    event StakeReserved(address indexed account, address indexed market, uint256 amount, uint256 reserved);
    /// @notice Emitted when a market released a reservation (its task ended for this account).
    /// @param account The staker.
    /// @param market The market.
    /// @param amount Tokens released.
    /// @param reserved The account's total reserved stake after.
    event StakeReleased(address indexed account, address indexed market, uint256 amount, uint256 reserved);
    /// @notice Emitted when stake was slashed (and burned).
    /// @param account The staker.
    /// @param amount Tokens burned.
    /// @param taskId The task the evidence belongs to.
    /// @param evidence Evidence: the task's final payout root (its report is named by ScoreRevealed).
    event Slashed(address indexed account, uint256 amount, uint256 indexed taskId, bytes32 evidence);
    /// @notice Emitted when a market settled an account's part in a task: released its
    ///         reservation and moved its reputation. The market is the caller (the market's own
    ///         `Claimed` event in the same transaction names the task).
    /// @param account The account.
    /// @param released Stake released.
    /// @param oldReputationPpm Reputation before.
    /// @param newReputationPpm Reputation after.
    event Settled(
        address indexed account,
        uint256 released,
        uint32 oldReputationPpm,
        uint32 newReputationPpm
    );
    /// @notice Emitted when governance changed a market's standing.
    /// @param market The market.
    /// @param status Its new standing.
    event MarketStatusSet(address indexed market, MarketStatus status);

    // --- participants ---------------------------------------------------------------------------

    /// @notice Register the caller with a role, an X25519 key, and an optional first stake.
    /// @param role The primary role (not `None`).
    /// @param encryptionKey The X25519 public key (nonzero).
    /// @param amount Tokens to stake now (approve first); may be zero.
    function register(Role role, bytes32 encryptionKey, uint256 amount) external;

    /// @notice Replace the caller's X25519 key.
    /// @param key The new key (nonzero).
    function setEncryptionKey(bytes32 key) external;

    /// @notice Add to the caller's stake (approve first).
    /// @param amount Tokens (positive).
    function stake(uint256 amount) external;

    /// @notice Start unbonding `amount` of the caller's unreserved stake. The earliest pending
    ///         batch keeps its release time: a new request never delays it. A second request
    ///         while one batch is pending opens (or tops up) the second batch, whose release time
    ///         is the newest request's.
    /// @param amount Tokens (positive, at most stake − reserved).
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw every released unbonding batch.
    function withdraw() external;

    // --- markets --------------------------------------------------------------------------------

    /// @notice Reserve `amount` of `account`'s unreserved stake for a task the account accepted
    ///         (active markets only).
    /// @param account The staker (the market checks its consent).
    /// @param amount Tokens.
    function reserve(address account, uint256 amount) external;

    /// @notice Release a reservation this market made (active or retired markets).
    /// @param account The staker.
    /// @param amount Tokens.
    function release(address account, uint256 amount) external;

    /// @notice Burn up to `amount` of `account`'s reserved stake and release `released` of its
    ///         reservation (amount ≤ released ≤ reserved): only stake put at risk by a task the
    ///         account accepted can be slashed.
    /// @param account The staker.
    /// @param amount Tokens to burn.
    /// @param released The reservation to release with it.
    /// @param taskId The task (for the event).
    /// @param evidence Evidence reference (for the event): the final payout root.
    /// @return slashed Tokens burned.
    function slash(address account, uint256 amount, uint256 released, uint256 taskId, bytes32 evidence)
        external
        returns (uint256 slashed);

    /// @notice Release `released` of `account`'s reservation and move its reputation towards
    ///         `scorePpm` by a step scaled by `weightPpm` (the value the task put at risk).
    /// @param account The account.
    /// @param released Reservation to release (may be zero).
    /// @param scorePpm The score (at most 1,000,000).
    /// @param weightPpm The step's weight (at most 1,000,000; zero leaves reputation unchanged).
    function settle(address account, uint256 released, uint32 scorePpm, uint32 weightPpm) external;

    // --- governance -----------------------------------------------------------------------------

    /// @notice Authorize a market (`true`) or retire it (`false`): a retired market keeps its
    ///         power over the reservations it holds (release, slash, score) but reserves no more.
    ///         Owner only: governance, a timelock or multisig. It cannot move staked tokens.
    /// @param market The market contract.
    /// @param authorized Whether it may reserve stake for new tasks.
    function setMarket(address market, bool authorized) external;

    // --- views ----------------------------------------------------------------------------------

    /// @notice Everything the registry knows about `account`.
    /// @param account The address.
    /// @return info The account's record.
    function participant(address account) external view returns (Participant memory info);

    /// @notice Tokens `account` has staked (reserved ones included).
    /// @param account The address.
    /// @return The stake.
    function stakeOf(address account) external view returns (uint256);

    /// @notice Stake of `account` reserved by live tasks.
    /// @param account The address.
    /// @return The reserved stake.
    function reservedOf(address account) external view returns (uint256);

    /// @notice The primary role of `account`.
    /// @param account The address.
    /// @return The role (`None` if unregistered).
    function roleOf(address account) external view returns (Role);

    /// @notice The reputation of `account` in parts per million.
    /// @param account The address.
    /// @return The reputation (0 if unregistered).
    function reputationOf(address account) external view returns (uint32);

    /// @notice The X25519 public key of `account`.
    /// @param account The address.
    /// @return The key (zero if unregistered).
    function encryptionKeyOf(address account) external view returns (bytes32);

    /// @notice Whether `market` is an active market (may reserve stake for new tasks).
    /// @param market The address.
    /// @return True if active.
    function isMarket(address market) external view returns (bool);

    /// @notice A market's standing.
    /// @param market The address.
    /// @return The status.
    function marketStatus(address market) external view returns (MarketStatus);

    /// @notice The token stakes are held in.
    /// @return The stake token.
    function stakeToken() external view returns (IERC20);

    /// @notice Seconds between `requestUnstake` and the earliest `withdraw`.
    /// @return The delay.
    function unbondingDelay() external view returns (uint64);
}
