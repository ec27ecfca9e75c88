// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ReputationMath} from "./libraries/ReputationMath.sol";

/// @title ParticipantRegistry
/// @notice Roles, encryption keys, stake with unbonding, per-task reservations, slashing (burn) and
///         reputation.
/// @dev The owner (governance) can only authorize and retire markets; nobody can move staked tokens
///      except the staker (after unbonding) and a market's slash of stake it reserved, which burns
///      them. Invariants: `reserved <= stake` for every account; this contract's balance equals
///      Σ (stake + unbonding + queued).
contract ParticipantRegistry is IParticipantRegistry, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Where slashed tokens go: OpenZeppelin's ERC20 refuses transfers to address(0).
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    // Slot 0 holds everything a market's reserve, settle or slash reads and writes (role, stake,
    // reservation, reputation), so each touches one slot: a seat's consent reads a single cold
    // slot here. Amounts are checked against the packed widths where they grow.
    struct Account {
        // slot 0
        Role role;
        uint32 reputationPpm;
        uint88 reserved; // ≤ stake
        uint128 stake;
        // slot 1
        bytes32 encryptionKey;
        // slot 2: first batch; zero only if `queued` is zero too
        uint128 unbonding;
        uint64 unbondingReleaseAt;
        // slot 3: second batch (the newest requests)
        uint128 queued;
        uint64 queuedReleaseAt;
    }

    // Bit offsets of Account's slot-0 fields (role: 8 bits, reputationPpm: 32, reserved: 88, stake: 128).
    uint256 private constant _RESERVED_SHIFT = 40;
    uint256 private constant _STAKE_SHIFT = 128;

    IERC20 private immutable _stakeToken;
    uint64 private immutable _unbondingDelay;

    mapping(address account => Account) private _accounts;
    mapping(address market => MarketStatus) private _markets;

    modifier onlyMarket() {
        if (_markets[msg.sender] == MarketStatus.None) revert ParticipantRegistryNotMarket(msg.sender);
        _;
    }

    /// @param stakeToken_ The ERC-20 that stakes are held in (not fee-on-transfer).
    /// @param unbondingDelay_ Seconds between `requestUnstake` and `withdraw`.
    /// @param owner_ Governance: a timelock or multisig in production.
    constructor(IERC20 stakeToken_, uint64 unbondingDelay_, address owner_) Ownable(owner_) {
        _stakeToken = stakeToken_;
        _unbondingDelay = unbondingDelay_;
    }

    // --- participants ---------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function register(Role role, bytes32 encryptionKey, uint256 amount) external nonReentrant {
        if (role == Role.None) revert ParticipantRegistryInvalidRole();
        if (encryptionKey == bytes32(0)) revert ParticipantRegistryZeroEncryptionKey();
        Account storage a = _accounts[msg.sender];
        if (a.role != Role.None) revert ParticipantRegistryAlreadyRegistered(msg.sender);

        a.role = role;
        a.reputationPpm = ReputationMath.INITIAL;
        a.encryptionKey = encryptionKey;
        emit Registered(msg.sender, role, encryptionKey);
        if (amount > 0) {
            a.stake = _u128(amount);
            emit StakeDeposited(msg.sender, amount, amount);
            _pull(msg.sender, amount);
        }
    }

    /// @inheritdoc IParticipantRegistry
    function setEncryptionKey(bytes32 key) external {
        if (key == bytes32(0)) revert ParticipantRegistryZeroEncryptionKey();
        Account storage a = _registered(msg.sender);
        a.encryptionKey = key;
        emit EncryptionKeyChanged(msg.sender, key);
    }

    /// @inheritdoc IParticipantRegistry
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ParticipantRegistryZeroAmount();
        Account storage a = _registered(msg.sender);
        uint256 newStake = a.stake + amount;
        a.stake = _u128(newStake);
        emit StakeDeposited(msg.sender, amount, newStake);
        _pull(msg.sender, amount);
    }

    /// @inheritdoc IParticipantRegistry
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ParticipantRegistryZeroAmount();
        Account storage a = _registered(msg.sender);
        uint256 staked = a.stake;
        // reserved <= stake is an invariant of this contract.
        uint256 available = staked - a.reserved;
        if (amount > available) revert ParticipantRegistryInsufficientStake(msg.sender, available, amount);

        uint64 releaseAt = uint64(block.timestamp) + _unbondingDelay;
        // amount <= staked (a uint128) was checked just above; the queued batch's sum is checked.
        unchecked {
            a.stake = uint128(staked - amount);
        }
        if (a.unbonding == 0) {
            a.unbonding = uint128(amount);
            a.unbondingReleaseAt = releaseAt;
        } else {
            // The first batch keeps its release time; only the newest batch moves.
            a.queued = _u128(a.queued + amount);
            a.queuedReleaseAt = releaseAt;
        }
        emit UnstakeRequested(msg.sender, amount, releaseAt);
    }

    /// @inheritdoc IParticipantRegistry
    function withdraw() external nonReentrant {
        Account storage a = _accounts[msg.sender];
        uint256 first = a.unbonding;
        if (first == 0) revert ParticipantRegistryNothingToWithdraw(msg.sender);
        if (block.timestamp < a.unbondingReleaseAt) {
            revert ParticipantRegistryUnbondingNotReleased(msg.sender, a.unbondingReleaseAt);
        }
        uint256 amount = first;
        uint256 second = a.queued;
        if (second > 0 && block.timestamp >= a.queuedReleaseAt) {
            amount += second;
            second = 0;
        }
        // The second batch (if still pending) becomes the first.
        a.unbonding = uint128(second); // a queued batch, a uint128
        a.unbondingReleaseAt = second == 0 ? 0 : a.queuedReleaseAt;
        a.queued = 0;
        a.queuedReleaseAt = 0;
        emit Withdrawn(msg.sender, amount);
        _stakeToken.safeTransfer(msg.sender, amount);
    }

    // --- markets --------------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function reserve(address account, uint256 amount) external {
        if (_markets[msg.sender] != MarketStatus.Active) revert ParticipantRegistryMarketNotActive(msg.sender);
        Account storage a = _accounts[account];
        // Slot 0 (role, reputationPpm, reserved, stake: see Account) read once and written once:
        // a seat's consent pays for one cold slot here, not three reads and a read-modify-write.
        uint256 word;
        assembly ("memory-safe") {
            word := sload(a.slot)
        }
        if (Role(uint8(word)) == Role.None) revert ParticipantRegistryNotRegistered(account);
        uint256 reserved = uint88(word >> _RESERVED_SHIFT);
        uint256 available = (word >> _STAKE_SHIFT) - reserved; // reserved <= stake
        if (amount > available) revert ParticipantRegistryInsufficientStake(account, available, amount);
        // reserved + amount <= stake; the cast is checked against the packed width.
        uint256 updated = reserved + amount;
        if (updated > type(uint88).max) revert ParticipantRegistryAmountTooLarge(updated);
        word = (word & ~(uint256(type(uint88).max) << _RESERVED_SHIFT)) | (updated << _RESERVED_SHIFT);
        assembly ("memory-safe") {
            sstore(a.slot, word)
        }
        emit StakeReserved(account, msg.sender, amount, updated);
    }

    /// @inheritdoc IParticipantRegistry
    function release(address account, uint256 amount) external onlyMarket {
        Account storage a = _accounts[account];
        uint256 updated = _unreserve(a, account, amount);
        emit StakeReleased(account, msg.sender, amount, updated);
    }

    /// @inheritdoc IParticipantRegistry
    function slash(address account, uint256 amount, uint256 released, uint256 taskId, bytes32 evidence)
        external
        onlyMarket
        nonReentrant
        returns (uint256 slashed)
    {
        if (amount > released) revert ParticipantRegistryNotReserved(account, released, amount);
        Account storage a = _accounts[account];
        uint256 updated = _unreserve(a, account, released);
        // amount <= released <= reserved <= stake.
        unchecked {
            a.stake -= uint128(amount);
        }
        slashed = amount;
        emit StakeReleased(account, msg.sender, released, updated);
        emit Slashed(account, slashed, taskId, evidence);
        if (slashed > 0) _stakeToken.safeTransfer(BURN_ADDRESS, slashed);
    }

    /// @inheritdoc IParticipantRegistry
    function settle(address account, uint256 released, uint32 scorePpm, uint32 weightPpm) external onlyMarket {
        if (scorePpm > ReputationMath.ONE) revert ParticipantRegistryScoreOutOfRange(scorePpm);
        if (weightPpm > ReputationMath.ONE) revert ParticipantRegistryScoreOutOfRange(weightPpm);
        Account storage a = _registered(account);
        if (released > 0) _unreserve(a, account, released);
        uint32 old = a.reputationPpm;
        uint32 newRep = ReputationMath.ema(old, scorePpm, weightPpm);
        a.reputationPpm = newRep;
        emit Settled(account, released, old, newRep);
    }

    // --- governance -----------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function setMarket(address market, bool authorized) external onlyOwner {
        if (market == address(0)) revert ParticipantRegistryZeroAddress();
        MarketStatus status = authorized ? MarketStatus.Active : MarketStatus.Retired;
        // A market that never was one stays unknown when "retired": nothing to keep.
        if (!authorized && _markets[market] == MarketStatus.None) status = MarketStatus.None;
        _markets[market] = status;
        emit MarketStatusSet(market, status);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function participant(address account) external view returns (Participant memory info) {
        Account storage a = _accounts[account];
        info.role = a.role;
        info.encryptionKey = a.encryptionKey;
        info.stake = a.stake;
        info.reserved = a.reserved;
        info.unbonding = a.unbonding;
        info.unbondingReleaseAt = a.unbondingReleaseAt;
        info.queued = a.queued;
        info.queuedReleaseAt = a.queuedReleaseAt;
        info.reputationPpm = a.reputationPpm;
    }

    /// @inheritdoc IParticipantRegistry
    function stakeOf(address account) external view returns (uint256) {
        return _accounts[account].stake;
    }

    /// @inheritdoc IParticipantRegistry
    function reservedOf(address account) external view returns (uint256) {
        return _accounts[account].reserved;
    }

    /// @inheritdoc IParticipantRegistry
    function roleOf(address account) external view returns (Role) {
        return _accounts[account].role;
    }

    /// @inheritdoc IParticipantRegistry
    function reputationOf(address account) external view returns (uint32) {
        return _accounts[account].reputationPpm;
    }

    /// @inheritdoc IParticipantRegistry
    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _accounts[account].encryptionKey;
    }

    /// @inheritdoc IParticipantRegistry
    function isMarket(address market) external view returns (bool) {
        return _markets[market] == MarketStatus.Active;
    }

    /// @inheritdoc IParticipantRegistry
    function marketStatus(address market) external view returns (MarketStatus) {
        return _markets[market];
    }

    /// @inheritdoc IParticipantRegistry
    function stakeToken() external view returns (IERC20) {
        return _stakeToken;
    }

    /// @inheritdoc IParticipantRegistry
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    // --- internals ------------------------------------------------------------------------------

    function _registered(address account) private view returns (Account storage a) {
        a = _accounts[account];
        if (a.role == Role.None) revert ParticipantRegistryNotRegistered(account);
    }

    function _u128(uint256 amount) private pure returns (uint128) {
        if (amount > type(uint128).max) revert ParticipantRegistryAmountTooLarge(amount);
        return uint128(amount);
    }

    function _unreserve(Account storage a, address account, uint256 amount) private returns (uint256 updated) {
        uint256 reserved = a.reserved;
        if (amount > reserved) revert ParticipantRegistryNotReserved(account, reserved, amount);
        // amount <= reserved, a uint88.
        unchecked {
            updated = reserved - amount;
        }
        a.reserved = uint88(updated);
    }

    /// @dev Pulls `amount` from `from` and insists the balance grew by exactly that much, so a
    ///      fee-on-transfer token cannot leave stakes backed by fewer tokens than recorded.
    function _pull(address from, uint256 amount) private {
        uint256 before = _stakeToken.balanceOf(address(this));
        _stakeToken.safeTransferFrom(from, address(this), amount);
        uint256 received = _stakeToken.balanceOf(address(this)) - before;
        if (received != amount) revert ParticipantRegistryFeeOnTransfer(amount, received);
    }
}
