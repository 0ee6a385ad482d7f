"""UTXO heuristics (tracer.engine.utxo) on constructed transactions: change outputs, CoinJoin
patterns shaped like real Whirlpool, Wasabi and JoinMarket rounds, links through a CoinJoin, and
common-input-ownership clustering."""

from __future__ import annotations

import hashlib

import pytest

from tracer.addresses import encode_btc_base58, encode_btc_segwit, normalize_btc
from tracer.chains.utxo_records import TxIn, TxOut, UtxoTx
from tracer.devchain.bitcoin.index import BitcoinChainIndex
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams
from tracer.devchain.bitcoin.story import generate
from tracer.domain.transfers import Movement
from tracer.engine import utxo
from tracer.engine.taint import propagate

BTC = 100_000_000


def _h(tag: str, n: int, size: int) -> bytes:
    return hashlib.sha256(f"{tag}:{n}".encode()).digest()[:size]


def wpkh(n: int) -> str:
    return encode_btc_segwit("bc", 0, _h("wpkh", n, 20))


def tr(n: int) -> str:
    return encode_btc_segwit("bc", 1, _h("tr", n, 32))


def pkh(n: int) -> str:
    return encode_btc_base58(0x00, _h("pkh", n, 20))


def sh(n: int) -> str:
    return encode_btc_base58(0x05, _h("sh", n, 20))


_txn = [0]


def tx(
    inputs: list[tuple[str | None, int]], outputs: list[tuple[str | None, int]], *, coinbase: bool = False
) -> UtxoTx:
    _txn[0] += 1
    txid = hashlib.sha256(f"tx{_txn[0]}".encode()).hexdigest()
    ins = tuple(TxIn(i, a, v, hashlib.sha256(f"prev{_txn[0]}:{i}".encode()).hexdigest(), 0, coinbase=coinbase)
                for i, (a, v) in enumerate(inputs))
    outs = tuple(TxOut(i, a, v) for i, (a, v) in enumerate(outputs))
    fee = max(0, sum(v for _, v in inputs) - sum(v for _, v in outputs))
    return UtxoTx(txid, 800_000, 1_700_000_000, 1, ins, outs, fee)


def test_generated_addresses_are_valid_and_typed() -> None:
    for make, kind in ((wpkh, "p2wpkh"), (tr, "p2tr"), (pkh, "p2pkh"), (sh, "p2sh")):
        a = make(1)
        assert normalize_btc(a) == a
        assert utxo.script_type(a) == kind
    assert utxo.script_type(None) is None
    assert utxo.script_type(None, "op_return") == "op_return"
    assert utxo.script_type(wpkh(1), "v0_p2wpkh") == "p2wpkh"
    assert utxo.script_type(tr(1), "v1_p2tr") == "p2tr"


def test_round_amounts() -> None:
    assert utxo.is_round(5_000_000) and utxo.is_round(10_000)
    assert not utxo.is_round(5_000_001) and not utxo.is_round(0) and not utxo.is_round(1_234_567)


# -- change outputs -------------------------------------------------------------------------------


def test_change_by_script_type() -> None:
    # p2wpkh wallet pays a legacy address: the p2wpkh output is the change (amounts tell nothing).
    t = tx([(wpkh(1), 100_003_000)], [(pkh(2), 31_234_567), (wpkh(3), 68_765_433)])
    guess = utxo.detect_change(t)
    assert guess.vout == 1
    assert any("same script type" in r and "p2wpkh" in r for r in guess.reasons)
    assert "two outputs: one payment and one change" in guess.reasons
    assert guess.confidence == pytest.approx(0.6)


def test_change_by_round_payment() -> None:
    t = tx([(wpkh(1), 100_000_000)], [(wpkh(2), 5_000_000), (wpkh(3), 94_987_654)])
    guess = utxo.detect_change(t)
    assert guess.vout == 1
    assert any("non-round" in r for r in guess.reasons)


def test_round_and_type_agree_raise_confidence() -> None:
    t = tx([(wpkh(1), 100_000_000)], [(tr(2), 25_000_000), (wpkh(3), 74_987_654)])
    guess = utxo.detect_change(t)
    assert guess.vout == 1 and guess.confidence == pytest.approx(0.8)
    assert guess.scores == {0: 0.0, 1: 2.0}


