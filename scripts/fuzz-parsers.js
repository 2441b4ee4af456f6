#!/usr/bin/env node
// The long fuzz campaign of the TypeScript parsers (test/helpers/fuzz-parsers.ts: JSONL reader, tokenizer.json,
// latest.json, trainer-state.json), outside CI:
//
//   node scripts/fuzz-parsers.js [--n 1000000] [--seed 20261204] [--targets jsonl,tokenizer,latest,trainer-state]
//
// The TypeScript sources are compiled in memory as they are required (typescript's transpileModule), so no build
// is needed. Prints one progress line per 100,000 inputs and a summary; exits 1 when any input crashed (threw
// something other than an Error naming the input), printing the first crashes with their inputs.
'use strict';
const fs = require('fs');
const path = require('path');
const ts = require('typescript');

const root = path.join(__dirname, '..');
require.extensions['.ts'] = (module, file) => {
  const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(out.outputText, file);
};

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const n = Number(arg('n', process.env.RIFT_FUZZ_TS_N ?? 1000000));
const seed = Number(arg('seed', process.env.RIFT_FUZZ_SEED ?? 20261204));
if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`--n: expected an integer ≥ 1, got ${arg('n')}`);
if (!Number.isSafeInteger(seed) || seed < 0)
  throw new RangeError(`--seed: expected an integer ≥ 0, got ${arg('seed')}`);
const { runParserFuzz, TARGETS } = require(path.join(root, 'test', 'helpers', 'fuzz-parsers.ts'));
const targets = arg('targets', TARGETS.join(',')).split(',');
for (const t of targets)
  if (!TARGETS.includes(t)) throw new RangeError(`--targets: ${t} is not one of ${TARGETS.join(', ')}`);

const t0 = Date.now();
const r = runParserFuzz({
  n,
  seed,
  targets,
  onProgress: (done) => console.log(`${done} inputs, ${((Date.now() - t0) / 1000).toFixed(1)} s`),
});
console.log(
  `TS parser fuzz, seed ${r.seed}: ${r.inputs} inputs, ${r.crashes.length} crashes, ${(r.ms / 1000).toFixed(1)} s`,
);
for (const [t, s] of Object.entries(r.byTarget))
  if (s.inputs)
    console.log(`  ${t}: ${s.inputs} inputs, ${s.parsed} parsed, ${s.rejected} rejected with a named Error`);
for (const c of r.crashes.slice(0, 5))
  console.log(`CRASH [${c.target}] ${c.problem}\n  input: ${JSON.stringify(c.input)}`);
process.exitCode = r.crashes.length ? 1 : 0;
