// Atomic file writes: a reader (or a crash) sees the old file or the new one at the path, never a partial one.
// Used by every layer that writes results (checkpoints, safetensors, JSONL, reports, evaluation).
import * as fs from 'fs';
import * as path from 'path';

const CHUNK = 1 << 26; // bytes per write call (64 MiB)

/** Writes all of `src` to `fd` (writeSync may write less than asked). */
export function writeFully(fd: number, src: Uint8Array): void {
  for (let off = 0; off < src.length;) off += fs.writeSync(fd, src, off, Math.min(CHUNK, src.length - off));
}

/**
 * Writes `file` atomically: a temporary file in the same directory, fsync, rename over `file`, fsync of the
 * directory. A crash leaves either the old file or the new one at `file`, never a partial one.
 */
export function writeFileAtomic(file: string, write: (fd: number) => void): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  let fd: number | null = fs.openSync(tmp, 'wx', 0o644);
  try {
    write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // directories cannot be opened/fsynced on some platforms (Windows); the rename itself is still atomic
  }
}

export function writeBytesAtomic(file: string, data: string | Uint8Array): void {
  writeFileAtomic(file, (fd) => writeFully(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
}
