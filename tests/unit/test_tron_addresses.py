"""Tron addresses: base58check `T...` in and out, `0x41` + 20 bytes hex stored (issue 24)."""

from __future__ import annotations

import pytest

from tracer.addresses import (
    InvalidAddress,
    address_or_none,
    checksum,
    normalize_address,
    normalize_tron,
    shape_chain,
    tron_base58,
    tron_evm,
)
from tracer.labels.vocab import normalize_address as label_address

# Tether's USDT-TRC20 contract as TronScan shows it, and its hex as the node's HTTP API answers it
# (the `contract_address` of TriggerSmartContract transactions).
USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT_HEX = "0x41a614f803b6fd780986a42c78ec9c7f77e6ded13c"


def test_base58_and_hex_spellings_meet_in_one_stored_form() -> None:
    assert normalize_tron(USDT) == USDT_HEX
    assert normalize_tron("41A614F803B6FD780986A42C78EC9C7F77E6DED13C") == USDT_HEX
    assert normalize_tron(USDT_HEX.upper().replace("0X", "0x")) == USDT_HEX
    # Tron's JSON-RPC spells addresses as 20-byte 0x: the 0x41 prefix is implied.
    assert normalize_tron("0xa614f803b6fd780986a42c78ec9c7f77e6ded13c") == USDT_HEX
    assert normalize_address("tron", USDT) == USDT_HEX
    assert tron_evm(USDT_HEX) == "0xa614f803b6fd780986a42c78ec9c7f77e6ded13c"


def test_display_is_base58() -> None:
    assert tron_base58(USDT_HEX) == USDT
    assert checksum(USDT_HEX) == USDT
    # An EVM address keeps EIP-55, a Bitcoin one comes back as is.
    assert checksum("0xa614f803b6fd780986a42c78ec9c7f77e6ded13c") == "0xa614f803B6FD780986A42c78Ec9c7f77e6DeD13C"
    assert checksum("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq") == "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@pytest.mark.parametrize("bad, why", [
    ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6T", "checksum"),  # last letter's case changed
    ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6", "34 characters"),
    ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "not a Tron address"),  # a Bitcoin address
    ("42a614f803b6fd780986a42c78ec9c7f77e6ded13c", "not a Tron address"),
    ("0x41a614f803b6fd780986a42c78ec9c7f77e6ded13", "not a Tron address"),
    (17, "not a string"),
])
def test_malformed_addresses_are_refused(bad: object, why: str) -> None:
    with pytest.raises(InvalidAddress, match=why):
        normalize_tron(bad)


def test_a_node_answer_without_a_valid_address_reads_as_none() -> None:
    assert address_or_none(normalize_tron, USDT) == USDT_HEX
    for missing in (None, "", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", 17):
        assert address_or_none(normalize_tron, missing) is None


def test_shape_names_the_chain() -> None:
    assert shape_chain(USDT) == "tron"
    assert shape_chain(USDT_HEX) == "tron"
    assert shape_chain("0xa614f803b6fd780986a42c78ec9c7f77e6ded13c") == "ethereum"
    assert shape_chain("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq") == "bitcoin"


def test_labels_store_the_hex_form() -> None:
    assert label_address("tron", USDT) == USDT_HEX
    # A lowercased upstream copy cannot be checked: kept as given for the case-lost path.
    assert label_address("tron", USDT.lower()) == USDT.lower()