def test_change_by_address_reuse_wins_over_everything() -> None:
    # The change goes back to the input's own address even though it is the round one.
    a = wpkh(1)
    t = tx([(a, 100_000_000)], [(wpkh(2), 12_345_678), (a, 87_000_000)])
    guess = utxo.detect_change(t)
    assert guess.vout == 1
    assert guess.reasons[0] == "address reuse: pays back an input address"
    assert guess.confidence == pytest.approx(0.95)


def test_optimal_change_smaller_than_every_input() -> None:
    t = tx([(wpkh(1), 30_000_000), (wpkh(2), 40_000_000)], [(wpkh(3), 61_234_567), (wpkh(4), 8_754_321)])
    guess = utxo.detect_change(t)
    assert guess.vout == 1
    assert any("optimal change" in r for r in guess.reasons)


def test_an_address_seen_before_is_not_fresh_change() -> None:
    payee = wpkh(2)
    t = tx([(wpkh(1), 100_000_000)], [(payee, 41_234_567), (wpkh(3), 58_754_321)])
    assert utxo.detect_change(t).vout is None  # nothing tells them apart
    guess = utxo.detect_change(t, seen={payee})
    assert guess.vout == 1 and guess.scores == {0: 0.0, 1: 1.0}
    assert any("only fresh address" in r for r in guess.reasons)
    # Reuse of an input address is change even if the address was seen (it was: as the input).
    a = wpkh(1)
    t2 = tx([(a, 100_000_000)], [(payee, 41_234_567), (a, 58_754_321)])
    assert utxo.detect_change(t2, seen={a, payee}).vout == 1


def test_no_change_when_nothing_stands_out() -> None:
    t = tx([(wpkh(1), 100_000_000)], [(wpkh(2), 41_234_567), (wpkh(3), 58_754_321)])
    guess = utxo.detect_change(t)
    assert guess.vout is None and guess.confidence == 0.0
    assert "no output stands out" in guess.reasons[0]
    sweep = tx([(wpkh(1), 100_000_000)], [(wpkh(2), 99_990_000)])
    assert utxo.detect_change(sweep).vout is None
    # OP_RETURN outputs are not candidates.
    memo = tx([(wpkh(1), 100_000_000)], [(None, 0), (wpkh(2), 99_990_000)])
    assert utxo.detect_change(memo).vout is None


def test_more_than_two_outputs_need_a_margin_of_two() -> None:
    # A batch payment: one heuristic alone does not single out the change among three outputs.
    t = tx([(wpkh(1), 100_000_000)], [(wpkh(2), 10_000_000), (wpkh(3), 20_000_000), (wpkh(4), 69_987_654)])
    assert utxo.detect_change(t).vout is None
    t2 = tx([(wpkh(1), 100_000_000)], [(pkh(2), 10_000_000), (sh(3), 20_000_000), (wpkh(4), 69_987_654)])
    guess = utxo.detect_change(t2)
    assert guess.vout == 2
    assert "two outputs: one payment and one change" not in guess.reasons


# -- CoinJoins ------------------------------------------------------------------------------------


def whirlpool_mix(denomination: int = 5_000_000) -> UtxoTx:
    """A Whirlpool 0.05 BTC mix as seen on chain: 5 p2wpkh inputs (two fresh premix outputs that
    carry the miner fee on top of the denomination, three remixes of exactly the denomination),
    5 fresh p2wpkh outputs of exactly the denomination."""
    ins = [(wpkh(100), denomination + 1_170), (wpkh(101), denomination + 1_170), (wpkh(102), denomination),
           (wpkh(103), denomination), (wpkh(104), denomination)]
    return tx(ins, [(wpkh(110 + i), denomination) for i in range(5)])


def test_whirlpool_5x5() -> None:
    info = utxo.detect_coinjoin(whirlpool_mix())
    assert info is not None
    assert info.pattern == "whirlpool" and info.denomination == 5_000_000 and info.anonymity_set == 5
    assert info.equal_vouts == (0, 1, 2, 3, 4) and info.change_vouts == ()
    for d in utxo.WHIRLPOOL_DENOMINATIONS:
        found = utxo.detect_coinjoin(whirlpool_mix(d))
        assert found is not None and found.pattern == "whirlpool"
    # Not a pool denomination, or not 5 x 5: not Whirlpool (and too small for the others).
    assert utxo.detect_coinjoin(whirlpool_mix(3_000_000)) is None  # 5 equal, no change: no known pattern


