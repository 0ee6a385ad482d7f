"""Tron node JSON -> tracer records. Node JSON stops here (see tracer.chains.records).

Shapes, as java-tron's HTTP API answers with `visible` false (hex addresses `41...`, hex text):
- a block (`/wallet/getblockbynum`, each of `/wallet/getblockbylimitnext`'s `block` list):
  `blockID`, `block_header.raw_data.{number, timestamp (ms)}`, `transactions` (absent when empty),
  each with `txID`, `ret[0].contractRet`, `raw_data.contract[0].{type, parameter.value}`;
- a block's execution results (`/wallet/gettransactioninfobyblocknum`): a list of `{id, fee,
  receipt.result, internal_transactions: [{hash, caller_address, transferTo_address, rejected,
  callValueInfo: [{callValue} | {tokenId, callValue} | {}]}]}` (`{}` or `[]` for no transactions);
- `/wallet/getnodeinfo`'s `solidityBlock`: "Num:<height>,ID:<block id>";
- logs from the JSON-RPC (`eth_getLogs`): Ethereum's shape, addresses as 20-byte 0x (no 41).

An answer in another shape makes these functions raise KeyError, TypeError, ValueError...: TronChain
turns that into a MalformedAnswer naming the node and the method (tracer.chains.answers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracer.addresses import address_or_none, normalize_tron
from tracer.chains.records import LogRecord
from tracer.domain.transfers import NATIVE, BlockRef, Transfer, TransferKind

TRC10_PREFIX = "trc10:"
"""The `asset` of a TRC-10 token: `trc10:<token id>` (TRC-20 tokens use their contract address)."""

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ADDED_BLACKLIST = "0x42e160154868087d6bfdc0ca23d96a1c1cfa32f1b72ba9ba27b69b98a0d819dc"
"""keccak("AddedBlackList(address)"): Tether's freeze, its address not indexed (in the data)."""
FREEZING_ISSUERS = {"0x41a614f803b6fd780986a42c78ec9c7f77e6ded13c": "Tether"}
"""TRC-20 contracts whose issuer freezes addresses with AddedBlackList: USDT (TR7NHq...Lj6t)."""
SUCCESS = "SUCCESS"
_SOLID = re.compile(r"^Num:(\d+),ID:([0-9a-fA-F]{64})$")


@dataclass(frozen=True, slots=True)
class TronTx:
    tx_hash: str  # 0x + txID
    index: int
    kind: str  # the contract type: TransferContract, TransferAssetContract, TriggerSmartContract, ...
    owner: str | None
    to: str | None  # the payee, or the contract a TriggerSmartContract calls
    asset: str
    amount: int
    success: bool
    memo: str | None = None  # raw_data.data as text: THORChain's outbounds say `OUT:<inbound hash>` there


@dataclass(frozen=True, slots=True)
class TronBlock:
    ref: BlockRef  # hash 0x + blockID, timestamp in seconds
    txs: tuple[TronTx, ...]

    @property
    def number(self) -> int:
        return self.ref.number

    def calls_contracts(self) -> bool:
        """Whether any transaction calls a contract (only those can have internal transactions)."""
        return any(t.kind == "TriggerSmartContract" for t in self.txs)


