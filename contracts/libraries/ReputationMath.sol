// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title ReputationMath
/// @notice Reputation as an exponential moving average of normalized scores, in parts per million.
library ReputationMath {
    /// @notice One in parts per million.
    uint32 internal constant ONE = 1_000_000;
    /// @notice Weight of the newest score in the average (0.2).
    uint32 internal constant ALPHA = 200_000;
    /// @notice Reputation of a newly registered participant (0.5).
    uint32 internal constant INITIAL = 500_000;

    /// @notice `(rep * (ONE - ALPHA) + score * ALPHA) / ONE`, rounded down.
    /// @dev Both inputs are at most ONE (callers check the score), so the result is at most ONE.
    /// @param rep The current reputation (ppm, at most ONE).
    /// @param scorePpm The new score (ppm, at most ONE).
    /// @return The updated reputation (ppm).
    function ema(uint32 rep, uint32 scorePpm) internal pure returns (uint32) {
        // Computed in uint256: the intermediate (≤ 1e12) does not fit uint32.
        return uint32((uint256(rep) * (ONE - ALPHA) + uint256(scorePpm) * ALPHA) / ONE);
    }
}
