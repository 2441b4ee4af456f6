// Tools for the tests that race JS against the addon's async calls: a real garbage collection, detaching an
// ArrayBuffer (its memory moves to a clone that is dropped and collected), SharedArrayBuffer-backed copies, and a
// way to block the libuv thread pool so that an async call is still queued while JS changes its arguments.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
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
 * Blocks every libuv thread-pool thread (each opens the read end of a FIFO, which waits for a writer), so that an
 * async call queued now cannot start before release(): the code between the call and release() runs first.
 */
export function blockThreadPool(): { release(): Promise<void> } {
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-pool-'));
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const opened = Array.from({ length: threads }, () => fs.promises.open(fifo, 'r'));
  return {
    async release() {
      const w = fs.openSync(fifo, 'w'); // a writer: every pending open for reading returns
      for (const h of await Promise.all(opened)) await h.close();
      fs.closeSync(w);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
