// Output-path safety for the commands: an output must not be (or, for a directory, hold) one of the command's
// inputs — compared by device and inode, so symlinks, hard links and `a/../b` spellings are caught — and a file
// output must not be a directory (and the reverse). Every refusal is a CliError naming both options and paths.
// lockOutput: one writer per output at a time.
import * as fs from 'fs';
import * as path from 'path';
import { acquireLock, lockFileFor, OutputLockedError, type OutputLock } from '../data/lock';
import { CliError } from './io';

/** A path given on the command line, with the option that gave it. */
export interface PathArg {
  opt: string;
  path: string;
}

/** A path a command writes; `tree`: it owns the whole directory (files below it may be replaced or removed). */
export interface WriteArg extends PathArg {
  tree?: boolean;
}

function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p); // follows symlinks: a link to an input is that input
  } catch {
    return undefined;
  }
}

const isBelow = (root: string, p: string) => {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
};

const sameNode = (a: fs.Stats, b: fs.Stats) => a.dev === b.dev && a.ino === b.ino;

/** A model directory as inputs: the directory and every file directly in it (config, weights, shards, tokenizer). */
export function modelInputs(opt: string, dir: string): PathArg[] {
  const out: PathArg[] = [{ opt, path: dir }];
  const st = statOf(dir);
  if (st?.isDirectory()) for (const name of fs.readdirSync(dir)) out.push({ opt, path: path.join(dir, name) });
  return out;
}

/** A file output: refused when it is a directory (an EISDIR later would not name it). */
export function checkFileOutput(out: PathArg): void {
  if (statOf(out.path)?.isDirectory())
    throw new CliError(`${out.opt}: ${out.path}: is a directory (expected a file path)`);
}

/** A directory output: refused when it exists and is not a directory. */
export function checkDirOutput(out: PathArg): void {
  const st = statOf(out.path);
  if (st && !st.isDirectory()) throw new CliError(`${out.opt}: ${out.path}: exists and is not a directory`);
}

/**
 * Refuses when any path a command writes (`writes`: the outputs and, for a directory output, the files it
 * writes there) is the same file or directory as one of `inputs`, or two writes are the same path.
 */
export function refuseOverlap(writes: readonly WriteArg[], inputs: readonly PathArg[]): void {
  const inStats = inputs.map((i) => ({ arg: i, st: statOf(i.path) }));
  for (const w of writes) {
    if (!w.tree || !statOf(w.path)) continue;
    const root = fs.realpathSync(w.path);
    const hit = inStats.find((i) => i.st && isBelow(root, fs.realpathSync(i.arg.path)));
    if (hit)
      throw new CliError(
        `${hit.arg.opt}: ${hit.arg.path} lies inside ${w.path}, which ${w.opt} replaces (refusing to overwrite an input)`,
      );
  }
  const seen: { arg: PathArg; st?: fs.Stats; abs: string }[] = [];
  for (const w of writes) {
    const st = statOf(w.path);
    const abs = path.resolve(w.path);
    if (st) {
      const hit = inStats.find((i) => i.st && sameNode(i.st, st));
      if (hit)
        throw new CliError(
          `${w.opt}: ${w.path} is the same ${st.isDirectory() ? 'directory' : 'file'} as ${hit.arg.opt} ${hit.arg.path} ` +
            `(refusing to overwrite an input)`,
        );
    }
    const dup = seen.find((s) => s.abs === abs || (st && s.st && sameNode(s.st, st)));
    if (dup)
      throw new CliError(
        `${w.opt}: ${w.path} is the same path as ${dup.arg.opt} ${dup.arg.path} (two outputs into one file)`,
      );
    seen.push({ arg: w, st, abs });
  }
}

/** Takes the exclusive lock of an output (lib/data/lock.ts); a second writer gets a CliError naming the holder. */
export function lockOutput(out: PathArg, kind: 'file' | 'dir', command: string): OutputLock {
  try {
    return acquireLock(lockFileFor(out.path, kind), `${out.opt}: ${out.path}`, command);
  } catch (e) {
    if (e instanceof OutputLockedError) throw new CliError(e.message);
    throw e;
  }
}
