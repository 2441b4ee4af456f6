// Symbolic answer comparison through @cortex-js/compute-engine, run in a worker thread so that a hard time limit
// can be enforced on a synchronous call.
//
// Why a worker: compute-engine is synchronous and some short inputs are pathological (200 characters of LaTeX-like
// garbage parse for > 10 s, `\sum_{n=1}^{10^9} n` takes ~1 s, `99999!` ~4 s). In-process, a time budget could only
// be checked between steps, never inside one. Here the caller posts the pair to the worker and blocks on
// Atomics.wait(timeoutMs); when the budget runs out the worker is terminated (a fresh one starts on the next call)
// and the pair counts as not equivalent. Worker start-up (~0.2 s: loading compute-engine and a warm-up) does not
// count against the per-comparison budget.
//
// Why compute-engine is loaded by evaluating its file: 0.27.0 is the newest release that supports Node 20 (later
// ones need Node >= 21.7), and its `require` entry is a UMD script inside a `"type": "module"` package, so Node's
// require() treats it as an ES module and returns an empty namespace. Evaluating the UMD file with `exports` and
// `module` in scope is what its wrapper expects, and works in Node and under jest alike.
import * as path from 'path';
import { MessageChannel, MessagePort, receiveMessageOnPort, Worker } from 'worker_threads';

export interface SymbolicResult {
  equivalent: boolean;
  reason: string;
}

// The worker's source: plain JS (a string, so ts-jest / coverage instrumentation never touch it).
const WORKER_SOURCE = String.raw`
'use strict';
const { workerData } = require('worker_threads');
const fs = require('fs');
const vm = require('vm');
const { port, flag, cePath } = workerData;

function loadComputeEngine() {
  const src = fs.readFileSync(cePath, 'utf8');
  const m = { exports: {} };
  vm.runInThisContext('(function (exports, module) {' + src + '\n})', { filename: cePath })(m.exports, m);
  let CE = m.exports.ComputeEngine || (m.exports.default && m.exports.default.ComputeEngine);
  if (typeof CE !== 'function') {
    const r = require(cePath);
    CE = r && r.ComputeEngine;
  }
  if (typeof CE !== 'function') throw new Error('ComputeEngine is not exported by ' + cePath);
  return CE;
}

const ComputeEngine = loadComputeEngine();
let ce = new ComputeEngine();
let parses = 0;
const cache = new Map(); // latex -> boxed expression (LRU by re-insertion)
const CACHE_MAX = 1000;

function parse(latex) {
  let e = cache.get(latex);
  if (e !== undefined) {
    cache.delete(latex);
    cache.set(latex, e);
    return e;
  }
  if (++parses > 5000) {
    // a long-lived engine accumulates symbol definitions from every parsed string: start afresh now and then
    ce = new ComputeEngine();
    cache.clear();
    parses = 1;
  }
  e = ce.parse(latex);
  cache.set(latex, e);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  return e;
}

function close(x, y) {
  if (Number.isNaN(x) && Number.isNaN(y)) return true;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return x === y;
  return Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x), Math.abs(y));
}

function value(expr) {
  const v = expr.N();
  const re = typeof v.re === 'number' ? v.re : NaN;
  const im = typeof v.im === 'number' ? v.im : 0;
  return [re, im];
}

function mulberry32(a) {
  return function () {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function compare(a, b) {
  const A = parse(a);
  const B = parse(b);
  if (!A.isValid) return { equivalent: false, reason: 'compute-engine: cannot parse "' + a + '"' };
  if (!B.isValid) return { equivalent: false, reason: 'compute-engine: cannot parse "' + b + '"' };
  let eq;
  try {
    eq = A.isEqual(B);
  } catch (e) {
    eq = undefined;
  }
  if (eq === true) return { equivalent: true, reason: 'compute-engine: isEqual' };
  const vars = Array.from(new Set([].concat(A.unknowns || [], B.unknowns || []))).sort();
  if (vars.length === 0) {
    if (eq === false) return { equivalent: false, reason: 'compute-engine: not equal' };
    const [ar, ai] = value(A);
    const [br, bi] = value(B);
    const same = close(ar, br) && close(ai, bi) && !Number.isNaN(ar);
    return { equivalent: same, reason: 'compute-engine: numeric values ' + (same ? 'agree' : 'differ') };
  }
  if (vars.length > 6) return { equivalent: false, reason: 'compute-engine: too many free variables' };
  // Free variables: isEqual is undefined for identities such as (x+1)^2 vs x^2+2x+1 (and may say false for some);
  // evaluate both sides at a few random points, negative ones included (so that sqrt(x^2) vs x differ).
  const rnd = mulberry32(0x5eed ^ (a.length * 31 + b.length));
  let agree = 0;
  for (let p = 0; p < 5; p++) {
    const subs = {};
    for (const v of vars) {
      const mag = 0.3 + rnd() * 2.7;
      subs[v] = ce.number(p % 2 === 1 ? -mag : mag);
    }
    const [ar, ai] = value(A.subs(subs));
    const [br, bi] = value(B.subs(subs));
    const aFinite = Number.isFinite(ar) && Number.isFinite(ai);
    const bFinite = Number.isFinite(br) && Number.isFinite(bi);
    if (!aFinite && !bFinite) continue; // a pole or an undefined point of both sides: no information
    if (!(aFinite && bFinite && close(ar, br) && close(ai, bi))) {
      return { equivalent: false, reason: 'compute-engine: differ at a random point of (' + vars.join(', ') + ')' };
    }
    agree++;
  }
  if (agree >= 3) return { equivalent: true, reason: 'compute-engine: agree at ' + agree + ' random points' };
  return { equivalent: false, reason: 'compute-engine: too few points where both sides are defined' };
}

port.on('message', (req) => {
  let res;
  try {
    res = compare(req.a, req.b);
  } catch (e) {
    res = { equivalent: false, reason: 'compute-engine error: ' + (e && e.message ? e.message : String(e)) };
  }
  port.postMessage(res);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});

// warm-up (JIT, lazily built dictionaries) before reporting ready, so that the first real comparisons are fast
for (const [x, y] of [['1/2', '0.5'], ['\\sqrt{12}', '2\\sqrt{3}'], ['(x+1)^2', 'x^2+2x+1'], ['\\frac{x}{2}', '0.5x']]) {
  try { compare(x, y); } catch (e) { /* ignore */ }
}
cache.clear();
Atomics.store(flag, 1, 1);
Atomics.notify(flag, 1);
`;

