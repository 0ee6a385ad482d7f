"""Compile the dev contracts with solc-js and write their artifacts (abi, bytecode, runtime code).

    python -m tracer.devchain.anvil.compile          # rewrite contracts/artifacts/*.json
    python -m tracer.devchain.anvil.compile --check  # exit 1 when a committed artifact is stale

Runs `npx --no-install solcjs --standard-json` from tests/node (solc 0.8.28 pinned in its
package.json; `npm ci --prefix tests/node` installs it, offline afterwards). Standard JSON rather
than `solcjs --bin --abi` because the executor needs the runtime code too (anvil_setCode places
runtime code at the scenario's addresses; no constructor runs there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tracer.devchain.anvil.node import INSTALL_HINT, NODE_DIR

CONTRACTS = Path(__file__).resolve().parent / "contracts"
ARTIFACTS = CONTRACTS / "artifacts"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    # No metadata hash: the same sources give the same bytes wherever they are compiled.
    "metadata": {"bytecodeHash": "none", "appendCBOR": False},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(CONTRACTS.glob("*.sol"))}


def compile_all() -> dict[str, dict[str, Any]]:
    """Contract name -> artifact, compiled from the .sol files beside this module."""
    request = {"language": "Solidity", "sources": {name: {"content": text} for name, text in sources().items()},
               "settings": SETTINGS}
    if not (NODE_DIR / "node_modules" / "solc").is_dir():
        raise RuntimeError(f"solc-js is not installed; run: {INSTALL_HINT}")
    version = subprocess.run(["npx", "--no-install", "solcjs", "--version"], cwd=NODE_DIR, check=True,
                             capture_output=True, text=True).stdout.strip()
    # Into a file, not a pipe: solcjs exits before a pipe takes more than 64 KiB of its answer.
    with tempfile.TemporaryFile("w+") as answer:
        subprocess.run(["npx", "--no-install", "solcjs", "--standard-json"], cwd=NODE_DIR, check=True,
                       input=json.dumps(request), stdout=answer, stderr=subprocess.PIPE, text=True)
        answer.seek(0)
        text = answer.read()
    # solcjs may print warnings before the JSON document.
    out = json.loads(text[text.index("{"):])
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("solc: " + "\n".join(e.get("formattedMessage", str(e)) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source, contracts in sorted(out["contracts"].items()):
        for name, c in sorted(contracts.items()):
            if not c["evm"]["bytecode"]["object"]:
                continue  # interfaces
            artifacts[name] = {
                "contractName": name,
                "source": source,
                "compiler": f"solc {version}",
                "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
                "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def stale(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Names whose committed file differs from a fresh compile (or is missing / left over)."""
    names = {p.stem for p in ARTIFACTS.glob("*.json")}
    out = sorted(names - set(artifacts))
    for name, art in artifacts.items():
        path = ARTIFACTS / f"{name}.json"
        if not path.is_file() or path.read_text() != render(art):
            out.append(name)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare with the committed artifacts")
    args = ap.parse_args(argv)
    artifacts = compile_all()
    if args.check:
        bad = stale(artifacts)
        if bad:
            print("stale artifacts: " + ", ".join(bad), file=sys.stderr)
            return 1
        print(f"{len(artifacts)} artifacts current")
        return 0
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.json"):
        if old.stem not in artifacts:
            old.unlink()
    for name, art in artifacts.items():
        (ARTIFACTS / f"{name}.json").write_text(render(art))
    print(f"wrote {len(artifacts)} artifacts to {ARTIFACTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
