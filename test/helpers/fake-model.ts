// A pure-TS stand-in for the engine's Model in sampler tests: the logits of a position are a fixed function of the
// whole token history (so a cache that loses or mixes rows shows up), and every call is recorded.
import type { SamplerModel } from '../../lib/engine/sampler';

export interface FakeCache {
  B: number;
  Tmax: number;
  rows: number[][]; // token history of each row
  freed: boolean;
  /** Only with `cacheMethods` or `rows`: the native KvCache's own methods. */
  copyRows?(src: FakeCache, srcRow: number, dstRow?: number, count?: number): void;
  free?(): void;
  /** Only with `rows`. */
  resetRows?(row: number, count?: number): void;
}

export type LogitsOf = (history: readonly number[]) => Float32Array;

/** Pseudo-random logits in [−3, 3) from a hash of the whole history. */
export function hashLogits(V: number): LogitsOf {
  return (history) => {
    let h = 0x811c9dc5;
    for (const t of history) h = Math.imul(h ^ (t + 1), 0x01000193);
    const out = new Float32Array(V);
    for (let v = 0; v < V; v++) {
      h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) ^ v;
      h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
      out[v] = ((h >>> 0) / 2 ** 32) * 6 - 3;
    }
    return out;
  };
}

export class FakeModel implements SamplerModel<FakeCache> {
  readonly config: { vocab_size: number; max_position_embeddings?: number };
  readonly calls: string[] = [];
  readonly broadcastKvCache?: (src: FakeCache, srcRow: number, dst: FakeCache) => void;
  readonly freeKvCache?: (c: FakeCache) => void;
  readonly caches: FakeCache[] = [];
  /** With `rows`: continuous batching (the native Model's decodeRows, caches with copyRows / resetRows). */
  readonly decodeRows?: (c: FakeCache, tokens: Int32Array, rows: Int32Array) => Float32Array | Promise<Float32Array>;
  /** With `rows`: the rows of every decodeRows call. */
  readonly rowCalls: number[][] = [];
  private readonly cacheMethods: boolean;

  /**
   * broadcast (default true): the model has broadcastKvCache and freeKvCache. cacheMethods: instead, caches carry
   * copyRows()/free() like the native KvCache. async: prefill/decode return Promises.
   */
  constructor(
    readonly V: number,
    readonly logitsOf: LogitsOf = hashLogits(V),
    opts: { maxPos?: number; broadcast?: boolean; cacheMethods?: boolean; async?: boolean; rows?: boolean } = {},
  ) {
    this.config = { vocab_size: V, ...(opts.maxPos !== undefined ? { max_position_embeddings: opts.maxPos } : {}) };
    this.cacheMethods = (opts.cacheMethods ?? false) || (opts.rows ?? false);
    if (opts.rows) {
      const dec = (c: FakeCache, tokens: Int32Array, rows: Int32Array) => this.decodeOnRows(c, tokens, rows);
      this.decodeRows = opts.async ? (c, t, r) => new Promise((res) => setImmediate(() => res(dec(c, t, r)))) : dec;
    }
    if (!this.cacheMethods)
      this.freeKvCache = (c) => {
        c.freed = true;
      };
    if ((opts.broadcast ?? true) && !this.cacheMethods)
      this.broadcastKvCache = (src, srcRow, dst) => {
        this.calls.push(`broadcast(${srcRow}→${dst.B})`);
        if (dst.rows.some((r) => r.length)) throw new Error('broadcast into a non-empty cache');
        for (let r = 0; r < dst.B; r++) dst.rows[r] = [...src.rows[srcRow]];
      };
    if (opts.async) {
      const pre = this.prefill.bind(this),
        dec = this.decode.bind(this);
      this.prefill = ((c: FakeCache, ids: Int32Array, B: number, T: number) =>
        Promise.resolve(pre(c, ids, B, T))) as never;
      this.decode = ((c: FakeCache, t: Int32Array) =>
        new Promise((res) => setImmediate(() => res(dec(c, t))))) as never;
    }
  }

  newKvCache(B: number, Tmax: number): FakeCache {
    this.calls.push(`new(${B},${Tmax})`);
    const c: FakeCache = { B, Tmax, rows: Array.from({ length: B }, () => []), freed: false };
    if (this.cacheMethods) {
      c.copyRows = (src, srcRow, dstRow = 0, count = c.B - dstRow) => {
        this.calls.push(`copyRows(${srcRow}→${dstRow}+${count})`);
        for (let r = dstRow; r < dstRow + count; r++) {
          if (c.rows[r].length) throw new RangeError(`dstRow: row ${r} is in use`);
          c.rows[r] = [...src.rows[srcRow]];
        }
      };
      c.free = () => {
        c.freed = true;
      };
      c.resetRows = (row, count = 1) => {
        this.calls.push(`resetRows(${row})`);
        for (let r = row; r < row + count; r++) c.rows[r] = [];
      };
    }
    this.caches.push(c);
    return c;
  }

  private rowLogits(c: FakeCache): Float32Array {
    const out = new Float32Array(c.B * this.V);
    c.rows.forEach((h, r) => out.set(this.logitsOf(h), r * this.V));
    return out;
  }

  prefill(c: FakeCache, ids: Int32Array, B: number, T: number): Float32Array {
    this.calls.push(`prefill(${B},${T})`);
    if (c.freed) throw new Error('prefill on a freed cache');
    if (B !== c.B || ids.length !== B * T || c.rows.some((r) => r.length)) throw new Error('bad prefill');
    if (T > c.Tmax) throw new Error('prefill past Tmax');
    for (let b = 0; b < B; b++) c.rows[b] = Array.from(ids.subarray(b * T, (b + 1) * T));
    return this.rowLogits(c);
  }

  private decodeOnRows(c: FakeCache, tokens: Int32Array, rows: Int32Array): Float32Array {
    this.calls.push(`decodeRows(${rows.length})`);
    this.rowCalls.push(Array.from(rows));
    if (c.freed) throw new Error('decodeRows on a freed cache');
    if (tokens.length !== rows.length || new Set(rows).size !== rows.length) throw new Error('bad decodeRows');
    const out = new Float32Array(rows.length * this.V);
    rows.forEach((r, i) => {
      const h = c.rows[r];
      if (!h.length) throw new Error(`decodeRows: row ${r} holds no prompt`);
      if (h.length >= c.Tmax) throw new Error('decode past Tmax');
      h.push(tokens[i]);
      out.set(this.logitsOf(h), i * this.V);
    });
    return out;
  }

  decode(c: FakeCache, tokens: Int32Array): Float32Array {
    this.calls.push('decode');
    if (c.freed) throw new Error('decode on a freed cache');
    if (tokens.length !== c.B) throw new Error(`decode: ${tokens.length} tokens for ${c.B} rows`);
    c.rows.forEach((h, r) => {
      if (h.length >= c.Tmax) throw new Error('decode past Tmax');
      h.push(tokens[r]);
    });
    return this.rowLogits(c);
  }
}
