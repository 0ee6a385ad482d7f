// SPDX-License-Identifier: MIT
// Written for tracer's Anvil runs (tracer/devchain/anvil). Not audited; NOT a mixer: it keeps no
// Merkle tree and accepts any proof. Only its interface and events are Tornado Cash's.
pragma solidity 0.8.28;

/// A fixed-denomination ETH pool with Tornado Cash's `deposit`/`withdraw` functions and its
/// `Deposit`/`Withdrawal` events (same signatures, so the same topics), and a verifier that accepts
/// anything. `initialize` sets the denomination once (the code is placed with anvil_setCode).
contract MixerPool {
    uint256 public denomination;
    uint32 public nextIndex;
    mapping(bytes32 => bool) public commitments;
    mapping(bytes32 => bool) public nullifierHashes;

    event Deposit(bytes32 indexed commitment, uint32 leafIndex, uint256 timestamp);
    event Withdrawal(address to, bytes32 nullifierHash, address indexed relayer, uint256 fee);

    function initialize(uint256 denomination_) external {
        require(denomination == 0 && denomination_ > 0, "initialized");
        denomination = denomination_;
    }

    function deposit(bytes32 commitment) external payable {
        require(msg.value == denomination, "send exactly the denomination");
        require(!commitments[commitment], "commitment already submitted");
        commitments[commitment] = true;
        uint32 index = nextIndex;
        nextIndex = index + 1;
        emit Deposit(commitment, index, block.timestamp);
    }

    function withdraw(
        bytes calldata proof,
        bytes32 root,
        bytes32 nullifierHash,
        address payable recipient,
        address payable relayer,
        uint256 fee,
        uint256 refund
    ) external payable {
        require(fee <= denomination, "fee exceeds the denomination");
        require(refund == 0 && msg.value == 0, "ETH pool: no refund");
        require(!nullifierHashes[nullifierHash], "note already spent");
        require(_verifyProof(proof, root, nullifierHash), "invalid proof");
        nullifierHashes[nullifierHash] = true;
        (bool ok, ) = recipient.call{value: denomination - fee}("");
        require(ok, "payment to the recipient failed");
        if (fee > 0) {
            (ok, ) = relayer.call{value: fee}("");
            require(ok, "payment to the relayer failed");
        }
        emit Withdrawal(recipient, nullifierHash, relayer, fee);
    }

    /// Accepts every proof: the dev pool models the money flows and events, not the zk-SNARK.
    function _verifyProof(bytes calldata, bytes32, bytes32) internal pure returns (bool) {
        return true;
    }
}
