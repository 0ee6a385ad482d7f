"""The records one trace step passes along: what gather read (StepFacts) and what decide and the
follow_* modules decided (StepPlan). The words hops and verdicts use are tracer.domain.verdicts'."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tracer.domain.destinations import BridgedPart
from tracer.domain.labels import Label
from tracer.domain.mixer_links import DepositRow
from tracer.domain.records import HopRow, Job, StoredTransfer
from tracer.domain.verdicts import Judged, Verdict
from tracer.engine import utxo
from tracer.engine.policy import Policy
from tracer.engine.recognised import ServiceLogs
from tracer.engine.taint import TaintedOut
from tracer.store import mixers as mixer_store

MAX_DESTINATIONS = 500  # bridge destinations kept in one router's evidence

Labels = Mapping[str, Sequence[Label]]


@dataclass(frozen=True)
class TraceInfo:
    """The trace as a batch on `chain` sees it: its block window there, and the seeds and totals
    only on the trace's own chain (`home`)."""

    id: int
    chain: str
    seeds: frozenset[str]
    policy: Policy
    from_block: int
    to_block: int
    totals: dict[str, int]
    home: str = ""  # the trace's own chain (`chain` is the batch's)
    hops: int = 0  # hops the trace held when the batch began (policy.max_hops)
    direction: str = "forward"  # backward: engine/backward_jobs.py runs its batches

    def threshold(self, asset: str) -> int:
        """The smallest flagged amount of `asset` a hop follows."""
        return max(1, self.policy.threshold(asset, self.totals.get(asset, 0)))


@dataclass(frozen=True, slots=True)
class FlaggedOut:
    """One flagged outflow of a followed wallet (or an inflow a swap bought): taint says how much."""

    owner: str  # the wallet (the job that makes the hop)
    taint: TaintedOut
    st: StoredTransfer


@dataclass(frozen=True)
class PendingDeposit:
    """Flagged money paid into a mixer pool: stopped unless follow_mixers links it."""

    owner: str  # the depositing wallet (the job that made the hop)
    st: StoredTransfer
    pool: str
    o: TaintedOut
    depth: int
    hop_index: int


@dataclass(frozen=True, slots=True)
class BridgedDeposit:
    """Flagged money paid into a bridge: an exit unless follow_bridges continues it."""

    router: str
    st: StoredTransfer
    hop_index: int


@dataclass
class MixerWrite:
    deposits: list[DepositRow] = field(default_factory=list)
    links: list[mixer_store.LinkRow] = field(default_factory=list)
    recipient_status: dict[str, tuple[str, str]] = field(default_factory=dict)  # labelled/known recipients


@dataclass(frozen=True)
class Continuation:
    """A bridge payout on another chain that continues the trace (written at commit time, where
    the contributions of every deposit paid out by it are summed)."""

    owner: str  # the depositing wallet's job
    chain: str
    payout: StoredTransfer
    depth: int
    deposit: BridgedPart  # the deposit side of the payout hop's evidence, with what it carries


@dataclass
class StepFacts:
    """What gather read for one batch: decide's whole input."""

    trace: TraceInfo
    jobs: Sequence[Job]
    verdicts: dict[str, Verdict]  # the batch's addresses judged on their own (labels, history, depth)
    active: list[str]  # the batch's addresses whose history was read
    outs: list[FlaggedOut]
    labels: Labels  # of the outflows' recipients
    known: Mapping[str, Judged]  # verdicts this trace already holds on those recipients
    service_logs: ServiceLogs = field(default_factory=ServiceLogs)
    utxo_plan: utxo.Plan | None = None

    @property
    def by_addr(self) -> dict[str, Job]:
        return {j.address: j for j in self.jobs}


@dataclass
class StepPlan:
    """What one batch decided, written by commit in one transaction."""

    verdicts: dict[str, Verdict]  # on addresses; exits and stops are also marked into their hops
    services: dict[str, Verdict] = field(default_factory=dict)  # pools, DEXes: recorded, hops keep their own
    hops: list[tuple[str, HopRow]] = field(default_factory=list)  # (owning job's address, hop)
    quiet: set[int] = field(default_factory=set)  # transfer ids of hops that must not wake their recipient
    deposits: list[PendingDeposit] = field(default_factory=list)  # for follow_mixers
    bridged: list[BridgedDeposit] = field(default_factory=list)  # for follow_bridges
    mixer: MixerWrite | None = None
    continuations: list[Continuation] = field(default_factory=list)

    def add(self, owner: str, hop: HopRow, *, quiet: bool = False) -> None:
        self.hops.append((owner, hop))
        if quiet:
            self.quiet.add(hop.transfer_id)
