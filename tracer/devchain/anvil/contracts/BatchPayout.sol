// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited.
pragma solidity 0.8.28;

/// Pays many recipients in one transaction: each payout is a real internal call carrying value
/// (the shape of Disperse-style payout contracts), so a tracer sees them only in call traces.
contract BatchPayout {
    function disperseEther(address[] calldata recipients, uint256[] calldata values) external payable {
        require(recipients.length == values.length, "lengths");
        uint256 total = 0;
        for (uint256 i = 0; i < recipients.length; i++) {
            total += values[i];
            (bool ok, ) = payable(recipients[i]).call{value: values[i]}("");
            require(ok, "payout failed");
        }
        require(total == msg.value, "value is not the sum of the payouts");
    }
}
