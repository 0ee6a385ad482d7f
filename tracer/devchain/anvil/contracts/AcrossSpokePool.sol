// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited.
pragma solidity 0.8.28;

/// A spoke pool with Across V3's deposit and fill events (same signatures, so the same topics): a
/// deposit keeps the money and logs the destination chain id, the recipient and a deposit id; a
/// relayer's fill on the destination chain pays the recipient through the pool and logs the origin
/// chain id and the deposit id it fills. Native ETH only (the real pool wraps it as WETH).
contract AcrossSpokePool {
    event V3FundsDeposited(address inputToken, address outputToken, uint256 inputAmount, uint256 outputAmount,
                           uint256 indexed destinationChainId, uint32 indexed depositId, uint32 quoteTimestamp,
                           uint32 fillDeadline, uint32 exclusivityDeadline, address indexed depositor,
                           address recipient, address exclusiveRelayer, bytes message);

    struct RelayExecutionInfo {
        address updatedRecipient;
        bytes updatedMessage;
        uint256 updatedOutputAmount;
        uint8 fillType;
    }

    event FilledV3Relay(address inputToken, address outputToken, uint256 inputAmount, uint256 outputAmount,
                        uint256 repaymentChainId, uint256 indexed originChainId, uint32 indexed depositId,
                        uint32 fillDeadline, uint32 exclusivityDeadline, address exclusiveRelayer,
                        address indexed relayer, address depositor, address recipient, bytes message,
                        RelayExecutionInfo relayExecutionInfo);

    // The non-indexed fields of each event in order: abi.encode of one struct is the event's data
    // behind a leading offset word, so the log is written without 15 values on the EVM stack.
    struct DepositData {
        address inputToken;
        address outputToken;
        uint256 inputAmount;
        uint256 outputAmount;
        uint32 quoteTimestamp;
        uint32 fillDeadline;
        uint32 exclusivityDeadline;
        address recipient;
        address exclusiveRelayer;
        bytes message;
    }

    struct FillData {
        address inputToken;
        address outputToken;
        uint256 inputAmount;
        uint256 outputAmount;
        uint256 repaymentChainId;
        uint32 fillDeadline;
        uint32 exclusivityDeadline;
        address exclusiveRelayer;
        address depositor;
        address recipient;
        bytes message;
        RelayExecutionInfo info;
    }

    uint32 public numberOfDeposits;

    function depositV3(address depositor, address recipient, uint256 outputAmount, uint256 destinationChainId,
                       uint32 fillDeadline) external payable returns (uint32 depositId) {
        depositId = numberOfDeposits++;
        DepositData memory d = DepositData(address(0), address(0), msg.value, outputAmount, uint32(block.timestamp),
                                           fillDeadline, 0, recipient, address(0), "");
        _log3(abi.encode(d), V3FundsDeposited.selector, bytes32(destinationChainId), bytes32(uint256(depositId)),
              bytes32(uint256(uint160(depositor))));
    }

    function fillV3Relay(address depositor, address payable recipient, uint256 inputAmount, uint256 originChainId,
                         uint32 depositId, uint32 fillDeadline) external payable {
        (bool ok, ) = recipient.call{value: msg.value}("");
        require(ok, "payout failed");
        FillData memory f = FillData(address(0), address(0), inputAmount, msg.value, block.chainid, fillDeadline, 0,
                                     address(0), depositor, recipient, "",
                                     RelayExecutionInfo(recipient, "", msg.value, 0));
        bytes memory data = abi.encode(f);
        bytes32 topic0 = FilledV3Relay.selector;
        bytes32 relayer = bytes32(uint256(uint160(msg.sender)));
        assembly {
            log4(add(data, 64), sub(mload(data), 32), topic0, originChainId, depositId, relayer)
        }
    }

    function _log3(bytes memory data, bytes32 topic0, bytes32 t1, bytes32 t2, bytes32 t3) private {
        assembly {
            log4(add(data, 64), sub(mload(data), 32), topic0, t1, t2, t3)
        }
    }
}
