// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title ReputationMath
/// @notice Reputation as an exponential moving average of normalized scores, in parts per million,
///         whose step is scaled by the value a task put at risk.
library ReputationMath {
    /// @notice One in parts per million.
    uint32 internal constant ONE = 1_000_000;
    /// @notice Weight of the newest score in the average (0.2) for a task with full value at risk.
    uint32 internal constant ALPHA = 200_000;
    /// @notice Reputation of a newly registered participant (0.5).
    uint32 internal constant INITIAL = 500_000;

    /// @notice `(rep * (ONE - a) + score * a) / ONE` with `a = ALPHA * weightPpm / ONE`, rounded down.
    /// @dev All inputs are at most ONE (callers check), so the result is at most ONE. A zero weight
    ///      leaves the reputation unchanged.
    /// @param rep The current reputation (ppm, at most ONE).
    /// @param scorePpm The new score (ppm, at most ONE).
    /// @param weightPpm The step's weight (ppm, at most ONE).
    /// @return The updated reputation (ppm).
    function ema(uint32 rep, uint32 scorePpm, uint32 weightPpm) internal pure returns (uint32) {
        // Computed in uint256: the intermediates (≤ 1e12) do not fit uint32.
        uint256 alpha = uint256(ALPHA) * weightPpm / ONE;
        return uint32((uint256(rep) * (ONE - alpha) + uint256(scorePpm) * alpha) / ONE);
    }
}
