"""JSON-RPC errors and the parsing of request parameters (quantities, addresses, hashes) the dev
chain's server answers with, in the codes and messages nodes use."""

from __future__ import annotations

from typing import Any


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def parse_quantity(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise RpcError(-32602, f"invalid {what}: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid {what}: {value!r}")


def parse_address(value: Any) -> str:
    if isinstance(value, str) and len(value) == 42 and value[:2] in ("0x", "0X"):
        try:
            int(value[2:], 16)
        except ValueError:
            pass
        else:
            return "0x" + value[2:].lower()
    raise RpcError(-32602, f"invalid address: {value!r}")


def parse_hash(value: Any) -> str:
    if isinstance(value, str) and len(value) == 66 and value[:2] in ("0x", "0X"):
        return "0x" + value[2:].lower()
    raise RpcError(-32602, f"invalid hash: {value!r}")


def address_set(value: Any) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {parse_address(value)}
    if isinstance(value, list):
        # An empty list filters nothing, as on geth.
        return {parse_address(v) for v in value} or None
    raise RpcError(-32602, f"invalid address list: {value!r}")
