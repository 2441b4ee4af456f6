#!/usr/bin/env node
// Builds the native addon when it is missing or older than its sources.
// cmake-js first (CUDA kernels when nvcc is found); node-gyp (CPU only) when CMake is absent or fails.
// Flags: --force (always rebuild), --gyp (use node-gyp), --asan (AddressSanitizer build into build-asan/),
// --portable (no -march=native: the addon runs on other x86-64 / arm64 CPUs).
// RIFT_BUILD_DIR=dir builds into another folder (load it with RIFT_ADDON=dir/Release/rift.node).
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));
const asan = args.has('--asan');
const outDir = path.resolve(root, process.env.RIFT_BUILD_DIR || (asan ? 'build-asan' : 'build'));
const addon = path.join(outDir, 'Release', 'rift.node');

function newestSource(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

function upToDate() {
  if (!fs.existsSync(addon)) return false;
  const built = fs.statSync(addon).mtimeMs;
  const inputs = [path.join(root, 'CMakeLists.txt'), path.join(root, 'binding.gyp')]
    .filter((p) => fs.existsSync(p))
    .map((p) => fs.statSync(p).mtimeMs);
  return Math.max(newestSource(path.join(root, 'native')), ...inputs) <= built;
}

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function have(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

if (!args.has('--force') && upToDate()) process.exit(0);

const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
let ok = false;
if (!args.has('--gyp') && have('cmake')) {
  // Every option is passed explicitly and CMake reconfigures each time, so a flag takes effect on a build folder
  // configured before with other settings (only what changed is rebuilt).
  // --portable (or RIFT_PORTABLE=1): no -march=native, for an addon built here and run on another machine's CPU.
  // (The addon needs the build machine's glibc and libstdc++ versions or newer: build on the oldest distribution
  // it must run on.)
  const portable = args.has('--portable') || process.env.RIFT_PORTABLE === '1';
  const on = (b) => (b ? 'ON' : 'OFF');
  const defs = [
    `--CDRIFT_CUDA=${on(!asan && !process.env.RIFT_NO_CUDA)}`,
    `--CDRIFT_NATIVE_ARCH=${on(!portable)}`,
    `--CDRIFT_ASAN=${on(asan)}`,
  ];
  if (asan) defs.push('--CDCMAKE_BUILD_TYPE=RelWithDebInfo');
  ok =
    run(process.execPath, [cmakeJs, 'configure', '--out', outDir, ...defs]) &&
    run(process.execPath, [cmakeJs, 'build', '--out', outDir]);
  if (!ok) console.error('rift: cmake-js build failed; trying node-gyp (CPU only)');
}
if (!ok && !asan) {
  const gyp = path.join(
    path.dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  ok = fs.existsSync(gyp) ? run(process.execPath, [gyp, 'rebuild']) : run('node-gyp', ['rebuild']);
}
if (!ok) {
  console.error('rift: could not build the native addon (need a C++17 compiler and CMake or node-gyp)');
  process.exit(1);
}
