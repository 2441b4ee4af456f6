// Tools for the tests that race JS against the addon's async calls: a real garbage collection, detaching an
// ArrayBuffer (its memory moves to a clone that is dropped and collected), SharedArrayBuffer-backed copies, and a
// way to hold the libuv thread pool busy so that an async call is still queued while JS changes its arguments.
import * as crypto from 'crypto';
import * as v8 from 'v8';
import * as vm from 'vm';

v8.setFlagsFromString('--expose-gc');
/** A full garbage collection (global.gc, made available at run time). */
export const gc: () => void = vm.runInNewContext('gc');

/**
 * Detaches buf: structuredClone transfers its memory to a clone, which is dropped and collected, so that memory
 * is freed (a native reader still holding the old pointer reads freed memory).
 */
export function detach(buf: ArrayBufferLike): void {
  structuredClone(buf, { transfer: [buf as ArrayBuffer] });
  gc();
  gc(); // the second collection completes the first one's array-buffer sweep: the memory is freed by now
}

type Typed = Float32Array | Float64Array | Int32Array | Uint16Array;
/** The same elements in an array of the same type backed by a SharedArrayBuffer. */
export function shared<T extends Typed>(a: T): T {
  const ctor = a.constructor as { new (b: SharedArrayBuffer): T };
  const out = new ctor(new SharedArrayBuffer(a.byteLength));
  out.set(a as never);
  return out;
}

/**
 * Occupies every libuv thread-pool thread for about `ms` (pbkdf2 jobs, sized once by timing), so that an async
 * call queued now starts only after the synchronous code that follows has run. Resolves when they are done.
 */
export function occupyThreadPool(ms = 150): Promise<void> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const iterations = Math.max(1000, Math.round((ms / msPer1000()) * 1000));
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < threads; i++)
    jobs.push(new Promise((resolve, reject) => crypto.pbkdf2('rift', 'salt', iterations, 32, 'sha256', (e) => (e ? reject(e) : resolve()))));
  return Promise.all(jobs).then(() => undefined);
}

let calibrated: number | undefined;
function msPer1000(): number {
  if (calibrated === undefined) {
    const t = process.hrtime.bigint();
    crypto.pbkdf2Sync('rift', 'salt', 20000, 32, 'sha256');
    calibrated = Math.max(0.001, Number(process.hrtime.bigint() - t) / 1e6 / 20);
  }
  return calibrated;
}
