"""The scenario generator, its ground truth, persistence, case replay and the devchain CLI.

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_devchain_scenario.py.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import pytest

from tracer.devchain import cli as devchain_cli
from tracer.devchain.replay import classify_label, load_case
from tracer.devchain.scenario import (
    ETHER,
    KIND_BATCH,
    KIND_MIXER,
    KIND_NATIVE,
    KIND_TOKEN,
    Scenario,
    ScenarioParams,
    ScenarioTx,
    generate,
    reference_haircut,
)
from tracer.domain.transfers import NATIVE

_CASE = """Timestamp,Block,Tx_hash,From,From_label,To,To_label,Value_in_USD
2024-01-01 00:00:11,100,0x{a1},0x{src},Hacker,0x{mid},transit_1,1000000.0
2024-01-01 00:01:11,105,0x{a2},0x{mid},transit_1,0x{dep},KuCoin_Deposit_0xdd,400000.0
2024-01-01 00:01:11,105,0x{a3},0x{mid},transit_1,0x{tc},Tornado.Cash: Router,300000.0
2024-01-01 00:02:11,110,0x{a4},0x{mid},transit_1,0x{hot},Binance 14,200000.5
2024-01-01 00:00:59,104,0x{a5},0x{mid},transit_1,0x{br},Across Protocol: Ethereum Spoke Pool V2,50000
"""


def _balances_never_negative(sc: Scenario) -> None:
    bal: dict[tuple[str, str], int] = defaultdict(int)
    for address, assets in sc.genesis_balances.items():
        for asset, amount in assets.items():
            bal[(address, asset)] += amount
    for block, tx in sc.iter_txs():
        for frm, to, asset, amount in tx.transfers():
            bal[(frm, asset)] -= amount
            assert bal[(frm, asset)] >= 0, f"{frm} overdrawn in {asset} at block {block.number}"
            bal[(to, asset)] += amount


def test_same_seed_same_scenario_other_seed_other(small_scenario: Scenario) -> None:
    again = generate(ScenarioParams.for_size(300, seed=7))
    assert again.blocks == small_scenario.blocks
    assert again.truth == small_scenario.truth
    assert again.labels == small_scenario.labels
    other = generate(ScenarioParams.for_size(300, seed=8))
    assert other.seeds != small_scenario.seeds


@pytest.mark.parametrize("n", [50, 300, 3000])
def test_for_size_gives_about_n_transfers(n: int) -> None:
    sc = generate(ScenarioParams.for_size(n, seed=3))
    count = sc.transfer_count()
    assert 0.7 * n <= count <= max(2.2 * n, 120), count
    _balances_never_negative(sc)


def test_truth_conserves_flagged_money_and_stays_above_threshold(small_scenario: Scenario) -> None:
    truth = small_scenario.truth
    usdt = small_scenario.token("USDT").address
    assert set(truth.stolen) == {NATIVE, usdt}
    for asset, stolen in truth.stolen.items():
        stopped = truth.stopped_total(asset)
        assert stopped <= stolen
        assert stopped >= 0.9 * stolen  # only dormant leftovers stay behind
    # A relative threshold of 0.1 % keeps every real off-ramp.
    for o in truth.offramps:
        assert o.amount >= truth.stolen[o.asset] // 1000, o
    kinds = {o.kind for o in truth.offramps}
    assert kinds == {"deposit_address", "hot_wallet"}
    assert truth.mixer_deposits and truth.hubs and truth.hub_receipts
    assert not {o.address for o in truth.offramps} & set(truth.noise_offramps)
    labelled = {lb.address: lb for lb in small_scenario.labels}
    for o in truth.offramps:
        if o.kind == "deposit_address":
            assert o.address not in labelled  # deposit addresses are never labelled
            assert truth.deposit_addresses[o.address] == o.entity
        else:
            assert labelled[o.address].category == "exchange"
    for m in truth.mixer_deposits:
        assert labelled[m.address].category == "mixer"
    assert all(h not in labelled for h in truth.hubs)


def test_scenario_has_every_shape(small_scenario: Scenario) -> None:
    sc = small_scenario
    truth = sc.truth
    launderers = set(truth.launderers)
    txs = [tx for _, tx in sc.iter_txs()]
    assert any(tx.kind == KIND_BATCH and tx.ok and tx.sender in launderers for tx in txs)
    assert any(tx.kind == KIND_BATCH and not tx.ok and tx.sender in launderers for tx in txs)
    assert any(tx.kind == KIND_TOKEN and not tx.ok for tx in txs)
    assert sum(tx.kind == KIND_MIXER for tx in txs) > len(truth.mixer_deposits)  # unrelated depositors too
    # Peel chain: one laundering wallet pays a deposit address and a fresh laundering wallet in one block.
    deposits = set(truth.deposit_addresses)
    peels = 0
    for block in sc.blocks:
        outs: dict[str, set[str]] = defaultdict(set)
        for tx in block.txs:
            if tx.sender in launderers and tx.ok:
                outs[tx.sender].add(tx.to)
        peels += sum(1 for tos in outs.values() if tos & deposits and tos & launderers)
    assert peels >= 2
    # Every deposit address that received sweeps to its exchange's hot wallet within a few blocks.
    hot = {lb.address: lb.entity for lb in sc.labels if lb.category == "exchange"}
    received: dict[tuple[str, str], int] = {}
    swept: set[tuple[str, str]] = set()
    for block, tx in sc.iter_txs():
        for frm, to, asset, _amount in tx.transfers():
            if to in deposits:
                received.setdefault((to, asset), block.number)
            if frm in deposits:
                assert hot.get(to) == truth.deposit_addresses[frm]
                swept.add((frm, asset))
    assert received and set(received) == swept
    # Dust reached the thieves' wallets; gas top-ups reached laundering wallets.
    seeds = set(sc.seeds)
    tiny_in = [tx for tx in txs if tx.to in seeds and tx.ok and tx.value < ETHER // 1000 and tx.sender not in seeds]
    assert tiny_in
    assert any(tx.sender in hot and tx.to in launderers and tx.value < ETHER // 10 for tx in txs)


def test_reference_haircut_matches_the_domain_example() -> None:
    # W holds 10 clean ETH, receives 30 flagged, sends 20 to X: X gets 15 flagged.
    seed, w, x = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
    txs = [
        ScenarioTx(KIND_NATIVE, seed, w, 30 * ETHER),
        ScenarioTx(KIND_NATIVE, w, x, 20 * ETHER),
        ScenarioTx(KIND_NATIVE, w, x, 5 * ETHER, ok=False),
    ]
    received, receipts, sent = reference_haircut(
        txs, {w: {NATIVE: 10 * ETHER}, seed: {NATIVE: 30 * ETHER}}, [seed], [x]
    )
    assert received == {(x, NATIVE): 15 * ETHER}
    assert receipts == {(x, NATIVE): 1}
    assert sent == {NATIVE: 30 * ETHER}


@pytest.mark.parametrize("name", ["scenario.json", "scenario.json.gz"])
def test_save_and_load_round_trip(small_scenario: Scenario, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    small_scenario.save(path)
    loaded = Scenario.load(path)
    assert loaded.blocks == small_scenario.blocks
    assert loaded.truth == small_scenario.truth
    assert loaded.labels == small_scenario.labels
    assert loaded.tokens == small_scenario.tokens
    assert loaded.genesis_balances == small_scenario.genesis_balances
    assert loaded.mixer_pools == small_scenario.mixer_pools
    assert loaded.seeds == small_scenario.seeds


def _write_case(d: Path) -> dict[str, str]:
    a = {k: (c * 40) for k, c in {"src": "1", "mid": "2", "dep": "3", "tc": "4", "hot": "5", "br": "6"}.items()}
    hashes = {f"a{k}": f"{k}" * 64 for k in range(1, 6)}
    d.mkdir()
    (d / "tiny.csv").write_text(_CASE.format(**a, **hashes))
    (d / "source_addresses.csv").write_text(f"0x{a['src']}\n")
    (d / "terminal_addresses.csv").write_text("\n".join(f"0x{a[k]}" for k in ("dep", "tc", "hot", "br")))
    return {k: "0x" + v for k, v in a.items()}


def test_replay_of_a_tiny_case(tmp_path: Path) -> None:
    a = _write_case(tmp_path / "tiny")
    sc = load_case(tmp_path / "tiny", seed=3)
    _balances_never_negative(sc)
    usd = sc.tokens[0]
    assert usd.decimals == 6
    assert sc.seeds == [a["src"]]
    truth = sc.truth
    assert truth.stolen == {usd.address: 1_000_000 * 10**6}
    by_address = {o.address: o for o in truth.offramps}
    assert by_address[a["dep"]].kind == "deposit_address" and by_address[a["dep"]].entity == "KuCoin"
    assert by_address[a["hot"]].kind == "hot_wallet" and by_address[a["hot"]].entity == "Binance"
    assert [m.address for m in truth.mixer_deposits] == [a["tc"]]
    assert [(e.address, e.category) for e in truth.other_exits] == [(a["br"], "bridge")]
    # The case's order survives (block 104 edge before block 105 ones) and mid's clean inflows dilute a little.
    assert 0.9 * 400_000e6 <= by_address[a["dep"]].amount <= 400_000e6
    assert truth.stopped_total(usd.address) <= truth.stolen[usd.address]
    # The deposit terminal sweeps to a KuCoin hot wallet; the deposit address itself is unlabelled.
    labels = {lb.address: lb for lb in sc.labels}
    assert a["dep"] not in labels
    sweeps = [tx for _, tx in sc.iter_txs() if tx.sender == a["dep"]]
    assert sweeps and all(labels[tx.to].entity == "KuCoin" for tx in sweeps)
    assert sc.transfer_count() > 5 * 3  # noise around the five edges


def test_classify_label() -> None:
    assert classify_label("KuCoin_Deposit_0x23aa") == ("deposit", "KuCoin")
    assert classify_label("Binance 14") == ("exchange", "Binance")
    assert classify_label("Tornado.Cash: Router") == ("mixer", "Tornado Cash")
    assert classify_label("THORChain: THORChain Router v4.1.1") == ("bridge", "THORChain")
    assert classify_label("transit_9c7a") is None
    assert classify_label("") is None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracer")
    devchain_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_generates_and_saves_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sc.json.gz"
    args = _parser().parse_args(["devchain", "--generate", "120", "--seed", "4", "--save", str(out), "--save-only"])
    assert args.func(args) == 0
    assert Scenario.load(out).blocks == generate(ScenarioParams.for_size(120, seed=4)).blocks
    assert "transfers" in capsys.readouterr().out
