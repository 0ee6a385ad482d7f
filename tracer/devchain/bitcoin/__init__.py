"""A generated Bitcoin history with ground truth, for the Esplora devchain (tracer/devchain/esplora.py).

Deterministic by seed. Blocks every ~10 minutes, each with a coinbase first. The story:

- a **theft**: a hacked exchange's hot wallet pays `stolen` to the thief's address (the seed);
- a **peel chain** of `peel_hops` hops: each hop pays a round amount to a fresh deposit address
  at an exchange (legacy or P2SH at some exchanges, segwit at others) and the non-round change to
  a fresh address of the thief's own script type; exchanges sweep their deposit addresses (many
  customers' in one multi-input sweep) to a labelled hot wallet a few blocks later;
- a **CoinJoin** (Wasabi-like: equal outputs of one denomination, change outputs, a coordinator
  fee) that the rest of the stolen money enters; afterwards the thief consolidates its mixed
  outputs and pays them into an exchange, and pays its CoinJoin change into another one;
- **THORChain vault payouts**: for each `Handoff` (an EVM-side deposit: destination, amount,
  time, memo) the vault pays the amount with an OP_RETURN memo (`OUT:<inbound tx hash>`), among
  payouts to other users; the destination then pays it on into an exchange deposit address;
- **noise**: wallets paying wallets (with change back to themselves), customers depositing into
  fresh deposit addresses (swept like the thief's), exchanges paying withdrawals.

`BitcoinTruth` says what a trace from the seeds must find (haircut: every peel hop is fully
flagged, so the deposit addresses' flagged amounts are the payments themselves).


The package: records (blocks, transactions, params, truth), builder (`BlockBuilder`: blocks and the
UTXO set), story (`generate`), index (`BitcoinChainIndex`, what Esplora looks up).
"""
