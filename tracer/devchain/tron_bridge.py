"""Ethereum money swapped into Tron through THORChain, for the end-to-end cross-chain test.

`generate()` makes two histories on one clock (Tron's blocks every 3 s from START_MS, Ethereum's
every 12 s from the same second):
- Ethereum: a thief deposits ETH into the THORChain router twice, once with the memo
  `=:TRON.USDT-TR7NH...:T<recipient>` and once with `=:TRON.TRX:T<recipient>`; a stranger deposits
  into the same router for a Tron address of their own (the crowd, not part of the trace).
- Tron: THORChain's vault pays each recipient a couple of minutes later: USDT-TRC20 (a token
  transfer carries no note, so it is matched by timing) and TRX with the note `OUT:<deposit tx
  hash>`, as THORChain's Tron outbounds write it; each recipient pays it on into an exchange deposit
  address, which sweeps it to the exchange's labelled hot wallet.
`SwapToTron.payouts` is the truth a trace must find.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.addresses import tron_base58
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import (
    KIND_BRIDGE,
    OfframpTruth,
    Scenario,
    ScenarioBlock,
    ScenarioLabel,
    ScenarioTx,
    Truth,
)
from tracer.devchain.tron import (
    BLOCK_MS,
    CHAIN,
    SOLID_LAG,
    START_MS,
    TRX,
    USD,
    USDT,
    StoryBuilder,
    TronStory,
    TronTruth,
    TronTxn,
    address,
    apply_state,
)
from tracer.domain.transfers import NATIVE

ETHER = 10**18
ETH_BLOCK_SECONDS = 12
USDT_MEMO_ASSET = "TRON.USDT-" + tron_base58(USDT)


@dataclass(frozen=True, slots=True)
class TronPayout:
    """One deposit on Ethereum and what THORChain's vault paid for it on Tron."""

    depositor: str
    deposit_amount: int  # wei
    deposit_tx: str  # as the Ethereum devchain serves it
    memo: str
    asset: str  # on Tron: USDT's contract (0x41...) or native (TRX)
    recipient: str  # 0x41...
    amount: int  # paid by the vault (USDT units or sun)
    note: str | None  # the payout's raw_data.data (None: a TRC-20 transfer, no note)
    deposit_address: str  # where the recipient pays it on (the exit)
    exchange: str  # the entity whose hot wallet the deposit address sweeps to


@dataclass
class SwapToTron:
    home: Scenario
    tron: TronStory
    router: str
    vault: str  # THORChain's vault on Tron (0x41...)
    payouts: list[TronPayout]
    stranger: TronPayout  # another user's swap through the same router: not part of the trace


def _eth(n: int) -> str:
    return f"0x{n:040x}"


