// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited.
pragma solidity 0.8.28;

interface IERC20Like {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address who) external view returns (uint256);
}

/// A token/ETH constant-product pair that emits Uniswap V2's `Swap`, `Sync` and (liquidity token)
/// `Transfer` events with V2's signatures. token0 is the ERC-20, token1 is ETH held natively.
/// A swap pays the constant-product quote (with V2's 0.3 % fee) when `amountOut` is 0; a replay of
/// recorded history passes the amount the recorded swap paid, which the pair pays as long as its
/// reserve covers it (the recorded market's price is data here, not something to re-derive).
contract ConstantProductPair {
    address public token0;
    uint112 private reserve0;
    uint112 private reserve1;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    function initialize(address token) external {
        require(token0 == address(0) && token != address(0), "initialized");
        token0 = token;
    }

    receive() external payable {}

    function getReserves() external view returns (uint112, uint112) {
        return (reserve0, reserve1);
    }

    /// V2's mint: liquidity for what was added above the reserves (here the geometric mean).
    function mint(address to) external returns (uint256 liquidity) {
        uint256 balance0 = IERC20Like(token0).balanceOf(address(this));
        uint256 balance1 = address(this).balance;
        uint256 amount0 = balance0 - reserve0;
        uint256 amount1 = balance1 - reserve1;
        liquidity = _sqrt(amount0 * amount1);
        require(liquidity > 0, "no liquidity added");
        totalSupply += liquidity;
        balanceOf[to] += liquidity;
        emit Transfer(address(0), to, liquidity);
        _update(balance0, balance1);
        emit Mint(msg.sender, amount0, amount1);
    }

    function quote(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        uint256 withFee = amountIn * 997;
        return (withFee * reserveOut) / (reserveIn * 1000 + withFee);
    }

    /// Pays ETH for `amountIn` of token0, pulled from the caller (approve first).
    function swapTokensForETH(uint256 amountIn, uint256 amountOut, address payable to) external {
        require(amountIn > 0, "nothing in");
        if (amountOut == 0) {
            amountOut = quote(amountIn, reserve0, reserve1);
        }
        require(amountOut < reserve1, "reserve");
        require(IERC20Like(token0).transferFrom(msg.sender, address(this), amountIn), "pull failed");
        (bool ok, ) = to.call{value: amountOut}("");
        require(ok, "payout failed");
        _update(IERC20Like(token0).balanceOf(address(this)), address(this).balance);
        emit Swap(msg.sender, amountIn, 0, 0, amountOut, to);
    }

    /// Pays token0 for the ETH sent.
    function swapETHForTokens(uint256 amountOut, address to) external payable {
        require(msg.value > 0, "nothing in");
        if (amountOut == 0) {
            amountOut = quote(msg.value, reserve1, reserve0);
        }
        require(amountOut < reserve0, "reserve");
        require(IERC20Like(token0).transfer(to, amountOut), "payout failed");
        _update(IERC20Like(token0).balanceOf(address(this)), address(this).balance);
        emit Swap(msg.sender, 0, msg.value, amountOut, 0, to);
    }

    function sync() external {
        _update(IERC20Like(token0).balanceOf(address(this)), address(this).balance);
    }

    function _update(uint256 balance0, uint256 balance1) private {
        require(balance0 <= type(uint112).max && balance1 <= type(uint112).max, "overflow");
        reserve0 = uint112(balance0);
        reserve1 = uint112(balance1);
        emit Sync(reserve0, reserve1);
    }

    function _sqrt(uint256 y) private pure returns (uint256 z) {
        if (y > 3) {
            z = y;
            uint256 x = y / 2 + 1;
            while (x < z) {
                z = x;
                x = (y / x + x) / 2;
            }
        } else if (y != 0) {
            z = 1;
        }
    }
}
