// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited.
pragma solidity 0.8.28;

interface IERC20Transfer {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// A bridge router with THORChain's router interface and events (same signatures, so the same
/// topics): a deposit forwards the money to the vault and logs the memo that names the destination
/// chain and address; a vault pays out on the destination chain with `transferOut`, whose memo
/// (`OUT:<inbound tx>`) names the deposit.
contract BridgeRouter {
    event Deposit(address indexed to, address indexed asset, uint256 amount, string memo);
    event TransferOut(address indexed vault, address indexed to, address asset, uint256 amount, string memo);

    function deposit(address payable vault, address asset, uint256 amount, string calldata memo) public payable {
        require(asset == address(0) || msg.value == 0, "token deposit with ETH");
        emit Deposit(vault, asset, _pay(vault, asset, amount), memo);
    }

    function depositWithExpiry(address payable vault, address asset, uint256 amount, string calldata memo,
                               uint256 expiration) external payable {
        require(block.timestamp < expiration, "expired");
        deposit(vault, asset, amount, memo);
    }

    function transferOut(address payable to, address asset, uint256 amount, string calldata memo) external payable {
        emit TransferOut(msg.sender, to, asset, _pay(to, asset, amount), memo);
    }

    /// Pays `to` and returns what it paid: ETH is the call's value (`amount` does not count, as in
    /// THORChain's router), a token is pulled from the caller, who approved this router for it.
    function _pay(address payable to, address asset, uint256 amount) private returns (uint256) {
        if (asset == address(0)) {
            (bool ok, ) = to.call{value: msg.value}("");
            require(ok, "ETH transfer failed");
            return msg.value;
        }
        require(IERC20Transfer(asset).transferFrom(msg.sender, to, amount), "token transfer failed");
        return amount;
    }
}