def test_whirlpool_links_are_one_in_five() -> None:
    mix = whirlpool_mix()
    info = utxo.detect_coinjoin(mix)
    assert info is not None
    links = utxo.coinjoin_links(mix, info, {wpkh(102)})
    assert [lk.kind for lk in links] == ["mixed"] * 5
    assert all(lk.confidence == pytest.approx(0.2) for lk in links)
    assert "one of 5 equal 0.05 BTC outputs" in links[0].reasons[0]


BASE = 9_992_506  # a Wasabi 1.x base denomination (it drifted just under 0.1 BTC)


def wasabi_round(n_equal: int = 60) -> tuple[UtxoTx, str, int]:
    """A Wasabi 1.x round: n_equal outputs of the base denomination, a few at the 2x level, the
    coordinator's fee (0.003% x anonymity set per participant), each participant's change.
    Returns the tx, the tainted participant's address and the vout of its change."""
    ins: list[tuple[str | None, int]] = []
    outs: list[tuple[str | None, int]] = []
    fee_per_input = 3_500
    coord_fee = int(utxo.WASABI_FEE_RATE * n_equal * BASE)  # per base-denomination participant
    tainted = wpkh(500)
    tainted_in = 35_000_000  # 0.35 BTC: buys three base outputs
    ins.append((tainted, tainted_in))
    outs += [(wpkh(600 + i), BASE) for i in range(3)]
    tainted_change = tainted_in - 3 * BASE - 3 * coord_fee - fee_per_input
    outs.append((wpkh(700), tainted_change))
    change_vout = len(outs) - 1
    k = 3
    p = 0
    # Other participants: one base output each (some with two inputs), a few on the 2x level.
    while k < n_equal:
        p += 1
        amount = BASE + 10_000_000 + 137_911 * p  # changes of 0.1-0.18 BTC
        ins.append((wpkh(1000 + p), amount))
        outs.append((wpkh(2000 + p), BASE))
        outs.append((wpkh(3000 + p), amount - BASE - coord_fee - fee_per_input))
        k += 1
    for j in range(4):
        ins.append((wpkh(4000 + j), 2 * BASE + 250_000))
        outs.append((wpkh(4100 + j), 2 * BASE))
    total_fee = coord_fee * (n_equal + 8)
    outs.append((wpkh(9999), total_fee))
    order = list(range(len(outs)))
    # Wasabi shuffles outputs; keep it deterministic and keep track of the tainted change.
    order = order[::2] + order[1::2]
    shuffled = [outs[i] for i in order]
    return tx(ins, shuffled), tainted, order.index(change_vout)


def test_wasabi_round() -> None:
    t, _tainted, change_vout = wasabi_round()
    info = utxo.detect_coinjoin(t)
    assert info is not None and info.pattern == "wasabi"
    assert info.denomination == BASE and info.anonymity_set == 60
    assert len(info.equal_vouts) == 60 + 4  # base denomination and the 2x level
    assert info.coordinator_vout is not None and t.outputs[info.coordinator_vout].address == wpkh(9999)
    assert change_vout in info.change_vouts
    assert info.coordinator_vout not in info.change_vouts
    assert any("coordinator fee" in r for r in info.reasons)


def test_wasabi_links_follow_the_participant_change() -> None:
    t, tainted, change_vout = wasabi_round()
    info = utxo.detect_coinjoin(t)
    assert info is not None
    links = utxo.coinjoin_links(t, info, {tainted})
    best = links[0]
    assert best.kind == "change" and best.vout == change_vout
    assert best.confidence == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE)
    assert "3 x 0.09992506 BTC mixed" in best.reasons[0]
    mixed = [lk for lk in links if lk.kind == "mixed"]
    assert len(mixed) == len(info.equal_vouts)
    assert all(lk.confidence == pytest.approx(3 / 60) for lk in mixed)
    # Only one output is above any sensible link threshold.
    assert [lk.vout for lk in links if lk.confidence >= 0.5] == [change_vout]


