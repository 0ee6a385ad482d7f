"""Validation and normalisation of chain addresses: a malformed address is an error, never a miss."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from eth_utils import is_checksum_address, to_checksum_address

from tracer.domain.chains import BITCOIN, TRON
from tracer.domain.errors import UserError

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")


class InvalidAddress(UserError, ValueError):
    """An address that is not a well-formed address of its chain."""

    def __init__(self, address: object, reason: str) -> None:
        super().__init__(f"invalid address {address!r}: {reason}")
        self.address = address
        self.reason = reason


def normalize_evm(address: object) -> str:
    """Return the lowercase 0x form of an EVM address, or raise InvalidAddress.

    Mixed-case input must carry a valid EIP-55 checksum: a typo in a checksummed address is the
    one mistake the checksum exists to catch, so it is refused rather than silently lowercased.
    """
    if not isinstance(address, str):
        raise InvalidAddress(address, "not a string")
    text = address.strip()
    if not text.startswith(("0x", "0X")):
        raise InvalidAddress(address, "must start with 0x")
    text = "0x" + text[2:]
    if len(text) != 42:
        raise InvalidAddress(address, f"must be 42 characters (0x + 40 hex), got {len(text)}")
    if not _HEX40.match(text):
        raise InvalidAddress(address, "contains non-hex characters")
    body = text[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(text):
        raise InvalidAddress(address, "mixed-case address with a wrong EIP-55 checksum")
    return text.lower()


def checksum(address: str) -> str:
    """The display form: EIP-55 for EVM, base58check `T...` for Tron's stored hex; a Bitcoin
    address has no other display form and comes back as is."""
    if _TRON_HEX.match(address):
        return tron_base58(address)
    if not _HEX40.match(address):
        return address
    return str(to_checksum_address(address))


# Tron addresses are stored as `0x41` + 20 bytes hex and shown as base58check `T...`.
_TRON_HEX = re.compile(r"^0x41[0-9a-f]{40}$")
_TRON_VERSION = 0x41

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# Version byte -> network of base58check addresses: P2PKH and P2SH, mainnet then testnet/regtest
# (testnet, signet and regtest share the version bytes).
_B58_VERSIONS = {0x00: "P2PKH", 0x05: "P2SH", 0x6F: "P2PKH", 0xC4: "P2SH"}
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_HRPS = ("bc", "tb", "bcrt")
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


def _b58decode_check(text: str) -> bytes | None:
    num = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            return None
        num = num * 58 + digit
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    raw = b"\x00" * (len(text) - len(text.lstrip("1"))) + body
    if len(raw) < 5:
        return None
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return None
    return payload


def _bech32_polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: list[int], frombits: int, tobits: int) -> bytes | None:
    acc = 0
    bits = 0
    out = bytearray()
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    # Segwit programs are whole bytes: leftover bits must be fewer than 5 and all zero (BIP-173).
    if bits >= frombits or (acc << (tobits - bits)) & maxv:
        return None
    return bytes(out)


def _segwit_reason(address: str) -> str | None:
    """None when `address` (already lowercased) is a valid segwit address, else why not."""
    hrp, sep, data_part = address.rpartition("1")
    if not sep or hrp not in _BECH32_HRPS:
        return "unknown bech32 prefix (expected bc1, tb1 or bcrt1)"
    if len(address) > 90 or len(data_part) < 7:
        return "bech32 address of the wrong length"
    data: list[int] = []
    for ch in data_part:
        pos = _BECH32_CHARSET.find(ch)
        if pos < 0:
            return f"character {ch!r} is not in the bech32 alphabet"
        data.append(pos)
    const = _bech32_polymod(_hrp_expand(hrp) + data)
    version = data[0]
    if version > 16:
        return "invalid witness version"
    # BIP-350: version 0 uses the bech32 checksum, versions 1..16 bech32m.
    if const != (_BECH32_CONST if version == 0 else _BECH32M_CONST):
        return "bad bech32 checksum" if version == 0 else "bad bech32m checksum"
    program = _convertbits(data[1:-6], 5, 8)
    if program is None or not 2 <= len(program) <= 40:
        return "invalid witness program"
    if version == 0 and len(program) not in (20, 32):
        return "version 0 witness program must be 20 (P2WPKH) or 32 (P2WSH) bytes"
    if version == 1 and len(program) != 32:
        return "taproot (version 1) witness program must be 32 bytes"
    return None


def normalize_btc(address: object) -> str:
    """Return the canonical form of a Bitcoin address, or raise InvalidAddress.

    Base58check (P2PKH, P2SH) keeps its case, which is part of the encoding; bech32/bech32m
    (P2WPKH, P2WSH, P2TR) is lowercased, and mixed case is refused as BIP-173 requires. Mainnet,
    testnet/signet and regtest are accepted: the chain adapter checks the network on connect.
    """
    if not isinstance(address, str):
        raise InvalidAddress(address, "not a string")
    text = address.strip()
    if not text:
        raise InvalidAddress(address, "empty")
    lower = text.lower()
    if lower.startswith(tuple(h + "1" for h in _BECH32_HRPS)):
        if text != lower and text != text.upper():
            raise InvalidAddress(address, "mixed-case bech32 address")
        reason = _segwit_reason(lower)
        if reason is not None:
            raise InvalidAddress(address, reason)
        return lower
    if not 25 <= len(text) <= 35:
        raise InvalidAddress(address, "not a Bitcoin address (base58 addresses are 25-35 characters)")
    payload = _b58decode_check(text)
    if payload is None:
        raise InvalidAddress(address, "bad base58 character or checksum")
    if len(payload) != 21 or payload[0] not in _B58_VERSIONS:
        raise InvalidAddress(address, "unknown base58 version byte or length")
    return text


def btc_script_type(address: str) -> str:
    """Script type of a normalised Bitcoin address: p2pkh, p2sh, p2wpkh, p2wsh, p2tr or witness."""
    if address.startswith(tuple(h + "1" for h in _BECH32_HRPS)):
        hrp = address.rpartition("1")[0]
        data = address[len(hrp) + 1 :]
        version = _BECH32_CHARSET.find(data[0])
        size = len(data) - 7  # minus version char and 6 checksum chars
        if version == 0:
            return "p2wpkh" if size == 32 else "p2wsh"
        if version == 1 and size == 52:
            return "p2tr"
        return "witness"
    payload = _b58decode_check(address)
    kind = _B58_VERSIONS.get(payload[0]) if payload else None
    return "p2sh" if kind == "P2SH" else "p2pkh"


def address_or_none(normalize: Callable[[object], str], value: object) -> str | None:
    """`normalize(value)`, or None where a node's answer holds no valid address there (an empty
    field, an output script that pays no standard address): reading answers, not user input."""
    try:
        return normalize(value)
    except InvalidAddress:
        return None


def is_btc_chain(chain: str) -> bool:
    return chain == BITCOIN


def normalize_address(chain: str, address: object) -> str:
    """Normalise `address` by the rules of `chain`: "bitcoin" is Bitcoin, "tron" Tron, every other
    chain EVM."""
    if chain == BITCOIN:
        return normalize_btc(address)
    if chain == TRON:
        return normalize_tron(address)
    return normalize_evm(address)


def normalize_tron(address: object) -> str:
    """The stored form of a Tron address, `0x41` + 40 lowercase hex, or raise InvalidAddress.

    Accepted: base58check `T...` (what wallets, explorers and sanction lists show; its checksum is
    checked), the node's hex `41...` with or without 0x, and a 20-byte 0x address as Tron's
    JSON-RPC and EVM-side bridges spell it (the 0x41 prefix is implied there).
    """
    if not isinstance(address, str):
        raise InvalidAddress(address, "not a string")
    text = address.strip()
    if text[:1] == "T":
        if len(text) != 34:
            raise InvalidAddress(address, f"a base58 Tron address is 34 characters, got {len(text)}")
        payload = _b58decode_check(text)
        if payload is None:
            raise InvalidAddress(address, "bad base58 character or checksum")
        if len(payload) != 21 or payload[0] != _TRON_VERSION:
            raise InvalidAddress(address, "not a Tron address (version byte 0x41)")
        return "0x" + payload.hex()
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if not re.fullmatch(r"[0-9a-fA-F]*", body):
        raise InvalidAddress(address, "not a Tron address (T... base58, or hex)")
    if len(body) == 42 and body[:2] == "41":
        return "0x" + body.lower()
    if len(body) == 40 and text[:2] in ("0x", "0X"):
        return "0x41" + body.lower()
    raise InvalidAddress(address, "not a Tron address (T... base58, 41 + 20 bytes hex, or 0x + 20 bytes)")


def tron_base58(address: str) -> str:
    """Base58check `T...` of a stored Tron address (0x41 + 20 bytes)."""
    if not _TRON_HEX.match(address):
        raise InvalidAddress(address, "not a stored Tron address (0x41 + 40 lowercase hex)")
    return encode_btc_base58(_TRON_VERSION, bytes.fromhex(address[4:]))


def tron_evm(address: str) -> str:
    """The 20-byte 0x form Tron's JSON-RPC speaks (eth_getLogs addresses, topics, eth_call)."""
    return "0x" + address[4:]