def generate(seed: int = 7) -> SwapToTron:
    genesis = START_MS // 1000
    thief, router, eth_vault, stranger = _eth(0x7E1F), _eth(0x7C0), _eth(0x7A17), _eth(0x5A1)
    a = {n: address(seed, n) for n in ("vault", "usdt_to", "trx_to", "stranger_to", "dep_binance", "dep_okx",
                                       "hot_binance", "hot_okx", "issuer", "funder")}
    usdt_memo = f"=:{USDT_MEMO_ASSET}:{tron_base58(a['usdt_to'])}:0/1/0"
    trx_memo = f"=:TRON.TRX:{tron_base58(a['trx_to'])}"
    stranger_memo = f"=:{USDT_MEMO_ASSET}:{tron_base58(a['stranger_to'])}"
    deposits = {  # Ethereum block -> the deposit
        2: ScenarioTx(KIND_BRIDGE, thief, router, 30 * ETHER + 123_456_789, payouts=((eth_vault, 30 * ETHER
                                                                                    + 123_456_789),),
                      memo=usdt_memo),
        3: ScenarioTx(KIND_BRIDGE, stranger, router, 5 * ETHER, payouts=((eth_vault, 5 * ETHER),),
                      memo=stranger_memo),
        5: ScenarioTx(KIND_BRIDGE, thief, router, 12 * ETHER, payouts=((eth_vault, 12 * ETHER),), memo=trx_memo),
    }
    blocks = [ScenarioBlock(n, genesis + n * ETH_BLOCK_SECONDS, [deposits[n]] if n in deposits else [])
              for n in range(1, 12)]
    home = Scenario(
        genesis_time=genesis, blocks=blocks, tokens=[],
        genesis_balances={thief: {NATIVE: 50 * ETHER}, stranger: {NATIVE: 6 * ETHER}},
        contracts={router: "bridge"}, seeds=[thief],
        labels=[ScenarioLabel(router, "THORChain Router", "bridge")], truth=Truth(), chain_id=1, chain="ethereum",
        params={"tron_bridge": {"seed": seed}},
    )
    built = Chain.from_scenario(home)
    hashes = {tx.memo: built.tx_hash[tid] for tid, tx in enumerate(built.txs) if tx.kind == KIND_BRIDGE}

    b = StoryBuilder(seed)
    txs: dict[int, list[TronTxn]] = {}

    def at(eth_block: int, seconds: int) -> int:
        """The Tron block `seconds` after Ethereum block `eth_block`."""
        return (eth_block * ETH_BLOCK_SECONDS + seconds) * 1000 // BLOCK_MS

    # The vault's float, and its payouts two minutes after each deposit (THORChain's outbound delay).
    txs[1] = [b.usdt(a["issuer"], a["vault"], 5_000_000 * USD), b.trx(a["funder"], a["vault"], 9_000_000 * TRX)]
    usdt_paid, trx_paid, stranger_paid = 94_321 * USD + 987_654, 412_345 * TRX + 678, 15_700 * USD
    trx_note = "OUT:" + hashes[trx_memo].removeprefix("0x").upper()
    txs[at(2, 120)] = [b.usdt(a["vault"], a["usdt_to"], usdt_paid)]
    txs[at(3, 120)] = [b.usdt(a["vault"], a["stranger_to"], stranger_paid)]
    txs[at(5, 120)] = [b.trx(a["vault"], a["trx_to"], trx_paid, memo=trx_note)]
    # On into exchange deposit addresses, which sweep to the hot wallets.
    txs[at(5, 600)] = [b.usdt(a["usdt_to"], a["dep_binance"], usdt_paid), b.trx(a["trx_to"], a["dep_okx"], trx_paid)]
    txs[at(5, 900)] = [b.usdt(a["dep_binance"], a["hot_binance"], usdt_paid),
                       b.trx(a["dep_okx"], a["hot_okx"], trx_paid - TRX)]
    last = max(txs)
    for n in range(1, last + SOLID_LAG + 7):
        b.add(*txs.get(n, ()))
    usd_out = TronPayout(thief, deposits[2].value, hashes[usdt_memo], usdt_memo, USDT, a["usdt_to"], usdt_paid, None,
                         a["dep_binance"], "Binance")
    trx_out = TronPayout(thief, deposits[5].value, hashes[trx_memo], trx_memo, NATIVE, a["trx_to"], trx_paid,
                         trx_note, a["dep_okx"], "OKX")
    other = TronPayout(stranger, deposits[3].value, hashes[stranger_memo], stranger_memo, USDT, a["stranger_to"],
                       stranger_paid, None, "", "")
    tron = TronStory(
        chain=CHAIN, seeds=[], blocks=b.blocks,
        labels=[ScenarioLabel(a["hot_binance"], "Binance", "exchange"), ScenarioLabel(a["hot_okx"], "OKX", "exchange")],
        truth=TronTruth(offramps=[OfframpTruth(a["dep_binance"], "Binance", USDT, usdt_paid, "deposit_address"),
                                  OfframpTruth(a["dep_okx"], "OKX", NATIVE, trx_paid, "deposit_address")],
                        freeze=None, hot_wallets={"Binance": a["hot_binance"], "OKX": a["hot_okx"]}, stolen={}),
        token_meta={USDT: (6, "USDT")}, contracts={USDT},
    )
    apply_state(tron)
    return SwapToTron(home, tron, router, a["vault"], [usd_out, trx_out], other)
