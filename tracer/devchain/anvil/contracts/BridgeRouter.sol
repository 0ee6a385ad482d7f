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
        if (asset == address(0)) {
            amount = msg.value;
            (bool ok, ) = vault.call{value: amount}("");
            require(ok, "forward to the vault failed");
        } else {
            require(msg.value == 0, "token deposit with ETH");
            require(IERC20Transfer(asset).transferFrom(msg.sender, vault, amount), "pull failed");
        }
        emit Deposit(vault, asset, amount, memo);
    }

    function depositWithExpiry(address payable vault, address asset, uint256 amount, string calldata memo,
                               uint256 expiration) external payable {
        require(block.timestamp < expiration, "expired");
        deposit(vault, asset, amount, memo);
    }

    function transferOut(address payable to, address asset, uint256 amount, string calldata memo) external payable {
        if (asset == address(0)) {
            amount = msg.value;
            (bool ok, ) = to.call{value: amount}("");
            require(ok, "payout failed");
        } else {
            require(IERC20Transfer(asset).transferFrom(msg.sender, to, amount), "payout failed");
        }
        emit TransferOut(msg.sender, to, asset, amount, memo);
    }
}
