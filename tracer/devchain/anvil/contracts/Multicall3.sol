// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// The part of Multicall3's interface tracer reads balances through: aggregate3 and
/// getEthBalance, with the same signatures, encoding and failure rules as the Multicall3 deployed
/// at 0xcA11bde05977b3631167028862bE2a173976CA11 on most EVM chains. Written here (not a copy of
/// that contract) so the tests can place it at the same address on Anvil with anvil_setCode and
/// check tracer's batched reads against real EVM execution.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// Every call in order; a failing call with allowFailure false reverts the whole batch.
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; i++) {
            Call3 calldata c = calls[i];
            (bool ok, bytes memory data) = c.target.call(c.callData);
            require(ok || c.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(ok, data);
        }
    }

    function getEthBalance(address addr) external view returns (uint256 balance) {
        balance = addr.balance;
    }
}
