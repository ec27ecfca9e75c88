// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title SixDecimalToken
/// @notice Test only: an ERC-20 with 6 decimals, as the common stablecoins have, so one whole
///         token is 1e6 of its smallest units.
contract SixDecimalToken is ERC20 {
    constructor() ERC20("Six decimals", "SIX") {}

    /// @notice Mint to anyone (test token).
    /// @param to The recipient.
    /// @param amount Tokens to create, in the smallest units.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