def test_change_link_of_another_script_type_is_less_sure() -> None:
    t, tainted, change_vout = wasabi_round()
    outs = list(t.outputs)
    outs[change_vout] = TxOut(change_vout, pkh(77), outs[change_vout].value)
    t2 = UtxoTx(t.txid, t.block_number, t.block_time, t.tx_index, t.inputs, tuple(outs), t.fee)
    info = utxo.detect_coinjoin(t2)
    assert info is not None
    best = utxo.coinjoin_links(t2, info, {tainted})[0]
    assert best.vout == change_vout and best.confidence == pytest.approx(utxo.CHANGE_LINK_OTHER_TYPE)


def test_joinmarket() -> None:
    # Taker and 3 makers: 4 equal 0.25 BTC outputs, 3 maker changes (the taker sent exactly 0.25
    # plus its fees); each maker's change is its inputs less the denomination plus its fee income.
    d = 25_000_000
    ins = [(wpkh(1), d + 3_000), (wpkh(2), 40_000_000), (wpkh(3), 31_234_567), (wpkh(3), 10_000_000),
           (wpkh(4), 60_000_000)]
    outs = [(wpkh(11), d), (wpkh(12), d), (wpkh(13), d), (wpkh(14), d),
            (wpkh(22), 40_000_000 - d + 250), (wpkh(23), 41_234_567 - d + 250), (wpkh(24), 60_000_000 - d + 250)]
    t = tx(ins, outs)
    info = utxo.detect_coinjoin(t)
    assert info is not None and info.pattern == "joinmarket"
    assert info.anonymity_set == 4 and info.equal_vouts == (0, 1, 2, 3) and info.change_vouts == (4, 5, 6)
    # The maker at wpkh(3) spent two inputs: its change is the one that fits their sum.
    links = utxo.coinjoin_links(t, info, {wpkh(3)})
    assert (links[0].kind, links[0].vout) == ("change", 5)
    assert links[0].confidence == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE)
    assert "fee income" in links[0].reasons[0]
    assert [lk.confidence for lk in links[1:]] == pytest.approx([1 / 4] * 4)
    # The taker has no change: its money is one of the four equal outputs.
    taker = utxo.coinjoin_links(t, info, {wpkh(1)})
    assert [lk.kind for lk in taker] == ["mixed"] * 4 and taker[0].confidence == pytest.approx(0.25)


def test_two_change_outputs_that_fit_share_the_confidence() -> None:
    d = 25_000_000
    ins = [(wpkh(1), 30_000_000), (wpkh(2), 30_000_000), (wpkh(3), 50_000_000)]
    outs = [(wpkh(11), d), (wpkh(12), d), (wpkh(13), d),
            (wpkh(21), 30_000_000 - d - 2_000), (wpkh(22), 30_000_000 - d - 2_100), (wpkh(23), 50_000_000 - d - 2_000)]
    t = tx(ins, outs)
    info = utxo.detect_coinjoin(t)
    assert info is not None and info.pattern == "joinmarket"
    links = utxo.coinjoin_links(t, info, {wpkh(2)})
    change = [lk for lk in links if lk.kind == "change"]
    assert {lk.vout for lk in change} == {3, 4}
    assert all(lk.confidence == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE / 2) for lk in change)
    assert not any(lk.confidence >= 0.5 for lk in links)
    assert utxo.coinjoin_links(t, info, {wpkh(99)}) == []  # not a participant


def test_equal_outputs_without_participants_are_not_a_coinjoin() -> None:
    # An exchange's batch payout: one input, five customers paid the same amount.
    batch = tx([(wpkh(1), 60_000_000)], [(wpkh(10 + i), 10_000_000) for i in range(5)] + [(wpkh(1), 9_990_000)])
    assert utxo.detect_coinjoin(batch) is None
    # Swept deposits paying three equal withdrawals with one change: an exchange, not JoinMarket.
    sweep_pay = tx([(wpkh(30 + i), 4_000_000) for i in range(6)],
                   [(wpkh(40), 1_000_000), (wpkh(41), 1_000_000), (wpkh(42), 1_000_000), (wpkh(43), 20_990_000)])
    assert utxo.detect_coinjoin(sweep_pay) is None
    # Two equal outputs are a coincidence, not a pattern.
    pair = tx([(wpkh(1), 30_000_000), (wpkh(2), 30_000_000)], [(wpkh(3), 25_000_000), (wpkh(4), 25_000_000)])
    assert utxo.detect_coinjoin(pair) is None
    assert utxo.detect_coinjoin(tx([(wpkh(1), 10)], [(wpkh(2), 5)])) is None


