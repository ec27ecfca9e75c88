// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice The few Foundry cheatcodes the invariant suite uses (npm's forge-std is an old copy).
interface Vm {
    function warp(uint256 timestamp) external;
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
}

/// @notice A minimal base: the cheatcode address and an assertion that names what failed.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert(string.concat(what, ": values differ"));
    }

    function assertTrue(bool ok, string memory what) internal pure {
        if (!ok) revert(what);
    }
}
