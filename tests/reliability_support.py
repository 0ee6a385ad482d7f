"""The reliability tests' faulty nodes and hop snapshots: they live in `bench/faultkit.py`, which
`bench/faults.py` uses too (bench imports nothing from tests/)."""

from bench.faultkit import (
    REORG_A,
    REORG_B,
    REORG_C,
    REORG_EXCHANGE,
    REORG_SEED,
    SCRIPT,
    FaultRun,
    FaultyDevChain,
    FreshDatabases,
    Hop,
    KillRun,
    ReorgingDevChain,
    duplicate_hops,
    every_fault,
    faulty_client,
    forget_transfers,
    hop_rows,
    kill_workers_at_random,
    label_reorg_exchange,
    reference_hops,
    reorg_chains,
    run_faulty,
    run_trace,
    stop_processes,
    trace_reorg_seed,
    worker_process,
)

__all__ = [
    "REORG_A", "REORG_B", "REORG_C", "REORG_EXCHANGE", "REORG_SEED", "SCRIPT", "FaultRun", "FaultyDevChain",
    "FreshDatabases", "Hop",
    "KillRun", "ReorgingDevChain", "duplicate_hops", "every_fault", "faulty_client", "forget_transfers", "hop_rows",
    "kill_workers_at_random", "label_reorg_exchange", "reference_hops", "reorg_chains", "run_faulty", "run_trace",
    "stop_processes", "trace_reorg_seed", "worker_process",
]