def shape_chain(address: object) -> str:
    """The chain family an address's own shape names, where no chain is given: a 34-character
    `T...` or 0x41 + 20 bytes is Tron, another 0x address EVM ("ethereum"), the rest Bitcoin
    (which then must pass Bitcoin's checks)."""
    text = address.strip() if isinstance(address, str) else ""
    if (text[:1] == "T" and len(text) == 34) or (len(text) == 44 and text[:4].lower() == "0x41"):
        return TRON
    return "ethereum" if text[:2].lower() == "0x" else BITCOIN


_TRON_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])0x41[0-9a-f]{40}(?![0-9A-Za-z])")


def show_tron(text: str) -> str:
    """`text` (a JSON body, a CSV or GraphML export) with every stored Tron address in it shown as
    `T...`: 0x41 + 40 hex standing alone is nothing else (EVM addresses have 40 hex digits in all,
    hashes 64), so outputs convert in one place instead of at each address field."""
    if "0x41" not in text:
        return text
    return _TRON_IN_TEXT.sub(lambda m: tron_base58(m.group(0)), text)


def is_tron_hex(address: str) -> bool:
    return bool(_TRON_HEX.match(address))


def encode_btc_segwit(hrp: str, version: int, program: bytes) -> str:
    """Bech32 (version 0) or bech32m (1..16) address of a witness program: for generated scenarios."""
    data = [version]
    acc = bits = 0
    for byte in program:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    polymod = _bech32_polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum_digits = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum_digits)


