// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited.
pragma solidity 0.8.28;

/// Wormhole's core contract as far as its message event goes (same signature, so the same topic):
/// every published message gets the next sequence of its sender.
contract WormholeCore {
    event LogMessagePublished(address indexed sender, uint64 sequence, uint32 nonce, bytes payload,
                              uint8 consistencyLevel);

    mapping(address => uint64) public nextSequence;

    function publishMessage(uint32 nonce, bytes calldata payload, uint8 consistencyLevel)
        external payable returns (uint64 sequence)
    {
        sequence = nextSequence[msg.sender]++;
        emit LogMessagePublished(msg.sender, sequence, nonce, payload, consistencyLevel);
    }
}

/// A token bridge with Wormhole's transfer payload and redeem event: `wrapAndTransferETH` keeps
/// the ETH and publishes a transfer (payload id 1: amount in 8 decimals, token, token chain,
/// recipient, recipient chain, fee) through the core contract; on the destination chain
/// `completeTransfer` pays the recipient and logs which source message it redeems. The guardian
/// signatures a real redeem checks are not modelled: any caller may redeem.
contract WormholeTokenBridge {
    event TransferRedeemed(uint16 indexed emitterChainId, bytes32 indexed emitterAddress, uint64 indexed sequence);

    WormholeCore public wormhole;
    uint16 public chainId;

    function initialize(address core, uint16 ownChainId) external {
        require(address(wormhole) == address(0), "initialized");
        wormhole = WormholeCore(core);
        chainId = ownChainId;
    }

    function wrapAndTransferETH(uint16 recipientChain, bytes32 recipient, uint256 arbiterFee, uint32 nonce)
        external payable returns (uint64 sequence)
    {
        bytes memory payload = abi.encodePacked(uint8(1), msg.value / 1e10, bytes32(0), chainId, recipient,
                                                recipientChain, arbiterFee);
        sequence = wormhole.publishMessage(nonce, payload, 1);
    }

    function completeTransfer(uint16 emitterChainId, bytes32 emitterAddress, uint64 sequence, address payable to)
        external payable
    {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "payout failed");
        emit TransferRedeemed(emitterChainId, emitterAddress, sequence);
    }
}
