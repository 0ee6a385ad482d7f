"""A small Bitcoin history where the FIFO and haircut taint models disagree, for the Esplora devchain.

Built with the blocks and transactions of tracer.devchain.bitcoin, so the same Esplora server
serves it. The story, one transaction a block:

1. funding: the thief (the seed) holds `stolen` + fee; a wallet W holds `clean` + fee of its own
   money (its older coin); two exchanges' hot wallets, labelled, hold their float;
2. the thief pays W `stolen` (its whole coin, no change);
3. W spends its older, clean coin: `clean` to exchange A's hot wallet;
4. W spends the stolen coin: `stolen` - fee to exchange B's hot wallet.

FIFO: W's first payment is made of the coins that arrived first, the clean ones, so exchange A
received nothing flagged and exchange B received the stolen money (less the fee W's first
payment left in the clean lot, which the model cannot see leave: fees are not transfers).
Haircut: both payments carry the flagged share of W's balance. `FifoTruth` holds the addresses;
the expected amounts are worked out by hand in tests/integration/test_bitcoin_fifo.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.devchain.bitcoin.builder import BlockBuilder
from tracer.devchain.bitcoin.records import COIN, BitcoinScenario, BitcoinTruth, HistoryParams
from tracer.devchain.scenario import ScenarioLabel
from tracer.domain.transfers import NATIVE


@dataclass(frozen=True, slots=True)
class FifoParams(HistoryParams):
    stolen: int = 40_000_000  # 0.4 BTC
    clean: int = 50_000_000  # W's own coin, there before the stolen one
    fee: int = 1_000  # every spend's miner fee
    tail_blocks: int = 4


@dataclass(frozen=True, slots=True)
class FifoTruth:
    thief: str
    wallet: str  # W: clean coin first, then the stolen one
    first_exchange: str  # hot wallet paid from W's clean coin
    second_exchange: str  # hot wallet paid from the stolen coin
    first_txid: str
    second_txid: str


def fifo_story(params: FifoParams | None = None) -> tuple[BitcoinScenario, FifoTruth]:
    p = params or FifoParams()
    b = BlockBuilder(p, p.genesis_time)
    thief, wallet = b.address("p2wpkh"), b.address("p2wpkh")
    hot_a, hot_b = b.address("p2wpkh"), b.address("p2wpkh")
    labels = [ScenarioLabel(hot_a, "Binance", "exchange"), ScenarioLabel(hot_b, "Kraken", "exchange")]

    b.close_block()  # genesis
    b.fund([(thief, p.stolen + p.fee), (wallet, p.clean + p.fee), (hot_a, 100 * COIN), (hot_b, 100 * COIN)])
    (clean_coin,) = b.by_address[wallet]
    b.close_block()

    b.spend_all(thief, [(wallet, p.stolen)], None, p.fee)
    stolen_coin = next(op for op in b.by_address[wallet] if op != clean_coin)
    b.close_block()

    first = b.spend([clean_coin], [(hot_a, p.clean)], None, p.fee)
    b.close_block()
    second = b.spend([stolen_coin], [(hot_b, p.stolen - p.fee)], None, p.fee)
    b.close_block()
    for _ in range(p.tail_blocks):
        b.close_block()

    truth = BitcoinTruth(stolen={NATIVE: p.stolen}, launderers=[thief])
    scenario = BitcoinScenario(network=p.network, genesis_time=p.genesis_time, blocks=b.blocks, seeds=[thief],
                               labels=labels, truth=truth, params={"fifo": True, "seed": p.seed})
    return scenario, FifoTruth(thief, wallet, hot_a, hot_b, first.txid, second.txid)