def _address(value: Any) -> str | None:
    return address_or_none(normalize_tron, value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} is {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{what} is {value!r}") from None


def _trc10_id(value: Any) -> str:
    """TRC-10 ids: `asset_name` is the id's decimal text, hex-encoded when `visible` is false (its
    hex is digits too: "1002000" is "31303032303030"; tokens older than ids, late 2018, are named:
    "53454544" is "SEED"); `tokenId` of internal transactions is plain."""
    text = str(value or "")
    try:
        decoded = bytes.fromhex(text).decode("ascii")
    except ValueError:
        decoded = ""
    return TRC10_PREFIX + (decoded if decoded.isprintable() and decoded.strip() == decoded and decoded else text)


def parse_tx(raw: Mapping[str, Any], index: int) -> TronTx:
    txid = str(raw.get("txID") or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", txid):
        raise ValueError(f"a transaction's txID is {raw.get('txID')!r}")
    ret = raw.get("ret") or [{}]
    success = (ret[0] or {}).get("contractRet", SUCCESS) == SUCCESS
    contracts = (raw.get("raw_data") or {}).get("contract") or [{}]
    contract = contracts[0] or {}
    kind = str(contract.get("type") or "")
    value = (contract.get("parameter") or {}).get("value") or {}
    owner = _address(value.get("owner_address"))
    if kind == "TransferContract":
        to, asset, amount = _address(value.get("to_address")), NATIVE, _int(value.get("amount", 0), "amount")
    elif kind == "TransferAssetContract":
        to = _address(value.get("to_address"))
        asset, amount = _trc10_id(value.get("asset_name")), _int(value.get("amount", 0), "amount")
    elif kind == "TriggerSmartContract":
        # TRX sent with the call (`call_value`) moves to the contract at the top level.
        to, asset, amount = _address(value.get("contract_address")), NATIVE, _int(value.get("call_value", 0), "call")
    else:
        to, asset, amount = None, NATIVE, 0
    return TronTx("0x" + txid, index, kind, owner, to, asset, amount, success, _memo(raw.get("raw_data") or {}))


def _memo(raw_data: Mapping[str, Any]) -> str | None:
    text = raw_data.get("data")
    if not isinstance(text, str) or not text:
        return None
    try:
        return bytes.fromhex(text).decode("utf-8")[:256] or None
    except ValueError:
        return None


def parse_block(raw: Any) -> TronBlock | None:
    """A block, or None for the `{}` a node answers past its head."""
    if not isinstance(raw, Mapping):
        raise TypeError()
    if not raw.get("blockID"):
        return None
    header = ((raw.get("block_header") or {}).get("raw_data")) or {}
    number = _int(header.get("number", 0), "block number")
    ms = _int(header.get("timestamp", 0), "block timestamp")
    ref = BlockRef(number, "0x" + str(raw["blockID"]).lower(), ms // 1000)
    txs = tuple(parse_tx(t, i) for i, t in enumerate(raw.get("transactions") or ()))
    return TronBlock(ref, txs)


def block_transfers(chain: str, block: TronBlock) -> list[Transfer]:
    """TRX and TRC-10 moved by the block's own transactions (failed ones move nothing)."""
    out = []
    for tx in block.txs:
        if not tx.success or tx.amount <= 0 or tx.owner is None or tx.to is None:
            continue
        token = tx.asset != NATIVE
        out.append(Transfer(
            chain=chain, block_number=block.number, block_time=block.ref.timestamp, tx_hash=tx.tx_hash,
            tx_index=tx.index, position="tx", from_address=tx.owner, to_address=tx.to, asset=tx.asset,
            amount=tx.amount, kind=TransferKind.TOKEN if token else TransferKind.NATIVE,
            decimals=6 if not token else None, symbol="TRX" if not token else None, memo=tx.memo,
        ))
    return out


@dataclass(frozen=True, slots=True)
class InternalMove:
    """TRX or a TRC-10 token a contract moved inside a transaction (an `internal_transactions` item)."""

    position: str
    sender: str
    to: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class TxInfo:
    """A transaction's execution result (`/wallet/gettransactioninfobyblocknum`): what it burnt
    (sun) and, when it succeeded, the value its contracts moved."""

    tx_hash: str
    fee: int
    success: bool
    moves: tuple[InternalMove, ...]


def parse_infos(infos: Any) -> tuple[TxInfo, ...]:
    """A block's execution results (`{}` for a block without transactions); rejected internal calls
    and those moving nothing left out."""
    if isinstance(infos, Mapping):
        if infos:
            raise ValueError(f"an object with {', '.join(sorted(map(str, infos))[:5])}")
        return ()
    if not isinstance(infos, list):
        raise TypeError()
    out = []
    for info in infos:
        moves = []
        for i, itx in enumerate(info.get("internal_transactions") or ()):
            src, dst = _address(itx.get("caller_address")), _address(itx.get("transferTo_address"))
            if itx.get("rejected") or src is None or dst is None:
                continue
            for j, cv in enumerate(itx.get("callValueInfo") or ()):
                amount = _int((cv or {}).get("callValue", 0), "callValue")
                if amount > 0:
                    moves.append(InternalMove(f"call:{i}" if j == 0 else f"call:{i}.{j}", src, dst,
                                              _trc10_id(cv["tokenId"]) if "tokenId" in cv else NATIVE, amount))
        out.append(TxInfo("0x" + str(info.get("id") or "").lower(), _int(info.get("fee", 0), "fee"),
                          (info.get("receipt") or {}).get("result", SUCCESS) == SUCCESS, tuple(moves)))
    return tuple(out)


def internal_transfers(chain: str, block: TronBlock, infos: Sequence[TxInfo]) -> list[Transfer]:
    """TRX and TRC-10 that contracts moved (the block's execution results, `parse_infos`); a
    rejected call or a reverted transaction moves nothing."""
    index = {t.tx_hash: t.index for t in block.txs}
    out = []
    for info in infos:
        if not info.success or info.tx_hash not in index:
            continue
        for move in info.moves:
            token = move.asset != NATIVE
            out.append(Transfer(
                chain=chain, block_number=block.number, block_time=block.ref.timestamp, tx_hash=info.tx_hash,
                tx_index=index[info.tx_hash], position=move.position, from_address=move.sender, to_address=move.to,
                asset=move.asset, amount=move.amount, kind=TransferKind.TOKEN if token else TransferKind.INTERNAL,
                decimals=None if token else 6, symbol=None if token else "TRX",
            ))
    return out


def fees(infos: Sequence[TxInfo]) -> dict[str, int]:
    """What each transaction of a block cost in TRX (sun): its `fee`."""
    return {i.tx_hash: i.fee for i in infos if i.fee}


def _topic_address(topic: str) -> str:
    return normalize_tron("0x" + topic[-40:])


def log_record(entry: Mapping[str, Any]) -> LogRecord:
    """A log of the JSON-RPC's eth_getLogs, its contract in tracer's form (block time 0: the
    caller reads it from the block)."""
    return LogRecord(
        block_number=int(str(entry["blockNumber"]), 16), block_time=0, tx_hash=str(entry["transactionHash"]).lower(),
        tx_index=int(str(entry["transactionIndex"]), 16), log_index=int(str(entry["logIndex"]), 16),
        address=normalize_tron(str(entry["address"])), topics=tuple(str(t).lower() for t in entry.get("topics") or ()),
        data=str(entry.get("data") or "0x").lower(),
    )


def log_transfer(chain: str, log: LogRecord, block_time: int) -> Transfer | None:
    """A TRC-20 Transfer log (an ERC-721's, with a 4th topic, is not value)."""
    topics = log.topics
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
        return None
    amount = int(log.data[2:66] or "0", 16)
    if amount <= 0:
        return None
    return Transfer(
        chain=chain, block_number=log.block_number, block_time=block_time, tx_hash=log.tx_hash, tx_index=log.tx_index,
        position=f"log:{log.log_index}", from_address=_topic_address(topics[1]), to_address=_topic_address(topics[2]),
        asset=log.address, amount=amount, kind=TransferKind.TOKEN,
    )


@dataclass(frozen=True, slots=True)
class Freeze:
    """An issuer froze `address`: it can no longer move `token` (an AddedBlackList log)."""

    address: str
    token: str
    issuer: str
    block_number: int
    tx_hash: str


def freeze_of(log: LogRecord) -> Freeze | None:
    if log.topics[:1] != (ADDED_BLACKLIST,) or len(log.data) < 66 or log.address not in FREEZING_ISSUERS:
        return None
    return Freeze(normalize_tron("0x" + log.data[26:66]), log.address, FREEZING_ISSUERS[log.address], log.block_number,
                  log.tx_hash)


def solidified(nodeinfo: Any) -> int:
    """The solidified (irreversible) block's height from `/wallet/getnodeinfo`."""
    text = nodeinfo.get("solidityBlock") if isinstance(nodeinfo, Mapping) else None
    m = _SOLID.match(str(text or ""))
    if m is None:
        raise ValueError(f"its solidityBlock is {text!r}")
    return int(m.group(1))


def account(raw: Any) -> tuple[int, dict[str, int]]:
    """An account's TRX (sun) and TRC-10 holdings by token id (`/wallet/getaccount`; `{}` for an
    account never funded)."""
    if not isinstance(raw, Mapping):
        raise TypeError()
    if raw and "address" not in raw:
        raise KeyError("address")
    held = {str(e.get("key")): _int(e.get("value") or 0, "assetV2 value") for e in raw.get("assetV2") or ()}
    return _int(raw.get("balance") or 0, "balance"), held


def asset_issue(issue: Any) -> tuple[int, str | None]:
    """(precision, abbreviation) of a TRC-10 token (`/wallet/getassetissuebyid`; `{}`: unknown)."""
    if not isinstance(issue, Mapping):
        raise TypeError()
    abbr = str(issue.get("abbr") or "")
    try:
        abbr = bytes.fromhex(abbr).decode("utf-8")
    except ValueError:
        pass
    return _int(issue.get("precision") or 0, "precision"), abbr or None


def constant_uint(answer: Any) -> int | None:
    """The uint256 a `/wallet/triggerconstantcontract` call returned (None: it failed)."""
    if not isinstance(answer, Mapping):
        raise TypeError()
    if not answer["result"].get("result"):  # a refused call says why in `result`
        return None
    out = answer.get("constant_result") or []
    text = str(out[0]) if out else ""
    return int(text[:64], 16) if re.fullmatch(r"[0-9a-fA-F]{64,}", text) else None
