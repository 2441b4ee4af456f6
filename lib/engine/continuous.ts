// Continuous batching for generate() (lib/engine/sampler.ts): the samples of many prompts decoded together in one
// KV cache of R rows (slots). Each (prompt, sample) pair takes a free slot in order; a prompt is prefilled once
// (B = 1, into a 1-row cache) and copied into a slot for each of its samples; every step draws one token for every
// occupied slot (a new row from its prompt's prefill logits, the others from the last decode) and decodes the rows
// still running with model.decodeRows(), each at its own position. A finished row's slot is freed
// (cache.resetRows) and refilled by the next waiting sample at the next step.
//
// Tokens equal the one-prompt-at-a-time path's: every row keeps its own RNG stream (seed, prompt key, sample) and
// sees the logits of its own tokens only (the engine computes each row as it would alone; the GEMM rounding of a
// row can depend on how many rows a call holds, which moves log-probs by ~1e-7 and tokens essentially never).
//
// Also here: SampleRow, one sample's state and stop rules, shared with the one-prompt-at-a-time path.
import type { FinishReason, PromptSamples, Rng, Sample, SamplerModel, SamplerTokenizer, TokenEvent } from './sampler';

/** The stop rules of a generate() call. */
export interface StopRules {
  maxNewTokens: number;
  stopTokens: ReadonlySet<number>;
  stopStrings: readonly string[];
  /** Tokens decoded to look for a stop string (0: no stop strings). */
  window: number;
  tokenizer: SamplerTokenizer;
}

/** One sample being generated: its RNG stream, tokens so far and why it ended. */
export class SampleRow {
  readonly ids: number[] = [];
  readonly lp: number[] = [];
  readonly slp: number[] = [];
  done = false;
  reason: FinishReason = 'length';
  stop: number | string | undefined;

  constructor(
    readonly prompt: number,
    readonly index: number,
    readonly rng: Rng,
  ) {}

  /** Appends a drawn token and applies the stop rules (a stop token or string ends the row, then the length). */
  push(token: number, logprob: number, samplingLogprob: number, rules: StopRules): void {
    this.ids.push(token);
    this.lp.push(logprob);
    this.slp.push(samplingLogprob);
    if (rules.stopTokens.has(token)) {
      this.done = true;
      this.reason = 'stop';
      this.stop = token;
    } else if (rules.window > 0) {
      const tail = rules.tokenizer.decode(this.ids.slice(-rules.window));
      const hit = rules.stopStrings.find((str) => tail.includes(str));
      if (hit !== undefined) {
        this.done = true;
        this.reason = 'stop';
        this.stop = hit;
      }
    }
    if (!this.done && this.ids.length >= rules.maxNewTokens) this.done = true;
  }

  toSample(tokenizer: SamplerTokenizer): Sample {
    return {
      ids: Int32Array.from(this.ids),
      text: tokenizer.decode(this.ids, { skipSpecialTokens: true }),
      logprobs: Float32Array.from(this.lp),
      samplingLogprobs: Float32Array.from(this.slp),
      finishReason: this.reason,
      ...(this.stop !== undefined ? { stop: this.stop } : {}),
    };
  }
}

/** Draws one token for each of `rows` from logits (rows.length, V) and pushes it (sampler.ts binds the params). */
export type DrawRows = (logits: Float32Array, rows: readonly SampleRow[]) => void;

export interface ContinuousJob<Cache> {
  model: SamplerModel<Cache>;
  promptIds: readonly Int32Array[];
  k: number;
  /** Rows of the batch cache, and its capacity (the longest prompt + maxNewTokens). */
  rows: number;
  capacity: number;
  vocab: number;
  rules: StopRules;
  newRow(prompt: number, sample: number): SampleRow;
  draw: DrawRows;
  release(cache: Cache): void;
  onToken?: (e: TokenEvent) => void;
  onPromptDone?: (prompt: number, result: PromptSamples) => void | Promise<void>;
}

interface CacheRows<Cache> {
  copyRows(src: Cache, srcRow: number, dstRow: number, count: number): void;
  resetRows(row: number, count?: number): void;
}

function rowMethods<Cache>(c: Cache): CacheRows<Cache> | undefined {
  const m = c as unknown as Partial<CacheRows<Cache>>;
  return typeof c === 'object' && c !== null && typeof m.copyRows === 'function' && typeof m.resetRows === 'function'
    ? (m as CacheRows<Cache>)
    : undefined;
}

// Typed arrays made by the native addon (or in another vm context, e.g. under jest) fail `instanceof`.
const isF32 = (v: unknown) => ArrayBuffer.isView(v) && Object.prototype.toString.call(v) === '[object Float32Array]';