def test_wasabi2_round() -> None:
    # WabiSabi: 80 inputs, outputs in standard denominations (several equal groups), a few leftovers.
    denoms = [5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 1_048_576, 2_097_152]
    ins = [(wpkh(5000 + i), 1_500_000 + 7_919 * i) for i in range(80)]
    outs = [(wpkh(6000 + i), denoms[i % len(denoms)]) for i in range(96)] + [(wpkh(7000 + i), 13_337 + i)
                                                                             for i in range(10)]
    info = utxo.detect_coinjoin(tx(ins, outs))
    assert info is not None and info.pattern == "wasabi2"
    assert info.anonymity_set == 12 and len(info.equal_vouts) == 96 and len(info.change_vouts) == 10


def test_coinjoin_info_json() -> None:
    info = utxo.detect_coinjoin(whirlpool_mix())
    assert info is not None
    body = info.to_json()
    assert body["pattern"] == "whirlpool" and body["denomination"] == "5000000" and body["anonymity_set"] == 5


# -- common-input ownership -----------------------------------------------------------------------


def test_clusters_merge_inputs_transitively_and_skip_coinjoins() -> None:
    a, b, c, d = wpkh(1), wpkh(2), pkh(3), tr(4)
    c1 = utxo.Clusters()
    assert c1.add(tx([(a, 10), (b, 20)], [(wpkh(9), 25)]))
    assert c1.add(tx([(b, 10), (c, 20)], [(wpkh(9), 25)]))
    assert c1.same(a, c) and not c1.same(a, d)
    assert c1.members(a) == {a, b, c}
    mix = whirlpool_mix()
    assert not c1.add(mix)
    assert c1.skipped == [mix.txid]
    assert not c1.same(wpkh(100), wpkh(101))
    # Coinbase inputs have no owner to merge.
    assert not c1.add(tx([(None, 0)], [(d, 625_000_000)], coinbase=True))
    groups = utxo.cluster([tx([(a, 1), (b, 1)], [(d, 1)]), tx([(d, 1), (wpkh(5), 1)], [(a, 1)])]).groups()
    assert sorted(map(sorted, groups)) == sorted([sorted({a, b}), sorted({d, wpkh(5)})])


# -- what the worker does with them ---------------------------------------------------------------


def test_enter_coinjoin_follows_only_the_change_and_scales_taint() -> None:
    t, tainted, change_vout = wasabi_round()
    info = utxo.detect_coinjoin(t)
    assert info is not None
    # Half of the participant's 0.35 BTC was flagged.
    entry = utxo.enter_coinjoin(t, info, tainted, 17_500_000, 35_000_000, min_confidence=0.5)
    assert entry.linked
    followed = [o for o in entry.outputs if o.followed]
    assert [o.vout for o in followed] == [change_vout]
    change = followed[0]
    assert change.carried == int(change.value * 0.5 * utxo.CHANGE_LINK_SAME_TYPE)
    mixed = [o for o in entry.outputs if o.kind == "mixed"]
    assert all(not o.followed and o.carried == int(o.value * 0.5 * 3 / 60) for o in mixed)
    ev = entry.evidence()
    assert ev["anonymity_set"] == 60 and ev["pattern"] == "wasabi" and ev["flagged"] == "17500000"
    assert ev["summary"].startswith("entered CoinJoin (wasabi), 0.175 BTC flagged, anonymity set 60")
    assert len(ev["links"]) == 10 and ev["links"][0]["followed"] is True
    # A threshold under 1/n follows the equal outputs too; above the change's confidence, nothing.
    low = utxo.enter_coinjoin(t, info, tainted, 17_500_000, 35_000_000, min_confidence=0.01)
    assert sum(o.followed for o in low.outputs) == 1 + len(info.equal_vouts)
    high = utxo.enter_coinjoin(t, info, tainted, 17_500_000, 35_000_000, min_confidence=0.99)
    assert not high.linked


