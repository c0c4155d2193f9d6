// Compiles a Solidity standard-JSON input read from stdin with the npm `solc` package and writes
// the standard-JSON output to stdout. Python (contracts/compile.py) builds the input and
// the artifacts; this script only bridges to the compiler, which exists only as a JS module here.
"use strict";
const solc = require("solc");

const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => {
  const input = Buffer.concat(chunks).toString("utf8");
  const output = JSON.parse(solc.compile(input));
  output.compilerVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
