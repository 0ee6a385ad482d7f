"""A small generated Bitcoin history around one Whirlpool mix, for the Esplora devchain.

tracer.devchain.bitcoin writes the main story (peel chain, a Wasabi-style round, THORChain
payouts); this adds the other CoinJoin shape a trace meets, built with the same blocks and
transactions so the same Esplora server serves it. Deterministic by seed:

- the thief (the seed) pays a Tx0: one premix output of the pool denomination plus the mix's
  miner fee share, the coordinator's pool fee, and its toxic change;
- a Whirlpool mix: 5 inputs (the thief's premix and four other users' premix or remix outputs) to
  5 fresh outputs of exactly the denomination, shuffled; no change;
- the thief's postmix output pays an exchange deposit address, which the exchange sweeps to its
  labelled hot wallet.

Only the anonymity set links the thief to its postmix output: a trace reports the mix and stops
there unless its policy accepts 1-in-5 links.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.devchain.bitcoin.builder import BlockBuilder
from tracer.devchain.bitcoin.records import COIN, BitcoinScenario, BitcoinTruth, CoinJoinTruth, HistoryParams
from tracer.devchain.scenario import OfframpTruth, ScenarioLabel
from tracer.domain.transfers import NATIVE


@dataclass(frozen=True, slots=True)
class WhirlpoolParams(HistoryParams):
    stolen: int = COIN
    denomination: int = 5_000_000  # the 0.05 BTC pool
    mix_fee: int = 1_170  # each premix carries its share of the mix's miner fee
    pool_fee: int = 175_000  # the coordinator's fee, paid in Tx0
    exchange: str = "Binance"
    tail_blocks: int = 4


def whirlpool(params: WhirlpoolParams | None = None) -> BitcoinScenario:
    p = params or WhirlpoolParams()
    b = BlockBuilder(p, p.genesis_time)
    rng = b.rng
    d = p.denomination
    hot = b.address("p2wpkh")
    coordinator = b.address("p2wpkh")
    thief = b.address("p2wpkh")
    others = [b.address("p2wpkh") for _ in range(4)]
    labels = [ScenarioLabel(hot, p.exchange, "exchange"), ScenarioLabel(coordinator, "Whirlpool coordinator", "mixer")]
    truth = BitcoinTruth(stolen={NATIVE: p.stolen}, launderers=[thief])

    b.close_block()  # genesis
    # Two of the other users come fresh from their own Tx0 (premix: denomination + fee), two remix.
    b.fund([(thief, p.stolen), (hot, 100 * COIN),
            *((o, d + p.mix_fee if k < 2 else d) for k, o in enumerate(others))])
    b.close_block()

    premix, toxic = b.address("p2wpkh"), b.address("p2wpkh")
    b.spend_all(thief, [(premix, d + p.mix_fee), (coordinator, p.pool_fee)], toxic, 2_000)
    truth.launderers += [premix, toxic]
    b.close_block()

    postmix = [b.address("p2wpkh") for _ in range(5)]
    premix_op = b.by_address[premix][0]
    inputs = [op for a in [premix, *others] for op in b.by_address[a]]
    inputs.sort(key=lambda op: (b.utxos[op][1], op))
    fee = sum(b.utxos[op][1] for op in inputs) - 5 * d
    mix = b.spend(inputs, [(a, d) for a in postmix], None, fee)
    thief_out = postmix[rng.randrange(5)]
    thief_vout = next(k for k, o in enumerate(mix.outputs) if o.address == thief_out)
    truth.coinjoins.append(CoinJoinTruth(
        txid=mix.txid, block=b.height, pattern="whirlpool", denomination=d, anonymity_set=5,
        equal_vouts=tuple(range(5)), change_vouts=(), coordinator_vout=-1, tainted_vins=(inputs.index(premix_op),),
        tainted_in=d + p.mix_fee, thief_equal_vouts=(thief_vout,), thief_change_vout=-1, participants=5))
    truth.launderers.append(thief_out)
    b.close_block()

    deposit = b.address("p2sh")
    truth.deposit_addresses[deposit] = p.exchange
    b.spend_all(thief_out, [(deposit, d - 1_000)], None, 1_000)
    truth.postmix_offramps.append(OfframpTruth(deposit, p.exchange, NATIVE, d - 1_000, "deposit_address"))
    b.close_block()
    b.close_block()
    b.spend(list(b.by_address[deposit]), [], hot, 600)
    for _ in range(p.tail_blocks):
        b.close_block()
    return BitcoinScenario(network=p.network, genesis_time=p.genesis_time, blocks=b.blocks, seeds=[thief],
                           labels=labels, truth=truth, params={"whirlpool": True, "seed": p.seed})
