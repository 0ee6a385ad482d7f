"""A trace's policy: how far to follow, how small is too small, where the money stops.

Defaults are chosen so an investigator can post seeds with an empty policy and get a useful trace
of a real laundering case: real cases run 10-20 hops, so the depth limit is well above that, and
the amount threshold is relative to what left the seeds, so it works for 10 ETH and 10,000 ETH
thefts alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tracer.addresses import InvalidAddress, normalize_evm
from tracer.domain.errors import UserError

# haircut: in proportion; flagged_first: flagged money leaves first; fifo: coins leave in the order
# they arrived; full_poison: the literature's poison, everything a tainted address sends is flagged
# (not conserved). tracer.engine.taint has the rules of each.
TAINT_MODELS = ("haircut", "flagged_first", "fifo", "full_poison")
# Values accepted for compatibility: "poison" was flagged_first's name before full_poison existed.
# Traces and clients that sent it keep getting the same model; the stored policy says the new name.
TAINT_MODEL_ALIASES = {"poison": "flagged_first"}
# Where an investigator's trace ends: services that know their customers and can freeze funds.
DEFAULT_STOP = ("exchange", "deposit_address", "hot_wallet", "otc", "payment_processor", "fiat_gateway")
# Services money passes through while changing form (mixers, swaps, bridges).
DEFAULT_THROUGH = ("mixer", "dex", "bridge", "swap_service")
_MAX_DEPTH = 200
_MAX_HOPS = 10_000_000
_MAX_CONFIRMATIONS = 10_000


class PolicyError(UserError, ValueError):
    """A policy field out of bounds; `field` names it for the API's problem body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"policy.{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Policy:
    max_depth: int = 40
    max_hops: int = 1_000_000
    from_block: int = 0
    to_block: int | None = None  # None: the chain head when the trace is created
    from_time: int | None = None  # unix seconds (ISO 8601 accepted); narrows the window to blocks from then
    to_time: int | None = None
    taint_model: str = "haircut"
    min_share: float = 0.0005  # of the seeds' total per asset; below it a hop is not followed
    min_amount: dict[str, int] = field(default_factory=dict)  # asset -> raw amount, overrides min_share
    stop_categories: tuple[str, ...] = DEFAULT_STOP
    through_categories: tuple[str, ...] = DEFAULT_THROUGH
    hub_degree: int = 1000  # distinct counterparties that make an unlabelled address a hub
    hub_in_degree: int = 300  # distinct senders that make an unlabelled address a hub
    sweep_blocks: int = 200  # a deposit address forwards to its exchange within this many blocks
    watch: bool = False  # after the historical pass, keep following new blocks (status watching)
    confirmations: int = 12  # watching: blocks behind the head a block must be before it is followed
    # A mixer deposit -> withdrawal link is only a scored guess: follow links at least this sure,
    # carrying the deposit's flagged amount times the confidence.
    min_link_confidence: float = 0.5

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise PolicyError("", "must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(unknown[0], "unknown policy field")
        kwargs: dict[str, Any] = {}
        for name in ("max_depth", "max_hops", "from_block", "hub_degree", "hub_in_degree", "sweep_blocks"):
            if name in data:
                kwargs[name] = _int(name, data[name])
        if data.get("to_block") is not None:
            kwargs["to_block"] = _int("to_block", data["to_block"])
        for name in ("from_time", "to_time"):
            if data.get(name) is not None:
                kwargs[name] = _time(name, data[name])
        if "watch" in data:
            if not isinstance(data["watch"], bool):
                raise PolicyError("watch", "must be true or false")
            kwargs["watch"] = data["watch"]
        if "confirmations" in data:
            kwargs["confirmations"] = _int("confirmations", data["confirmations"])
        if "taint_model" in data:
            model = data["taint_model"]
            model = TAINT_MODEL_ALIASES.get(model, model) if isinstance(model, str) else model
            if model not in TAINT_MODELS:
                raise PolicyError("taint_model", f"must be one of {', '.join(TAINT_MODELS)} "
                                                 "(poison: the old name of flagged_first)")
            kwargs["taint_model"] = model
        if "min_share" in data:
            value = data["min_share"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise PolicyError("min_share", "must be a number in [0, 1)")
            kwargs["min_share"] = float(value)
        if "min_link_confidence" in data:
            value = data["min_link_confidence"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise PolicyError("min_link_confidence", "must be a number in [0, 1]")
            kwargs["min_link_confidence"] = float(value)
        if "min_amount" in data:
            kwargs["min_amount"] = _amounts(data["min_amount"])
        for name in ("stop_categories", "through_categories"):
            if name in data:
                value = data[name]
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise PolicyError(name, "must be a list of category names")
                kwargs[name] = tuple(value)
        policy = cls(**kwargs)
        policy.check()
        return policy

    def check(self) -> None:
        if not 1 <= self.max_depth <= _MAX_DEPTH:
            raise PolicyError("max_depth", f"must be between 1 and {_MAX_DEPTH}")
        if not 1 <= self.max_hops <= _MAX_HOPS:
            raise PolicyError("max_hops", f"must be between 1 and {_MAX_HOPS}")
        if self.from_block < 0:
            raise PolicyError("from_block", "must be >= 0")
        if self.to_block is not None and self.to_block < self.from_block:
            raise PolicyError("to_block", "must be >= from_block")
        if self.from_time is not None and self.to_time is not None and self.to_time < self.from_time:
            raise PolicyError("to_time", "must be >= from_time")
        if not 0 <= self.confirmations <= _MAX_CONFIRMATIONS:
            raise PolicyError("confirmations", f"must be between 0 and {_MAX_CONFIRMATIONS}")
        for name in ("hub_degree", "hub_in_degree", "sweep_blocks"):
            if getattr(self, name) < 1:
                raise PolicyError(name, "must be >= 1")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["min_amount"] = {k: str(v) for k, v in self.min_amount.items()}
        data["stop_categories"] = list(self.stop_categories)
        data["through_categories"] = list(self.through_categories)
        return data

    def threshold(self, asset: str, total: int) -> int:
        """Smallest flagged amount of `asset` worth following, given the seeds' total of it."""
        if asset in self.min_amount:
            return self.min_amount[asset]
        return int(total * self.min_share)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(name, "must be an integer")
    return value


def _time(name: str, value: Any) -> int:
    """Unix seconds from an integer or an ISO 8601 string (naive times are UTC)."""
    if isinstance(value, bool):
        raise PolicyError(name, "must be unix seconds or an ISO 8601 time")
    if isinstance(value, int):
        if value < 0:
            raise PolicyError(name, "must be >= 0")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PolicyError(name, "must be unix seconds or an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    raise PolicyError(name, "must be unix seconds or an ISO 8601 time")


def _amounts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise PolicyError("min_amount", "must be an object of asset -> raw amount")
    out: dict[str, int] = {}
    for asset, amount in value.items():
        key = asset
        if asset != "native":
            try:
                key = normalize_evm(asset)
            except InvalidAddress as exc:
                raise PolicyError("min_amount", f"asset {asset!r}: {exc.reason}") from None
        try:
            raw = int(str(amount))
        except ValueError:
            raise PolicyError("min_amount", f"amount for {asset!r} must be an integer string") from None
        if raw < 0:
            raise PolicyError("min_amount", f"amount for {asset!r} must be >= 0")
        out[key] = raw
    return out