def test_enter_whirlpool_is_unlinked_at_the_default_threshold() -> None:
    mix = whirlpool_mix()
    info = utxo.detect_coinjoin(mix)
    assert info is not None
    entry = utxo.enter_coinjoin(mix, info, wpkh(102), 5_000_000, 5_000_000, min_confidence=0.5)
    assert not entry.linked and len(entry.outputs) == 5
    assert all(o.carried == 1_000_000 for o in entry.outputs)  # 1/5 of each 0.05 BTC output


def test_merge_inflows_bounds_taint_by_the_whole_output() -> None:
    # The change address got its output as three proportional parts (one per CoinJoin input
    # address); the traced part is 100, the link carries 900 into the 1,000-sat output.
    order = (5, 1, 0, "in")
    moves = [Movement(1, order, "native", 100, True, "a", "cj"), Movement(2, order, "native", 500, True, "b", "cj"),
             Movement(3, order, "native", 400, True, "c", "cj"), Movement(4, (6, 0, 0, "o"), "native", 1_000, False,
                                                                          "x", "next")]
    unmerged = propagate(moves, {1: 900}, {})
    assert unmerged[0].amount == 100  # capped by the part: taint lost
    merged, flagged = utxo.merge_inflows(moves, {1: 900})
    assert [m.transfer_id for m in merged] == [1, 4] and merged[0].amount == 1_000
    assert flagged == {1: 900}
    out = propagate(merged, flagged, {})
    assert out[0].amount == 900 and out[0].parents == [1]
    # An untouched timeline comes back as it was.
    same, same_flagged = utxo.merge_inflows(moves[:1] + moves[3:], {1: 50})
    assert same == moves[:1] + moves[3:] and same_flagged == {1: 50}


