// Exclusive output locks: one writer per output (a rollouts file, a training directory) at a time.
//
// The lock is a small JSON file {pid, host, started, command, token} created atomically: written to a temporary
// name, then hard-linked to the lock name (link() fails when the name exists, so two processes can never both
// create it, and the file is never seen half-written). A second writer gets an OutputLockedError naming the
// holder. A lock whose holder is gone is stale and taken over: same host and the pid no longer exists (after a
// kill -9, a crash, a reboot), or a lock file that is not ours and not valid JSON. A lock held on another host
// (a shared file system) is never taken over: its pid cannot be checked from here; the error says which file to
// delete. The stale file is renamed away (atomic) before it is deleted, and a taken lock is read back, so two
// processes that both found it stale cannot both hold it. The lock is released by release() and, as a fallback,
// when the process exits normally.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
  /** What holds it (e.g. "rift train"). */
  command: string;
  token: string;
}

/** A second writer: the output is locked by a live process (or one on another host). */
export class OutputLockedError extends Error {
  constructor(
    message: string,
    readonly lockFile: string,
    readonly holder?: LockInfo,
  ) {
    super(message);
    this.name = 'OutputLockedError';
  }
}

/** The lock file of an output: `<file>.lock` beside a file, `<dir>/.rift.lock` inside a directory. */
export function lockFileFor(output: string, kind: 'file' | 'dir'): string {
  return kind === 'dir' ? path.join(output, '.rift.lock') : `${output}.lock`;
}

/** Whether process `pid` exists on this host (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readInfo(file: string): LockInfo | null | 'missing' {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  try {
    const v = JSON.parse(text) as LockInfo;
    if (
      v &&
      typeof v === 'object' &&
      Number.isSafeInteger(v.pid) &&
      typeof v.host === 'string' &&
      typeof v.token === 'string'
    )
      return v;
  } catch {
    // not JSON: handled as stale below
  }
  return null;
}

const describeHolder = (h: LockInfo) =>
  `${h.command || 'a process'} (pid ${h.pid} on host ${h.host}, since ${h.started})`;

export class OutputLock {
  private released = false;
  private readonly onExit = () => this.release();

  constructor(
    readonly file: string,
    readonly info: LockInfo,
  ) {
    process.once('exit', this.onExit);
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    process.removeListener('exit', this.onExit);
    const now = readInfo(this.file);
    if (now !== 'missing' && now?.token === this.info.token) fs.rmSync(this.file, { force: true });
  }
}

function tryCreate(file: string, info: LockInfo): boolean {
  const tmp = `${file}.${info.pid}.${info.token}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(info) + '\n', { flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Moves a stale lock away if it is still the one we judged stale (same bytes' token, or still unreadable). */
function removeStale(file: string, seen: LockInfo | null, token: string): void {
  const aside = `${file}.${process.pid}.${token}.stale`;
  try {
    fs.renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw e;
  }
  const moved = readInfo(aside);
  const same = seen === null ? moved === null : moved !== 'missing' && moved?.token === seen.token;
  if (!same) {
    // a fresh lock was taken between our read and the rename: put it back unless the name is taken again
    try {
      fs.linkSync(aside, file);
    } catch {
      // the name was taken once more: that holder wins; ours will see it
    }
  }
  fs.rmSync(aside, { force: true });
}

/**
 * Takes the lock file `file` for `command` (e.g. "rift train"), or throws OutputLockedError naming `what` (the
 * output) and the holder. Stale locks are taken over (see the file comment).
 */
export function acquireLock(file: string, what: string, command = 'rift'): OutputLock {
  if (typeof file !== 'string' || file === '') throw new TypeError('file: must be a non-empty path string');
  const info: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    started: new Date().toISOString(),
    command,
    token: Math.random().toString(36).slice(2, 10) + Date.now().toString(36),
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(file, info)) {
      const back = readInfo(file);
      if (back !== 'missing' && back?.token === info.token) return new OutputLock(file, info);
      continue; // taken over by a racing stale-lock remover: look again
    }
    const holder = readInfo(file);
    if (holder === 'missing') continue;
    if (holder !== null && holder.host !== info.host)
      throw new OutputLockedError(
        `${what}: locked by ${describeHolder(holder)}; another host's process cannot be checked from here — ` +
          `if it is gone, delete ${file}`,
        file,
        holder,
      );
    if (holder !== null && pidAlive(holder.pid))
      throw new OutputLockedError(
        `${what}: in use by ${describeHolder(holder)}; wait for it to finish, or use another output ` +
          `(if that process is not rift, delete ${file})`,
        file,
        holder,
      );
    removeStale(file, holder, info.token);
  }
  throw new OutputLockedError(`${what}: could not take the lock ${file} (other processes keep taking it)`, file);
}
