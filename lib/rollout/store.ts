// The rollout store: one JSONL file, one record per (problem, sample), append-only (lib/data/jsonl.ts).
//
// A run appends a problem's records as soon as they are scored (appendJsonl: one write + fsync). An interrupted
// append can leave a torn last line; openRollouts() cuts it off (repairJsonlTail: one ftruncate to the end of the
// last complete line, so the file is either as it was or without the torn bytes) before anything new is appended.
// A last line that is complete JSON but lacks its '\n' is an ordinary record (appendJsonl completes it).
// Each (problem, sample) pair is one record: readers skip identical repeats (with a warning) and reject
// conflicting ones, so a file that two runs appended to is never trained on twice.
import * as fs from 'fs';
import { scanJsonl, appendJsonl, repairJsonlTail } from '../data/jsonl';
import { checkPromptSpec, type PromptSpec } from '../data/prompt-spec';

/** The sampling parameters a record was generated with. */
export interface RolloutSamplingParams {
  temperature: number;
  topK: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
}

export interface RolloutRecord {
  problemId: string;
  /** 0 … K−1: the sample's RNG stream within its problem. */
  sampleIndex: number;
  /** The generated text (special tokens skipped). */
  text: string;
  /** Generated tokens (a stop token included). */
  tokens: number;
  reward: number;
  correct: boolean;
  /** The answer the verifier extracted (null: none found). */
  extracted?: string | null;
  /** 'stop': ended by a stop token or string; 'length': hit maxNewTokens. */
  finishReason?: 'stop' | 'length';
  params: RolloutSamplingParams;
  /** The prompt format the prompt was built with (lib/data/prompt-spec.ts; absent: not recorded). */
  promptFormat?: PromptSpec;
  /** Tokens of the prompt the sample was drawn after. */
  promptTokens?: number;
  /** Their identity: lib/loop/prompt.ts promptHash (16 hex digits of SHA-256). */
  promptHash?: string;
  /** ISO time the record was written (only when the run asks for timestamps). */
  ts?: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const PARAM_KEYS = ['temperature', 'topK', 'topP', 'maxNewTokens', 'seed'] as const;

/** Returns `v` as a RolloutRecord, or throws a TypeError naming the bad field (readJsonl prefixes `file:line:`). */
export function checkRecord(v: unknown): RolloutRecord {
  const bad = (what: string) => new TypeError(what);
  if (!isObj(v)) throw bad('not a JSON object');
  if (typeof v.problemId !== 'string') throw bad('problemId must be a string');
  if (!Number.isSafeInteger(v.sampleIndex) || (v.sampleIndex as number) < 0)
    throw bad('sampleIndex must be an integer ≥ 0');
  if (typeof v.text !== 'string') throw bad('text must be a string');
  if (!Number.isSafeInteger(v.tokens) || (v.tokens as number) < 0) throw bad('tokens must be an integer ≥ 0');
  if (typeof v.reward !== 'number' || !Number.isFinite(v.reward)) throw bad('reward must be a finite number');
  if (typeof v.correct !== 'boolean') throw bad('correct must be a boolean');
  if (!isObj(v.params)) throw bad('params must be an object');
  for (const k of PARAM_KEYS) if (typeof v.params[k] !== 'number') throw bad(`params.${k} must be a number`);
  if (v.promptFormat !== undefined) checkPromptSpec(v.promptFormat, 'promptFormat');
  if (v.promptTokens !== undefined && (!Number.isSafeInteger(v.promptTokens) || (v.promptTokens as number) < 1))
    throw bad('promptTokens must be an integer ≥ 1');
  if (v.promptHash !== undefined && !(typeof v.promptHash === 'string' && /^[0-9a-f]{16}$/.test(v.promptHash)))
    throw bad('promptHash must be 16 hex digits');
  return v as unknown as RolloutRecord;
}

export function sameParams(a: RolloutSamplingParams, b: RolloutSamplingParams): boolean {
  return PARAM_KEYS.every((k) => a[k] === b[k]);
}

/** What reading a store found besides its records. */
export interface StoreReadInfo {
  /** Records skipped because an identical record of the same (problem, sample) came earlier in the file. */
  duplicates: number;
  /** A torn last line was found (and skipped). */
  truncatedTail: boolean;
  /** Bytes of the file that hold complete lines. */
  validBytes: number;
}

export interface ReadRolloutsOptions {
  /** Told once per read when repeated (problem, sample) records were skipped. */
  onWarning?: (message: string) => void;
}

/** A record's content without its write time (two writers of one sample differ only there). */
const content = (r: RolloutRecord) => JSON.stringify({ ...r, ts: undefined });

/**
 * Reads and checks every record. A (problemId, sampleIndex) seen before is skipped when the record is identical
 * (two writers appended the same sample: counted in `duplicates`) and is a RangeError naming both lines otherwise.
 */
function readStore(file: string): { records: RolloutRecord[] } & StoreReadInfo {
  const first = new Map<string, { line: number; content: string }>();
  const records: RolloutRecord[] = [];
  let duplicates = 0;
  const r = scanJsonl<RolloutRecord>(
    file,
    ({ value, line }) => {
      const key = JSON.stringify([value.problemId, value.sampleIndex]);
      const seen = first.get(key);
      const c = content(value);
      if (!seen) {
        first.set(key, { line, content: c });
        records.push(value);
      } else if (seen.content === c) duplicates++;
      else
        throw new RangeError(
          `${file}:${line}: problem ${JSON.stringify(value.problemId)} sample ${value.sampleIndex} is already on line ${seen.line} ` +
            `with other contents (two runs wrote into this file?); keep one of the two lines`,
        );
    },
    { validate: checkRecord, allowTruncatedTail: true },
  );
  return { records, duplicates, truncatedTail: r.truncatedTail, validBytes: r.validBytes };
}

function warnDuplicates(file: string, n: number, opts: ReadRolloutsOptions): void {
  if (n > 0 && opts.onWarning)
    opts.onWarning(
      `${file}: ${n} repeated (problem, sample) record${n === 1 ? '' : 's'} skipped (identical copies: two runs appended the same samples)`,
    );
}

/**
 * Opens a store for appending: reads and checks every record (a missing file holds none) and cuts off a torn last
 * line. Any other malformed line is an error naming `file:line`; repeated records are skipped (see readRollouts).
 */
export function openRollouts(
  file: string,
  opts: ReadRolloutsOptions = {},
): { records: RolloutRecord[]; droppedBytes: number; duplicates: number } {
  if (!fs.existsSync(file)) return { records: [], droppedBytes: 0, duplicates: 0 };
  const r = readStore(file);
  let droppedBytes = 0;
  if (r.truncatedTail) {
    droppedBytes = fs.statSync(file).size - r.validBytes;
    repairJsonlTail(file);
  }
  warnDuplicates(file, r.duplicates, opts);
  return { records: r.records, droppedBytes, duplicates: r.duplicates };
}

/**
 * Reads a store without modifying it (a torn last line is skipped). Each (problem, sample) is returned once: an
 * identical repeat is skipped (opts.onWarning is told), a repeat with other contents is a RangeError naming both
 * lines — training must not count a sample twice.
 */
export function readRollouts(file: string, opts: ReadRolloutsOptions = {}): RolloutRecord[] {
  const r = readStore(file);
  warnDuplicates(file, r.duplicates, opts);
  return r.records;
}

/** Appends records (one JSON line each, fsync'd). */
export function appendRollouts(file: string, records: readonly RolloutRecord[]): void {
  if (records.length) appendJsonl(file, records);
}
