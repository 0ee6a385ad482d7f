// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited; a dev chain's token.
pragma solidity 0.8.28;

/// An ERC-20 with a settable number of decimals (6 for the scenario's stablecoins). No
/// constructor: the executor copies the runtime code to the scenario's token address
/// (anvil_setCode) and calls `initialize` once; balances arrive by `mint`, so every balance has a
/// Transfer event behind it, as on a real chain.
contract Stablecoin {
    string public name;
    string public symbol;
    uint8 public decimals;
    uint256 public totalSupply;
    address public minter;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function initialize(string calldata name_, string calldata symbol_, uint8 decimals_) external {
        require(minter == address(0), "initialized");
        minter = msg.sender;
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
    }

    function mint(address[] calldata to, uint256[] calldata amounts) external {
        require(msg.sender == minter, "not the minter");
        require(to.length == amounts.length, "lengths");
        for (uint256 i = 0; i < to.length; i++) {
            totalSupply += amounts[i];
            balanceOf[to[i]] += amounts[i];
            emit Transfer(address(0), to[i], amounts[i]);
        }
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) internal {
        uint256 have = balanceOf[from];
        require(have >= value, "balance");
        unchecked {
            balanceOf[from] = have - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
