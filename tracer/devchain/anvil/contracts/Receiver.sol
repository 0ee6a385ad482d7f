// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil).
pragma solidity 0.8.28;

/// A contract that accepts ETH and does nothing else: the code behind a labelled service address
/// whose behaviour a scenario does not model (plain payments into a DEX or bridge contract).
contract Receiver {
    receive() external payable {}
}
