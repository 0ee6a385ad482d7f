"""Validation and normalisation of chain addresses: a malformed address is an error, never a miss."""

from __future__ import annotations

import re

from eth_utils import is_checksum_address, to_checksum_address

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")


class InvalidAddress(ValueError):
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
    """EIP-55 form for display."""
    return str(to_checksum_address(address))