function checkLogits(logits: unknown, n: number, V: number, what: string): Float32Array {
  if (!isF32(logits) || (logits as Float32Array).length < n * V)
    throw new Error(
      `model: ${what} returned ${(logits as Float32Array | undefined)?.length} logits, want ${n * V} ((${n}, ${V}))`,
    );
  return logits as Float32Array;
}

/** K samples of every prompt through one batch cache (see the file comment). */
export async function runContinuous<Cache>(job: ContinuousJob<Cache>): Promise<PromptSamples[]> {
  const { model, promptIds, k: K, vocab: V, rules } = job;
  const P = promptIds.length,
    total = P * K;
  const samples: Sample[][] = promptIds.map(() => new Array<Sample>(K));
  const left = new Array<number>(P).fill(K); // samples of each prompt not finished yet
  const out: PromptSamples[] = new Array(P);
  if (total === 0) return out;

  const cache = model.newKvCache(job.rows, job.capacity);
  let pending: { prompt: number; cache: Cache; logits: Float32Array } | undefined; // the prompt being admitted
  try {
    const slots = rowMethods(cache);
    if (!slots)
      throw new TypeError(
        "model: continuous batching needs KV caches with copyRows() and resetRows() (as the engine's KvCache)",
      );
    const decodeRows = model.decodeRows!.bind(model);
    const bySlot: (SampleRow | null)[] = new Array(job.rows).fill(null);
    const free: number[] = [];
    for (let s = job.rows - 1; s >= 0; s--) free.push(s); // pop() hands out slot 0 first
    let next = 0; // the next (prompt, sample) to admit: prompt = ⌊next / K⌋, sample = next mod K
    let live: number[] = []; // the slots whose rows the last decode returned logits for, in its order
    let logits: Float32Array = new Float32Array(0);

    const finish = async (slot: number, row: SampleRow) => {
      bySlot[slot] = null;
      slots.resetRows(slot, 1);
      free.push(slot);
      samples[row.prompt][row.index] = row.toSample(rules.tokenizer);
      if (--left[row.prompt] > 0) return;
      out[row.prompt] = { promptIds: promptIds[row.prompt], samples: samples[row.prompt] };
      if (job.onPromptDone) await job.onPromptDone(row.prompt, out[row.prompt]);
    };

    for (;;) {
      // 1. Fill the free slots with the next samples (prefilling each prompt once).
      const fresh: { slot: number; row: SampleRow; logits: Float32Array }[] = [];
      while (free.length > 0 && next < total) {
        const p = Math.floor(next / K),
          s = next % K;
        if (pending === undefined) {
          const ids = promptIds[p];
          const one = model.newKvCache(1, job.capacity);
          pending = { prompt: p, cache: one, logits: new Float32Array(0) };
          pending.logits = checkLogits(await model.prefill(one, ids, 1, ids.length), 1, V, 'prefill').slice(0, V);
        }
        const slot = free.pop()!;
        slots.copyRows(pending.cache, 0, slot, 1);
        const row = job.newRow(p, s);
        bySlot[slot] = row;
        fresh.push({ slot, row, logits: pending.logits });
        next++;
        if (s === K - 1) {
          const done = pending;
          pending = undefined;
          job.release(done.cache);
        }
      }

      // 2. One token for every occupied slot.
      const ended: number[] = [];
      if (live.length > 0) {
        const rows = live.map((slot) => bySlot[slot]!);
        job.draw(logits, rows);
        rows.forEach((row, i) => {
          job.onToken?.({
            prompt: row.prompt,
            sample: row.index,
            token: row.ids[row.ids.length - 1],
            logprob: row.lp[row.lp.length - 1],
            samplingLogprob: row.slp[row.slp.length - 1],
            logits: logits.subarray(i * V, (i + 1) * V),
          });
          if (row.done) ended.push(live[i]);
        });
      }
      for (const f of fresh) {
        job.draw(f.logits, [f.row]);
        const r = f.row;
        job.onToken?.({
          prompt: r.prompt,
          sample: r.index,
          token: r.ids[0],
          logprob: r.lp[0],
          samplingLogprob: r.slp[0],
          logits: f.logits,
        });
        if (r.done) ended.push(f.slot);
      }
      for (const slot of ended) await finish(slot, bySlot[slot]!);

      // 3. Decode the rows still running, each at its own position.
      live = [];
      for (let s = 0; s < job.rows; s++) if (bySlot[s] !== null) live.push(s);
      if (live.length === 0) {
        if (next >= total) break;
        continue;
      }
      const feed = Int32Array.from(live, (s) => bySlot[s]!.ids[bySlot[s]!.ids.length - 1]);
      logits = checkLogits(await decodeRows(cache, feed, Int32Array.from(live)), live.length, V, 'decodeRows');
    }
  } finally {
    if (pending !== undefined) job.release(pending.cache);
    job.release(cache);
  }
  return out;
}
