"""An embedded EVM dev chain to run tracer against, with laundering scenarios and their truth.

- `scenario/`: `ScenarioParams` / `generate()` (deterministic by seed), `Scenario` (save/load),
  `Truth` and the reference haircut simulation it comes from (see its __init__ for the modules).
- `chain.py`: `Chain`, the in-memory chain (hashes, call frames, logs, balances, indexes, reorgs).
- `server.py`: `DevChainServer`, Ethereum JSON-RPC over HTTP with latency, rate limits, result
  caps, optional traces and a seeded `FaultPlan`.
- `http.py`: `KnobServer`, the base of both HTTP servers (lifecycle, latency, the requests/s
  limit, `FaultPlan` and its per-request faults).
- `replay.py`: `load_case()`, a real mftracer case replayed as a Scenario with noise.
- `cli.py`: the `tracer devchain` sub-command.

Only the CLI, tests and benches import it; the tracer itself never does.
"""
