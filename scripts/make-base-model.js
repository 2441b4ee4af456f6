#!/usr/bin/env node
// Trains the embedded default base model (models/tiny-base/) with this project's own SFT — see
// lib/demo/base-model.ts and models/tiny-base/README.md. Build first: `npm run build:ts`.
//
//   node scripts/make-base-model.js [--preset tiny|hard] [--out models/tiny-base] [--seed 1] [--steps 4000] [--threads 2]
//   node scripts/make-base-model.js --preset hard --threads 2     (models/hard-base: the experiment's hard setting)
'use strict';
const path = require('path');

function parseArgs(argv) {
  const opts = {};
  const num = new Set([
    'seed',
    'steps',
    'threads',
    'batch-size',
    'lr',
    'eval-every',
    'hidden',
    'layers',
    'intermediate',
    'difficulty',
    'max-minutes',
    'grow-factor',
  ]);
  const key = {
    out: 'outDir',
    'batch-size': 'batchSize',
    'eval-every': 'evalEvery',
    'max-minutes': 'maxMinutes',
    'grow-from': 'growFrom',
    'grow-factor': 'growFactor',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(
        'usage: node scripts/make-base-model.js [--preset tiny|hard] [--out DIR] [--seed N] [--steps N] [--threads N] [--batch-size N] [--lr X] [--eval-every N] [--hidden N] [--layers N] [--intermediate N] [--difficulty N] [--dtype fp32|bf16] [--max-minutes N] [--grow-from DIR] [--grow-factor N]',
      );
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}`);
    const name = m[1];
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (name !== 'out' && name !== 'dtype' && name !== 'preset' && name !== 'grow-from' && !num.has(name))
      throw new Error(`unknown option --${name}`);
    opts[key[name] || name] = num.has(name) ? Number(value) : value;
  }
  return opts;
}

let lib;
try {
  lib = require(path.join(__dirname, '..', 'dist', 'lib', 'demo', 'base-model'));
} catch (e) {
  console.error(`dist/lib/demo/base-model.js not found: run \`npm run build:ts\` first (${e.message})`);
  process.exit(1);
}
const { shutdownVerifier } = require(path.join(__dirname, '..', 'dist', 'lib', 'reward', 'verifier'));

lib
  .makeBaseModel(parseArgs(process.argv.slice(2)))
  .then(async (r) => {
    console.log(
      `wrote ${r.outDir} (${(r.sizeBytes / 1e6).toFixed(2)} MB): step ${r.step}, Mean@8 ${(100 * r.final.meanAtK).toFixed(1)}%, ` +
        `Pass@8 ${(100 * r.final.passAtK).toFixed(1)}% on ${r.final.problems} held-out problems, training ${r.trainSeconds.toFixed(0)} s`,
    );
    await shutdownVerifier();
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
