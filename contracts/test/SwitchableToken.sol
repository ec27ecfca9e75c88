// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title SwitchableToken
/// @notice Test only: an ERC-20 whose `transfer` to a given address can be switched, at any
///         time, to revert (a USDC-style blacklist or pause, or a malicious token), to return
///         false, or to burn all the gas it is given. `transferFrom` is unaffected, so a task
///         can be funded normally before the switch.
contract SwitchableToken is ERC20 {
    /// @notice How a transfer to an address behaves.
    enum Mode {
        Normal,
        Revert,
        ReturnFalse,
        BurnGas
    }

    /// @notice The mode of transfers to each address (default Normal).
    mapping(address account => Mode) public modeOf;

    /// @notice Thrown by a transfer to an address in `Mode.Revert`.
    /// @param to The refused recipient.
    error SwitchableTokenBlocked(address to);

    constructor() ERC20("Switchable", "SW") {}

    /// @notice Mint to anyone (test token).
    /// @param to The recipient.
    /// @param amount Tokens to create.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Switch how transfers to `account` behave (anyone: test token).
    /// @param account The recipient.
    /// @param mode Its new mode.
    function setMode(address account, Mode mode) external {
        modeOf[account] = mode;
    }

    /// @inheritdoc ERC20
    function transfer(address to, uint256 value) public override returns (bool) {
        Mode mode = modeOf[to];
        if (mode == Mode.Revert) revert SwitchableTokenBlocked(to);
        if (mode == Mode.ReturnFalse) return false;
        if (mode == Mode.BurnGas) {
            assembly ("memory-safe") {
                invalid() // consumes all the gas the call was given
            }
        }
        return super.transfer(to, value);
    }
}
