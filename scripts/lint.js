#!/usr/bin/env node
// npm run lint: eslint (eslint.config.mjs) over the TypeScript and the scripts, `prettier --check` (.prettierrc.json)
// over the same files, and `clang-format --dry-run -Werror` (.clang-format) over native/ when clang-format is
// installed (without it the C++ check is skipped with a message; .ci/run installs it).
// npm run format (--fix): prettier --write and clang-format -i on the files the format checks cover.
//
// .format-pending lists the files not yet brought to the formatter's style (one path a line): the format checks
// and `npm run format` skip them, so that the tree could adopt the formatters without one commit rewriting every
// file. `npm run format -- --all` formats every file and empties the list.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const PENDING = path.join(root, '.format-pending');
const TS_GLOBS = ['lib', 'bench', 'test', 'bin', 'examples', 'scripts/*.js'];

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

/** Tracked and untracked-but-not-ignored files under `dirs` whose names match `re`. */
function files(dirs, re) {
  const r = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...dirs], {
    cwd: root,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`git ls-files failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((f) => re.test(f) && fs.existsSync(path.join(root, f)));
}

function readPending() {
  if (!fs.existsSync(PENDING)) return new Set();
  return new Set(
    fs
      .readFileSync(PENDING, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#')),
  );
}

function hasClangFormat() {
  const r = spawnSync('clang-format', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

function main(argv) {
  const fix = argv.includes('--fix');
  const all = argv.includes('--all');
  const pending = all ? new Set() : readPending();
  const tsFiles = files(
    ['lib', 'bench', 'test', 'bin', 'examples', 'scripts'],
    /^(?:scripts\/[^/]+\.js|(?:lib|bench|test|bin|examples)\/.*\.(?:ts|js))$/,
  );
  const cppFiles = files(['native'], /\.(?:cc|h|cu|cuh)$/);
  const prettierBin = path.join(root, 'node_modules', '.bin', 'prettier');
  const eslintBin = path.join(root, 'node_modules', '.bin', 'eslint');
  const clang = hasClangFormat();
  let failed = 0;

  const fmtTs = tsFiles.filter((f) => !pending.has(f));
  const fmtCpp = cppFiles.filter((f) => !pending.has(f));
  const skipped = tsFiles.length + cppFiles.length - fmtTs.length - fmtCpp.length;
  if (fix) {
    console.log(`== prettier --write (${fmtTs.length} files)`);
    failed |= run(prettierBin, ['--write', '--log-level', 'warn', ...fmtTs]);
    if (clang) {
      console.log(`== clang-format -i (${fmtCpp.length} files)`);
      failed |= run('clang-format', ['-i', '--style=file', ...fmtCpp]);
    } else console.log('== clang-format: not installed, the C++ files are not formatted');
    if (all && !failed && fs.existsSync(PENDING)) {
      fs.writeFileSync(PENDING, "# Files not yet in the formatters' style (see scripts/lint.js): none.\n");
    }
    return failed ? 1 : 0;
  }

  console.log('== eslint');
  failed |= run(eslintBin, ['--max-warnings', '0', ...TS_GLOBS]);
  console.log(`== prettier --check (${fmtTs.length} files; ${skipped} listed in .format-pending are skipped)`);
  failed |= run(prettierBin, ['--check', '--log-level', 'warn', ...fmtTs]);
  if (clang) {
    console.log(`== clang-format --dry-run -Werror (${fmtCpp.length} files)`);
    failed |= run('clang-format', ['--dry-run', '-Werror', '--style=file', ...fmtCpp]);
  } else {
    console.log('== clang-format: not installed, the C++ format check is skipped (apt-get install clang-format)');
  }
  console.log(failed ? '== lint FAILED' : '== lint passed');
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
