// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// A Chainlink AggregatorV3Interface-compatible USD price feed for dev chains (tracer). Written for
/// tracer, not audited; only the interface follows Chainlink's.
///
/// The rounds are written straight into storage before a scenario runs (anvil_setStorageAt, no
/// transaction): slot 0 holds the number of rounds, slot 1 + i round i + 1 as
/// (updatedAt << 128) | answer, rounds in time order. A call at block B sees the rounds published
/// by B's timestamp, as the aggregator would have answered then.
contract PriceFeed {
    uint256 private count;

    function decimals() external pure returns (uint8) {
        return 8;
    }

    function description() external pure returns (string memory) {
        return "tracer dev price feed / USD";
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function _round(uint256 i) private view returns (uint256 updatedAt, int256 answer) {
        uint256 w;
        assembly {
            w := sload(add(1, i))
        }
        updatedAt = w >> 128;
        answer = int256(uint256(uint128(w)));
    }

    /// How many rounds were published by this block's time.
    function _published() private view returns (uint256) {
        uint256 lo = 0;
        uint256 hi = count;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            (uint256 t,) = _round(mid);
            if (t <= block.timestamp) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    function _answer(uint256 id) private view returns (uint80, int256, uint256, uint256, uint80) {
        (uint256 t, int256 a) = _round(id - 1);
        return (uint80(id), a, t, t, uint80(id));
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        uint256 n = _published();
        require(n > 0, "No data present");
        return _answer(n);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        require(roundId >= 1 && roundId <= _published(), "No data present");
        return _answer(roundId);
    }
}