const STARTUP_TIMEOUT_MS = 20000;
const RETRY_AFTER_FAILURE_MS = 30000;

interface Engine {
  worker: Worker;
  port: MessagePort;
  flag: Int32Array;
}

let engine: Engine | null = null;
let unavailableUntil = 0;
let unavailableReason = '';

function resolveComputeEngine(): string {
  return require.resolve('@cortex-js/compute-engine');
}

function terminate(e: Engine): void {
  e.port.close();
  void e.worker.terminate().catch(() => undefined);
}

function startEngine(): Engine | string {
  if (Date.now() < unavailableUntil) return unavailableReason;
  let cePath: string;
  try {
    cePath = resolveComputeEngine();
  } catch (e) {
    unavailableUntil = Date.now() + RETRY_AFTER_FAILURE_MS;
    unavailableReason = `compute-engine unavailable: ${(e as Error).message}`;
    return unavailableReason;
  }
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const { port1, port2 } = new MessageChannel();
  let startError = '';
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { port: port2, flag, cePath: path.resolve(cePath) },
    transferList: [port2],
    stdout: true, // the engine must never write on the caller's terminal
    stderr: true,
  });
  worker.stdout.resume(); // discard anything it prints
  worker.stderr.resume();
  worker.unref();
  port1.unref();
  worker.on('error', (err) => {
    startError = err.message;
    Atomics.store(flag, 1, 2);
    Atomics.notify(flag, 1);
  });
  worker.on('exit', () => {
    if (Atomics.load(flag, 1) === 0) {
      Atomics.store(flag, 1, 2);
      Atomics.notify(flag, 1);
    }
  });
  const e: Engine = { worker, port: port1, flag };
  // 'error'/'exit' listeners cannot run while this thread blocks, so a worker that dies during start-up shows up as
  // a start-up timeout here (rare: only if the package is broken).
  const r = Atomics.wait(flag, 1, 0, STARTUP_TIMEOUT_MS);
  if (r === 'timed-out' || Atomics.load(flag, 1) !== 1) {
    terminate(e);
    unavailableUntil = Date.now() + RETRY_AFTER_FAILURE_MS;
    unavailableReason = `compute-engine unavailable: ${startError || 'the worker did not start'}`;
    return unavailableReason;
  }
  return e;
}

/**
 * Compares two (already normalised) LaTeX answers with compute-engine. Never throws; `timeoutMs` bounds the time
 * the comparison itself may take (worker start-up excluded). A timeout terminates the worker and reports
 * `{equivalent: false, reason: 'compute-engine: time limit of N ms exceeded'}`.
 */
export function symbolicCompare(a: string, b: string, timeoutMs: number): SymbolicResult {
  if (!engine) {
    const started = startEngine();
    if (typeof started === 'string') return { equivalent: false, reason: started };
    engine = started;
  }
  const e = engine;
  while (receiveMessageOnPort(e.port) !== undefined) {
    // drop anything stale (cannot normally happen)
  }
  Atomics.store(e.flag, 0, 0);
  e.port.postMessage({ a, b });
  const r = Atomics.wait(e.flag, 0, 0, Math.max(1, timeoutMs));
  if (r === 'timed-out') {
    engine = null;
    terminate(e);
    return { equivalent: false, reason: `compute-engine: time limit of ${timeoutMs} ms exceeded` };
  }
  let msg = receiveMessageOnPort(e.port);
  for (let i = 0; msg === undefined && i < 50; i++) {
    Atomics.wait(e.flag, 1, 1, 1); // the reply is posted before the flag is raised; give delivery a moment
    msg = receiveMessageOnPort(e.port);
  }
  if (msg === undefined) {
    engine = null;
    terminate(e);
    return { equivalent: false, reason: 'compute-engine: no reply from the worker' };
  }
  const res = msg.message as SymbolicResult;
  return { equivalent: res.equivalent === true, reason: String(res.reason) };
}

/** Stops the compute-engine worker (it is unref'd, so this is only needed for a tidy shutdown). */
export async function shutdownSymbolic(): Promise<void> {
  const e = engine;
  engine = null;
  if (e) {
    e.port.close();
    await e.worker.terminate().catch(() => undefined);
  }
}