def test_plan_marks_peel_change_and_turns_coinjoin_outflows_into_an_entry() -> None:
    w = wpkh(40)
    peel = tx([(w, 100_000_000)], [(pkh(41), 5_000_000), (wpkh(42), 94_990_000 - 1_234)])
    cj, tainted, change_vout = wasabi_round()
    flows = [utxo.Outflow(w, 1, peel.txid, pkh(41), 5_000_000, 5_000_000),
             utxo.Outflow(w, 2, peel.txid, wpkh(42), 94_988_766, 94_988_766)]
    # The CoinJoin as the chain layer flattens it: the tainted input's part of every output.
    total_in = cj.total_in
    flows += [utxo.Outflow(tainted, 100 + o.index, cj.txid, o.address or "", o.value * 35_000_000 // total_in,
                           o.value * 35_000_000 // total_in) for o in cj.outputs]
    p = utxo.plan(flows, {peel.txid: peel, cj.txid: cj}, {}, set(), 0.5)
    assert p.change == {2: {"change": True, "txid": peel.txid, "vout": 1, "confidence": 0.8,
                            "reasons": p.change[2]["reasons"]}}
    assert any("non-round" in r for r in p.change[2]["reasons"])
    assert p.inside == {100 + o.index for o in cj.outputs}
    (entry,) = p.entries
    assert entry.depositor == tainted and entry.info.anonymity_set == 60
    assert [o.vout for o in entry.outputs if o.followed] == [change_vout]
    assert p.transfer_of[(tainted, cj.txid, cj.outputs[change_vout].address or "")] == 100 + change_vout
    # The payee was seen before the peel: the fresh output is the change even when both are round.
    peel2 = tx([(w, 100_000_000)], [(wpkh(41), 5_000_000), (wpkh(43), 94_990_000)])
    flows2 = [utxo.Outflow(w, 3, peel2.txid, wpkh(41), 1, 1), utxo.Outflow(w, 4, peel2.txid, wpkh(43), 1, 1)]
    assert utxo.plan(flows2, {peel2.txid: peel2}, {w: [(799_999, wpkh(41))]}, set(), 0.5).change.keys() == {4}
    assert utxo.plan(flows2, {peel2.txid: peel2}, {w: [(800_001, wpkh(41))]}, set(), 0.5).change == {}
    assert utxo.plan(flows2, {peel2.txid: peel2}, {}, {wpkh(41)}, 0.5).change.keys() == {4}
    assert utxo.plan(flows2, {}, {}, set(), 0.5).change == {}  # transaction not fetched: nothing decided


def test_a_whale_taking_several_equal_outputs() -> None:
    # WabiSabi-style: 21 participants, the whale (98.7 BTC in) takes 5 of 25 equal 0.1 BTC outputs;
    # inputs are fewer than equal outputs, and its change dwarfs every other output.
    d = 10_000_000
    whale = wpkh(800)
    ins: list[tuple[str | None, int]] = [(whale, 9_870_000_000)]
    outs: list[tuple[str | None, int]] = [(wpkh(810 + i), d) for i in range(5)]
    outs.append((wpkh(820), 9_870_000_000 - 5 * d - 3_500 - 150_000))
    for p in range(20):
        value = d + 2_000_000 + 1_733_331 * p
        ins.append((wpkh(900 + p), value))
        outs += [(wpkh(1000 + p), d), (wpkh(1100 + p), value - d - 1_500 - 30_000)]
    outs.append((wpkh(1200), 750_000))  # coordinator
    t = tx(ins, outs)
    info = utxo.detect_coinjoin(t)
    assert info is not None and info.pattern == "wasabi" and info.anonymity_set == 25
    links = utxo.coinjoin_links(t, info, {whale})
    assert (links[0].kind, links[0].vout, links[0].confidence) == ("change", 5, utxo.CHANGE_LINK_SAME_TYPE)
    assert "5 x 0.1 BTC mixed" in links[0].reasons[0]
    assert all(lk.confidence == pytest.approx(5 / 25) for lk in links[1:])


def test_two_addresses_of_one_participant_share_one_change() -> None:
    # The thief split its coins over two addresses in one transaction (0.22 + 0.13 BTC) and
    # registered both: one change for both, which fits neither alone. Siblings (outputs of one
    # earlier transaction) are scored together, each wallet's entry carrying its part.
    t, tainted, change_vout = wasabi_round()
    a, b = wpkh(501), wpkh(502)
    ins = [TxIn(0, a, 22_000_000, "11" * 32, 0), TxIn(len(t.inputs), b, 13_000_000, "11" * 32, 1),
           *(i for i in t.inputs if i.address != tainted)]
    t2 = UtxoTx(t.txid, t.block_number, t.block_time, t.tx_index, tuple(ins), t.outputs, t.fee)
    info = utxo.detect_coinjoin(t2)
    assert info is not None
    assert utxo.sibling_inputs(t2, info, a) == {b} and utxo.sibling_inputs(t2, info, b) == {a}
    for alone in (a, b):
        assert change_vout not in [lk.vout for lk in utxo.coinjoin_links(t2, info, {alone}) if lk.kind == "change"]
    out_a = t2.total_out * 22_000_000 // t2.total_in
    out_b = t2.total_out * 13_000_000 // t2.total_in
    value = t2.outputs[change_vout].value
    conf = utxo.CHANGE_LINK_SAME_TYPE
    # Only a is traced (b's coins dilute a's share all the same), then both in one batch, then
    # each in a batch of its own: the same links and amounts every time.
    only_a = utxo.plan([utxo.Outflow(a, 1, t2.txid, t2.outputs[0].address or "", out_a, out_a)],
                       {t2.txid: t2}, {}, set(), 0.5)
    both = utxo.plan([utxo.Outflow(a, 1, t2.txid, t2.outputs[0].address or "", out_a, out_a),
                      utxo.Outflow(b, 2, t2.txid, t2.outputs[0].address or "", out_b, out_b)], {t2.txid: t2}, {},
                     set(), 0.5)
    only_b = utxo.plan([utxo.Outflow(b, 2, t2.txid, t2.outputs[0].address or "", out_b, out_b)],
                       {t2.txid: t2}, {}, set(), 0.5)
    ea, eb = sorted(both.entries, key=lambda e: e.depositor != a)
    assert only_a.entries == [ea] and only_b.entries == [eb]
    assert ea.companions == (b,) and eb.companions == (a,) and ea.evidence()["together_with"] == [b]
    change_a = next(o for o in ea.outputs if o.followed)
    change_b = next(o for o in eb.outputs if o.followed)
    assert change_a.vout == change_b.vout == change_vout
    assert change_a.carried == pytest.approx(value * out_a / (out_a + out_b) * conf, abs=2)
    assert change_a.carried + change_b.carried == pytest.approx(value * conf, abs=3)
    # Coins of unrelated origin are other participants'.
    ins[1] = TxIn(len(t.inputs), b, 13_000_000, "22" * 32, 0)
    t3 = UtxoTx(t.txid, t.block_number, t.block_time, t.tx_index, tuple(ins), t.outputs, t.fee)
    assert utxo.sibling_inputs(t3, info, a) == set()


def test_plan_names_the_addresses_a_wallet_spends_with() -> None:
    w, x = wpkh(60), pkh(61)
    t = tx([(w, 10_000_000), (x, 20_000_000)], [(wpkh(62), 29_990_000)])
    flows = [utxo.Outflow(w, 1, t.txid, wpkh(62), 5_000_000, 9_996_666)]
    assert utxo.plan(flows, {t.txid: t}, {}, set(), 0.5).cospent == {w: [x]}
    # Another traced wallet spending with x in the same batch stays out of w's cluster.
    y = wpkh(63)
    t2 = tx([(y, 10_000_000), (x, 1_000_000)], [(wpkh(64), 10_990_000)])
    flows2 = [*flows, utxo.Outflow(y, 3, t2.txid, wpkh(64), 5_000_000, 9_990_000)]
    assert utxo.plan(flows2, {t.txid: t, t2.txid: t2}, {}, set(), 0.5).cospent == {w: [x], y: [x]}
    # Never through a CoinJoin: its inputs belong to many.
    mix = whirlpool_mix()
    flows = [utxo.Outflow(wpkh(102), 2, mix.txid, wpkh(110), 1_000_000, 5_000_000)]
    assert utxo.plan(flows, {mix.txid: mix}, {}, set(), 0.5).cospent == {}


# -- over whole generated histories (tracer.devchain.bitcoin, written independently) -------------


def _utxo_txs(sc: BitcoinScenario) -> dict[str, UtxoTx]:
    idx = BitcoinChainIndex(sc)
    out = {}
    for blk, k, t in sc.iter_txs():
        ins = tuple(TxIn(n, None, 0, i.txid, i.vout, coinbase=True) if t.coinbase else
                    TxIn(n, idx.prevout(i).address, idx.prevout(i).value, i.txid, i.vout, idx.prevout(i).script_type)
                    for n, i in enumerate(t.inputs))
        outs = tuple(TxOut(n, o.address, o.value, o.script_type, o.op_return) for n, o in enumerate(t.outputs))
        out[t.txid] = UtxoTx(t.txid, blk.height, blk.timestamp, k, ins, outs)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_generated_histories(seed: int) -> None:
    """Every transaction of a generated history: the CoinJoin and only it is one (no false
    positive among peels, sweeps, batch withdrawals, vault payouts), its truth matches, the
    thief's change is its one followed link, and every peel hop's change is found."""
    sc = generate(BitcoinScenarioParams(seed=seed))
    txs = _utxo_txs(sc)
    (truth,) = sc.truth.coinjoins
    found = {txid: info for txid, t in txs.items() if (info := utxo.detect_coinjoin(t)) is not None}
    assert list(found) == [truth.txid]
    info = found[truth.txid]
    assert (info.pattern, info.denomination, info.anonymity_set) == ("wasabi", truth.denomination,
                                                                      truth.anonymity_set)
    assert set(info.equal_vouts) == set(truth.equal_vouts) and info.coordinator_vout == truth.coordinator_vout
    assert set(info.change_vouts) == set(truth.change_vouts)
    mix = txs[truth.txid]
    thief = {mix.inputs[v].address or "" for v in truth.tainted_vins}
    entry = utxo.enter_coinjoin(mix, info, thief.pop(), truth.tainted_in, truth.tainted_in, 0.5)
    assert [o.vout for o in entry.outputs if o.followed] == [truth.thief_change_vout]
    for hop in sc.truth.peel:
        t = txs[hop.txid]
        assert utxo.detect_change(t).vout == next(o.index for o in t.outputs if o.address == hop.change_address)