def base58(raw: bytes) -> str:
    """Plain base58 (no checksum) of bytes, each leading zero byte a "1": Solana's keys, and the body
    of base58check."""
    num = int.from_bytes(raw, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58_ALPHABET[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def encode_btc_base58(version: int, payload: bytes) -> str:
    """Base58check address (version byte + 20-byte hash): generated Bitcoin scenarios, Tron's `T...`."""
    raw = bytes([version]) + payload
    return base58(raw + hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4])


def btc_script_pubkey(address: str) -> bytes:
    """The output script a normalised Bitcoin address stands for (what a node shows as scriptpubkey)."""
    if address.startswith(tuple(h + "1" for h in _BECH32_HRPS)):
        _hrp, _, data_part = address.rpartition("1")
        data = [_BECH32_CHARSET.find(ch) for ch in data_part]
        program = _convertbits(data[1:-6], 5, 8)
        if program is None:
            raise InvalidAddress(address, "invalid witness program")
        version = data[0]
        opcode = 0 if version == 0 else 0x50 + version  # OP_0, OP_1 .. OP_16
        return bytes([opcode, len(program)]) + program
    payload = _b58decode_check(address)
    if payload is None or len(payload) != 21:
        raise InvalidAddress(address, "bad base58 address")
    if _B58_VERSIONS.get(payload[0]) == "P2SH":
        return b"\xa9\x14" + payload[1:] + b"\x87"  # OP_HASH160 <20> OP_EQUAL
    return b"\x76\xa9\x14" + payload[1:] + b"\x88\xac"  # OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG
