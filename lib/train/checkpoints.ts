// The trainer's checkpoint folder on disk (lib/train/trainer.ts writes and resumes through these):
//
//   <root>/latest.json              {dir: "step-NNNNNN", step}: the newest complete checkpoint (written last, atomic)
//   <root>/step-NNNNNN/             config.json, model.safetensors, optimizer.safetensors, trainer-state.json
//   <root>/reference/               DPO 'held': the reference weights (trainer-state's referenceDir, relative)
//
// Reading is strict: every file is size-bounded, every JSON error and every bad field names the file (and the
// field), and every path a checkpoint file names (latest.json's dir, trainer-state's optimizer file and reference
// directory) must resolve inside the checkpoint folder — a checkpoint cannot make a resume read elsewhere.
//
// Hygiene: directories are written into a temporary sibling and renamed into place (writeDirAtomic); the temps a
// killed process left behind are removed on the next start (cleanCheckpointTemps); old step directories beyond a
// count are removed after each checkpoint (pruneCheckpoints); metrics.jsonl is cut back to a checkpoint's step
// before a resume appends to it again (truncateMetricsFile).
import * as fs from 'fs';
import * as path from 'path';
import { readFileBounded, parseJsonText } from '../data/files';
import { readJsonl, writeJsonlAtomic } from '../data/jsonl';
import { pidAlive } from '../data/lock';
import type { StepMetrics } from './trainer';

export const STATE_FILE = 'trainer-state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const LATEST_FILE = 'latest.json';
export const REFERENCE_DIR = 'reference';
export const STATE_FORMAT = 'rift-trainer-state';
export const STATE_VERSION = 1;
/** Checkpoints kept by default (the newest ones; 0 keeps all). */
export const DEFAULT_KEEP_CHECKPOINTS = 3;
const MAX_LATEST_BYTES = 64 * 1024;

export interface TrainerState {
  format: string;
  version: number;
  step: number;
  totalSteps: number;
  /** The next step's epoch and its index in that epoch (the data order position). */
  epoch: number;
  stepInEpoch: number;
  rng: { kind: string; seed: number; epoch: number };
  options: Record<string, unknown>;
  fingerprint: string;
  examples: number;
  /** The AdamW moments: a file name inside the step directory. */
  optimizer: { file: string; steps: number } | null;
  refLogps?: number[];
  /** DPO 'held': the reference weights, relative to the checkpoint root (older checkpoints: absolute, inside it). */
  referenceDir?: string;
  history: StepMetrics[];
}

const STEP_DIR = /^step-(\d{6,})$/;

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** Whether `p` is `root` or lies below it (symlinks resolved where the paths exist). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(realOrResolved(root), realOrResolved(p));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** `rel` (a field of `source`) resolved against `root`; a RangeError unless it stays strictly inside `root`. */
export function insidePath(root: string, rel: unknown, source: string, field: string): string {
  if (typeof rel !== 'string' || rel === '' || rel.includes('\0'))
    throw new TypeError(`${source}: ${field} must be a non-empty path string, got ${kind(rel)}`);
  const p = path.resolve(root, rel);
  if (!isInside(root, p) || path.resolve(p) === path.resolve(root))
    throw new RangeError(`${source}: ${field} ${JSON.stringify(rel)} resolves outside the checkpoint folder ${root}`);
  return p;
}

function readText(file: string, maxBytes?: number): string {
  const t = readFileBounded(file, maxBytes).toString('utf8');
  return t.charCodeAt(0) === 0xfeff ? t.slice(1) : t;
}

/** Parses latest.json's text: {dir: "step-NNNNNN", step} with dir a plain name that agrees with step. */
export function parseLatest(text: string, file: string): { dir: string; step: number } {
  const v = parseJsonText(file, text);
  if (!isObj(v)) throw new TypeError(`${file}: must hold a JSON object {dir, step}, got ${kind(v)}`);
  if (typeof v.dir !== 'string') throw new TypeError(`${file}: dir must be a string, got ${kind(v.dir)}`);
  const m = STEP_DIR.exec(v.dir);
  if (!m)
    throw new RangeError(
      `${file}: dir ${JSON.stringify(v.dir).slice(0, 200)} is not a step directory name (step-NNNNNN)`,
    );
  if (!Number.isSafeInteger(v.step) || (v.step as number) < 1)
    throw new RangeError(`${file}: step must be an integer ≥ 1, got ${JSON.stringify(v.step)}`);
  if (Number(m[1]) !== v.step) throw new RangeError(`${file}: step ${v.step} disagrees with dir "${v.dir}"`);
  return { dir: v.dir, step: v.step as number };
}

/** The checkpoint latest.json points at (an existing directory inside `root`) and its step. */
export function readLatest(root: string): { dir: string; step: number } {
  const file = path.join(root, LATEST_FILE);
  const l = parseLatest(readText(file, MAX_LATEST_BYTES), file);
  const dir = insidePath(root, l.dir, file, 'dir');
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
    throw new Error(`${file}: dir "${l.dir}": no such checkpoint directory in ${root}`);
  return { dir, step: l.step };
}

/** A checkpoint root (its latest.json is followed) or a step directory, as the step directory. */
export function checkpointStepDir(dir: string): string {
  if (fs.existsSync(path.join(dir, LATEST_FILE)) && !fs.existsSync(path.join(dir, STATE_FILE)))
    return readLatest(dir).dir;
  return dir;
}

/** Validates trainer-state.json's text; every error names `file` and the field. */
export function parseTrainerState(text: string, file: string): TrainerState {
  const v = parseJsonText(file, text);
  if (!isObj(v)) throw new TypeError(`${file}: must hold a JSON object, got ${kind(v)}`);
  if (v.format !== STATE_FORMAT || v.version !== STATE_VERSION)
    throw new Error(
      `${file}: format ${String(v.format)} version ${String(v.version)} is not ${STATE_FORMAT} version ${STATE_VERSION}`,
    );
  const int = (k: string, x: unknown, lo: number) => {
    if (!Number.isSafeInteger(x) || (x as number) < lo)
      throw new RangeError(`${file}: ${k} must be an integer ≥ ${lo}, got ${JSON.stringify(x)}`);
    return x as number;
  };
  const step = int('step', v.step, 1);
  const totalSteps = int('totalSteps', v.totalSteps, step);
  int('epoch', v.epoch, 0);
  int('stepInEpoch', v.stepInEpoch, 0);
  int('examples', v.examples, 0);
  if (totalSteps < step) throw new RangeError(`${file}: totalSteps ${totalSteps} < step ${step}`);
  if (!isObj(v.rng)) throw new TypeError(`${file}: rng must be an object, got ${kind(v.rng)}`);
  if (!isObj(v.options)) throw new TypeError(`${file}: options must be an object, got ${kind(v.options)}`);
  if (typeof v.fingerprint !== 'string')
    throw new TypeError(`${file}: fingerprint must be a string, got ${kind(v.fingerprint)}`);
  const opt = v.optimizer;
  if (opt !== null) {
    if (!isObj(opt)) throw new TypeError(`${file}: optimizer must be null or {file, steps}, got ${kind(opt)}`);
    if (
      typeof opt.file !== 'string' ||
      opt.file === '' ||
      path.basename(opt.file) !== opt.file ||
      opt.file === '..' ||
      opt.file === '.'
    )
      throw new RangeError(
        `${file}: optimizer.file must be a file name inside the checkpoint directory, got ${JSON.stringify(opt.file)?.slice(0, 200)}`,
      );
    int('optimizer.steps', opt.steps, 0);
  }
  if (v.refLogps !== undefined) {
    if (!Array.isArray(v.refLogps))
      throw new TypeError(`${file}: refLogps must be an array of numbers, got ${kind(v.refLogps)}`);
    v.refLogps.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isFinite(x))
        throw new RangeError(`${file}: refLogps[${i}] must be a finite number, got ${JSON.stringify(x)}`);
    });
  }
  if (v.referenceDir !== undefined && (typeof v.referenceDir !== 'string' || v.referenceDir === ''))
    throw new TypeError(`${file}: referenceDir must be a non-empty string, got ${kind(v.referenceDir)}`);
  if (!Array.isArray(v.history)) throw new TypeError(`${file}: history must be an array, got ${kind(v.history)}`);
  if (v.history.length !== step)
    throw new RangeError(`${file}: history holds ${v.history.length} steps, want step = ${step}`);
  v.history.forEach((h, i) => {
    if (!isObj(h) || h.step !== i + 1)
      throw new RangeError(`${file}: history[${i}] must be an object with step ${i + 1}`);
  });
  return v as unknown as TrainerState;
}

/** Reads and validates a step directory's trainer-state.json. */
export function readTrainerState(stepDir: string): { state: TrainerState; file: string } {
  const file = path.join(stepDir, STATE_FILE);
  if (!fs.existsSync(file)) throw new Error(`${stepDir}: no ${STATE_FILE} (not a trainer checkpoint)`);
  return { state: parseTrainerState(readText(file), file), file };
}

// ---- writing, cleaning, pruning -------------------------------------------------------------------------------

/** Temporaries this process is writing now (never cleaned as orphans). */
const active = new Set<string>();
/** `.<name>.<pid>.<random>.tmp` (writeDirAtomic and the atomic file writers), `.old`: a directory being replaced. */
const TEMP = /^\.(.+)\.(\d+)\.([a-z0-9]+)\.tmp(\.old)?$/;

/** Writes a directory atomically: fill a temporary sibling, then rename it over `dir`. */
export function writeDirAtomic(dir: string, fill: (tmp: string) => void): void {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(dir)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  active.add(tmp).add(`${tmp}.old`);
  try {
    fs.mkdirSync(tmp);
    fill(tmp);
    if (fs.existsSync(dir)) {
      const old = `${tmp}.old`;
      fs.renameSync(dir, old);
      fs.renameSync(tmp, dir);
      fs.rmSync(old, { recursive: true, force: true });
    } else fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    active.delete(tmp);
    active.delete(`${tmp}.old`);
  }
}

/**
 * Removes the temporaries that interrupted writes left in `root` (a checkpoint being written when the process was
 * killed): those of processes that no longer exist, or every one not being written by this process when
 * `exclusive` (the caller holds the output's lock, so no other process writes here). A `.old` directory whose
 * original is missing (killed between the two renames of a replacement) is renamed back instead. Returns the
 * names removed or restored.
 */
export function cleanCheckpointTemps(root: string, opts: { exclusive?: boolean } = {}): string[] {
  if (!fs.existsSync(root)) return [];
  const done: string[] = [];
  for (const name of fs.readdirSync(root)) {
    const m = TEMP.exec(name);
    const p = path.join(root, name);
    if (!m || active.has(p)) continue;
    const pid = Number(m[2]);
    if (!opts.exclusive && pid !== process.pid && pidAlive(pid)) continue;
    const original = path.join(root, m[1]);
    if (m[4] && !fs.existsSync(original)) fs.renameSync(p, original);
    else fs.rmSync(p, { recursive: true, force: true });
    done.push(name);
  }
  return done;
}

/** The step directories in `root`, oldest first. */
export function listCheckpoints(root: string): { name: string; step: number }[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && STEP_DIR.test(e.name))
    .map((e) => ({ name: e.name, step: Number(STEP_DIR.exec(e.name)![1]) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Keeps the `keep` newest step directories up to `current` (the one latest.json now names) and removes older
 * ones; `keep` 0 keeps all. Directories past `current` (an older, longer run's) are left alone. Returns the names
 * removed.
 */
export function pruneCheckpoints(root: string, keep: number, current: number): string[] {
  if (!Number.isSafeInteger(keep) || keep < 0) throw new RangeError(`keep: must be an integer ≥ 0, got ${keep}`);
  if (keep === 0) return [];
  const upTo = listCheckpoints(root).filter((c) => c.step <= current);
  const drop = upTo.slice(0, Math.max(0, upTo.length - keep)).filter((c) => c.step !== current);
  for (const c of drop) fs.rmSync(path.join(root, c.name), { recursive: true, force: true });
  return drop.map((c) => c.name);
}

/**
 * Cuts a metrics JSONL file ({step, …} per line) back to the records with step ≤ `step` (a resume from that
 * checkpoint appends the later ones again) and drops a torn last line. Returns the number of records removed.
 */
export function truncateMetricsFile(file: string, step: number): number {
  if (!fs.existsSync(file)) return 0;
  const r = readJsonl<{ step: number }>(file, {
    allowTruncatedTail: true,
    validate: (v) => {
      if (!isObj(v) || !Number.isSafeInteger(v.step)) throw new TypeError('expected a metrics record {step, …}');
      return v as { step: number };
    },
  });
  const kept = r.records.filter((m) => m.step <= step);
  if (kept.length !== r.records.length || r.truncatedTail) writeJsonlAtomic(file, kept);
  return r.records.length - kept.length;
}

/**
 * `e` with the file it is about named by its path: an engine error that names a file of `dir` by its bare name
 * ("model.safetensors: …") gets the full path; any other message is prefixed with `dir`. The class is kept.
 */
export function inCheckpoint(dir: string, e: unknown): Error {
  const msg = e instanceof Error ? e.message : String(e);
  const m = /^([^/\\:\s]+): /.exec(msg);
  const text =
    m && fs.existsSync(path.join(dir, m[1]))
      ? `${path.join(dir, m[1])}: ${msg.slice(m[0].length)}`
      : msg.startsWith(dir)
        ? msg
        : `${dir}: ${msg}`;
  const E =
    e instanceof RangeError
      ? RangeError
      : e instanceof TypeError
        ? TypeError
        : e instanceof SyntaxError
          ? SyntaxError
          : Error;
  return Object.assign(new E(text), { cause: e });
}
