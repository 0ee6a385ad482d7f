"""Policy parsing: defaults fit real laundering; bad fields are named."""

import pytest

from tracer.engine.policy import Policy, PolicyError


def test_empty_policy_has_useful_defaults() -> None:
    p = Policy.from_json({})
    assert p.max_depth >= 20  # real cases run 10-20 hops
    assert p.taint_model == "haircut"
    assert "exchange" in p.stop_categories and "deposit_address" in p.stop_categories
    assert p.threshold("native", 1000 * 10**18) == int(1000 * 10**18 * p.min_share)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_depth": -1}, "max_depth"),
        ({"max_depth": "5"}, "max_depth"),
        ({"max_depth": True}, "max_depth"),
        ({"max_hops": 0}, "max_hops"),
        ({"taint_model": "magic"}, "taint_model"),
        ({"min_share": 2}, "min_share"),
        ({"min_amount": {"0x12": "5"}}, "min_amount"),
        ({"min_amount": {"native": "-5"}}, "min_amount"),
        ({"from_block": 10, "to_block": 5}, "to_block"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_named(data: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as err:
        Policy.from_json(data)
    assert err.value.field == field


def test_round_trip() -> None:
    p = Policy.from_json({"max_depth": 7, "min_amount": {"native": "1000"}, "taint_model": "poison"})
    assert Policy.from_json(p.to_json()) == p


def test_time_window_accepts_iso_and_unix() -> None:
    p = Policy.from_json({"from_time": "2024-08-22T14:05:59Z", "to_time": 1724400000})
    assert p.from_time == 1724335559 and p.to_time == 1724400000
    with pytest.raises(PolicyError) as err:
        Policy.from_json({"from_time": "yesterday"})
    assert err.value.field == "from_time"
    with pytest.raises(PolicyError) as err:
        Policy.from_json({"from_time": 10, "to_time": 5})
    assert err.value.field == "to_time"
