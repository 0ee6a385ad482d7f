"""Deposit-address recognition on hand-made transfer lists."""

from __future__ import annotations

from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.engine.deposits import DepositParams, detect_deposit

DEP = "0x" + "d" * 40
CUSTOMER = "0x" + "c" * 40
BINANCE_HOT = "0x28c6c06298d514db089934071355e5743bf21d60"
BINANCE_14 = "0x21a31ee1afc51d94c2efccaa2092ad1028285549"
BINANCE_FUNDER = "0x" + "f" * 40
KRAKEN = "0x2910543af39aba0cd09dbb2d50200b3e800a63d2"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
SPAM = "0x" + "5" * 40

LABELS = {
    BINANCE_HOT: [Label(chain="ethereum", address=BINANCE_HOT, entity="Binance", category="exchange", source="t")],
    BINANCE_14: [Label(chain="ethereum", address=BINANCE_14, entity="binance ", category="exchange", source="t2")],
    BINANCE_FUNDER: [Label(chain="ethereum", address=BINANCE_FUNDER, entity="Binance", category="exchange",
                           source="t", evidence={"wallet": "deposit_funder"})],
    KRAKEN: [Label(chain="ethereum", address=KRAKEN, entity="Kraken", category="exchange", source="t")],
}
ETH = 10**18

_n = 0


def tx(block: int, frm: str, to: str, amount: int, asset: str = NATIVE) -> Transfer:
    global _n
    _n += 1
    return Transfer(
        chain="ethereum", block_number=block, block_time=block * 12, tx_hash=f"0x{_n:064x}", tx_index=0,
        position="tx" if asset == NATIVE else "log:0", from_address=frm, to_address=to, asset=asset,
        amount=amount, kind=TransferKind.NATIVE if asset == NATIVE else TransferKind.TOKEN,
    )


def test_single_deposit_single_sweep() -> None:
    sweep = tx(105, DEP, BINANCE_HOT, 10 * ETH - 21000 * 30 * 10**9)
    verdict = detect_deposit(DEP, [tx(100, CUSTOMER, DEP, 10 * ETH), sweep], LABELS)
    assert verdict is not None
    assert verdict.entity == "Binance"
    assert verdict.sweep_tx_hashes == (sweep.tx_hash,)
    assert 0.99 < verdict.swept_share <= 1.0
    label = verdict.label("ethereum", DEP, created_by="trace:1")
    assert (label.category, label.source, label.entity) == ("deposit_address", "behaviour", "Binance")
    assert label.evidence is not None and label.evidence["sweep_tx_hashes"] == [sweep.tx_hash]


def test_repeated_sweeps_to_wallets_of_one_exchange() -> None:
    transfers = [
        tx(100, CUSTOMER, DEP, 5 * ETH), tx(110, DEP, BINANCE_HOT, 5 * ETH - 10**15),
        tx(5000, "0x" + "e" * 40, DEP, 2 * ETH), tx(5030, DEP, BINANCE_14, 2 * ETH - 10**15),
    ]
    verdict = detect_deposit(DEP, transfers, LABELS)
    assert verdict is not None and verdict.entity == "Binance" and len(verdict.sweep_tx_hashes) == 2
    assert verdict.deposits == 2
    assert verdict.confidence > detect_deposit(DEP, transfers[:2], LABELS).confidence  # type: ignore[union-attr]


def test_token_deposit_with_exchange_gas_top_up_and_spam() -> None:
    transfers = [
        tx(100, CUSTOMER, DEP, 50_000 * 10**6, USDT),
        tx(101, BINANCE_FUNDER, DEP, 10**15),  # gas from the exchange: not a deposit
        tx(102, SPAM, DEP, 10**21, "0x" + "7" * 40),  # an airdropped token nobody moves
        tx(104, DEP, BINANCE_HOT, 50_000 * 10**6, USDT),
    ]
    verdict = detect_deposit(DEP, transfers, LABELS)
    assert verdict is not None and verdict.assets == (USDT,) and verdict.swept_share == 1.0


def test_fan_out_wallet_is_not_a_deposit_address() -> None:
    transfers = [tx(100, CUSTOMER, DEP, 100 * ETH), tx(101, DEP, BINANCE_HOT, 10 * ETH)]
    transfers += [tx(102 + i, DEP, f"0x{i + 1:040x}", 9 * ETH) for i in range(10)]
    assert detect_deposit(DEP, transfers, LABELS) is None
    # Even if most of it went to the exchange, paying many ordinary wallets makes it a wallet.
    transfers = [tx(100, CUSTOMER, DEP, 100 * ETH), tx(101, DEP, BINANCE_HOT, 95 * ETH)]
    transfers += [tx(102 + i, DEP, f"0x{i + 1:040x}", ETH // 2) for i in range(10)]
    assert detect_deposit(DEP, transfers, LABELS) is None


def test_wallet_that_keeps_funds_is_not_a_deposit_address() -> None:
    transfers = [tx(100, CUSTOMER, DEP, 10 * ETH), tx(105, DEP, BINANCE_HOT, 1 * ETH)]
    assert detect_deposit(DEP, transfers, LABELS) is None
    # Sweeping a token but keeping the native coin customers sent is keeping funds too.
    transfers = [tx(100, CUSTOMER, DEP, 1000, USDT), tx(100, CUSTOMER, DEP, 3 * ETH),
                 tx(104, DEP, BINANCE_HOT, 1000, USDT)]
    assert detect_deposit(DEP, transfers, LABELS) is None


def test_late_payment_two_exchanges_and_no_sweep() -> None:
    late = [tx(100, CUSTOMER, DEP, 10 * ETH), tx(100 + 50_000, DEP, BINANCE_HOT, 10 * ETH)]
    assert detect_deposit(DEP, late, LABELS) is None
    assert detect_deposit(DEP, late, LABELS, DepositParams(sweep_blocks=100_000)) is not None
    two = [tx(100, CUSTOMER, DEP, 10 * ETH), tx(101, DEP, BINANCE_HOT, 5 * ETH), tx(102, DEP, KRAKEN, 5 * ETH)]
    assert detect_deposit(DEP, two, LABELS) is None
    assert detect_deposit(DEP, [tx(100, CUSTOMER, DEP, 10 * ETH)], LABELS) is None
    # A withdrawal from the exchange sent straight back is not a customer deposit.
    back = [tx(100, BINANCE_HOT, DEP, 10 * ETH), tx(101, DEP, BINANCE_HOT, 10 * ETH)]
    assert detect_deposit(DEP, back, LABELS) is None


def test_labels_outside_sweep_categories_do_not_count() -> None:
    mixer = "0x" + "9" * 40
    labels = {mixer: [Label(chain="ethereum", address=mixer, entity="Tornado Cash", category="mixer", source="t")]}
    transfers = [tx(100, CUSTOMER, DEP, 10 * ETH), tx(101, DEP, mixer, 10 * ETH)]
    assert detect_deposit(DEP, transfers, labels) is None
