#!/usr/bin/env node
// Lists the addon's C++ sources for binding.gyp (the CPU-only node-gyp build): every .cc under the native
// folders that need no CUDA, so the gyp build never drifts from CMake's globs.
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const dirs = ['native/core', 'native/cpu', 'native/model', 'native/napi', 'native/distributed', 'native/backends'];
const files = dirs.flatMap((d) =>
  fs.existsSync(path.join(root, d))
    ? fs
        .readdirSync(path.join(root, d))
        .filter((f) => f.endsWith('.cc'))
        .sort()
        .map((f) => `${d}/${f}`)
    : [],
);
console.log(files.join(' '));
