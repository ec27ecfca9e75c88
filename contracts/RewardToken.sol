// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title RewardToken
/// @notice The devnet's ERC-20 (with EIP-2612 permit). Devnet only: the owner can mint at will.
///         A real deployment escrows any standard ERC-20, such as a stablecoin.
contract RewardToken is ERC20, ERC20Permit, Ownable {
    /// @param name_ Token name.
    /// @param symbol_ Token symbol.
    /// @param owner_ The only address that may mint.
    constructor(string memory name_, string memory symbol_, address owner_)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
        Ownable(owner_)
    {}

    /// @notice Mint `amount` tokens to `to` (owner only; emits ERC-20 `Transfer` from zero).
    /// @param to The recipient.
    /// @param amount Tokens to create.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
