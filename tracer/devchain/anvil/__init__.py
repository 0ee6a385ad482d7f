"""Real EVM runs on Anvil (Foundry's node): the node process, the dev contracts and the executor
that replays a generated scenario as real transactions."""
