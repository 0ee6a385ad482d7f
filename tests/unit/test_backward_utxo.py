"""A CoinJoin walked back by hand (issue 20): the change output of a Wasabi round goes back to the
participant whose change it is with what the forward trace's link carries into it (the output x
the link's confidence), and to no other input; at a policy taking 1-in-n links, each of the
participant's equal outputs goes back to it with 1/n of its value, as forward."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.test_utxo import wasabi_round
from tracer.chains.bitcoin.mappers import flatten
from tracer.engine import backward_reach, backward_utxo, utxo
from tracer.engine.backward_links import Through


@pytest.mark.parametrize("min_confidence", [0.5, 0.01])
def test_a_coinjoin_output_goes_back_along_the_forward_links(min_confidence: float) -> None:
    tx, tainted, change_vout = wasabi_round()
    tx = replace(tx, block_number=tx.block_number or 5, tx_index=max(tx.tx_index, 1))
    info = utxo.detect_coinjoin(tx)
    assert info is not None
    transfers = flatten(tx)
    sent = sum(t.amount for t in transfers if t.from_address == tainted)
    entry = utxo.enter_coinjoin(tx, info, tainted, sent, sent, min_confidence)  # wholly flagged, forward
    followed = {o.address: o.carried for o in entry.outputs if o.followed and o.address}
    assert tx.outputs[change_vout].address in followed
    assert (len(followed) > 1) == (min_confidence < 0.5)
    for seed, carried in followed.items():
        joins = {tx.txid: (tx, info)}
        factors, sure = backward_utxo.weights(transfers, {seed}, joins, min_confidence, backward_reach.SCALE)
        into = [i for i, t in enumerate(transfers) if t.to_address == seed]
        assert set(factors) == set(into) and len(into) > 1
        # Every participant the forward linker ties to this output (the tainted one and any whose
        # coins fit its change as well), and no other input, carries part of it back.
        fits = {}
        for p in {t.from_address for t in transfers}:
            for lk in utxo.coinjoin_links(tx, info, {p, *utxo.sibling_inputs(tx, info, p)}):
                if lk.address == seed and lk.confidence >= min_confidence:
                    fits[p] = lk.confidence
        assert tainted in fits
        assert {transfers[i].from_address for i in into if factors[i]} == set(fits)
        assert backward_utxo.unlinked_senders(transfers, {seed}, joins, min_confidence) == {
            (tx.txid, transfers[i].from_address, seed) for i in into if transfers[i].from_address not in fits}
        found = backward_reach.reach(transfers, {seed}, {seed}, {}, Through(coinjoin=factors))
        back = sum(v for i, v in found.reached.items() if transfers[i].from_address == tainted)
        # The forward link's amount, shared with the other participants that fit (at most the output).
        together = max(1.0, sum(fits.values()))
        assert back == pytest.approx(carried / together, abs=2), (seed, back, carried, fits)
        assert sum(found.reached.values()) <= tx.outputs[[o.address for o in tx.outputs].index(seed)].value
        assert all(c == pytest.approx(fits[transfers[i].from_address] / together) for i, c in sure.items())
