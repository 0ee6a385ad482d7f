// Compiles TestContracts.sol with solc-js into test_contracts.json (ABI + creation bytecode).
// Run from this folder after `npm install solc@0.8.28` somewhere on NODE_PATH:
//   NODE_PATH=/path/to/node_modules node compile.js
const fs = require("fs");
const solc = require("solc");
const source = fs.readFileSync(__dirname + "/TestContracts.sol", "utf8");
const input = {
  language: "Solidity",
  sources: { "TestContracts.sol": { content: source } },
  settings: {
    // paris: no PUSH0, so the bytecode runs on every fork eth-tester may default to.
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
for (const e of output.errors || []) {
  console.error(e.formattedMessage);
  if (e.severity === "error") process.exit(1);
}
const result = { compiler: solc.version(), evmVersion: "paris", contracts: {} };
for (const [name, c] of Object.entries(output.contracts["TestContracts.sol"])) {
  result.contracts[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
}
fs.writeFileSync(__dirname + "/test_contracts.json", JSON.stringify(result, null, 1) + "\n");
console.log("wrote test_contracts.json with", Object.keys(result.contracts).join(", "));
