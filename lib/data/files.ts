// Whole-file reads with a size limit, for the JSON files rift reads (tokenizer.json, checkpoint JSON): a file larger
// than the limit, or endless input (/dev/zero), is a RangeError naming the file instead of unbounded memory; a
// directory or an unreadable file is an Error naming it (Node's read errors do not name the file).
import * as fs from 'fs';

/** The limit when none is given: 256 MiB (V8 strings stop at about 512 MiB; real tokenizer.json files are < 50 MiB). */
export const DEFAULT_MAX_FILE_BYTES = 256 * 2 ** 20;

const CHUNK = 1 << 20;

/** The file's bytes; at most `maxBytes` of them, else a RangeError naming the file. */
export function readFileBounded(file: string, maxBytes = DEFAULT_MAX_FILE_BYTES): Buffer {
  if (typeof file !== 'string' || file === '') throw new TypeError('file: must be a non-empty path string');
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
    throw new RangeError(`maxBytes: must be an integer ≥ 0, got ${maxBytes}`);
  const fd = fs.openSync(file, 'r');
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new TypeError(`${file}: is a directory, not a file`);
    const tooBig = () => new RangeError(`${file}: larger than ${maxBytes} bytes (the limit for this file)`);
    if (st.isFile() && st.size > maxBytes) throw tooBig();
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes + 1 - total));
      let n: number;
      try {
        n = fs.readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        throw Object.assign(new Error(`${file}: cannot read: ${err.message}`), { code: err.code });
      }
      if (n === 0) break;
      total += n;
      if (total > maxBytes) throw tooBig();
      parts.push(buf.subarray(0, n));
    }
    return Buffer.concat(parts, total);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses `text` as JSON; a SyntaxError names `source` (a path, or a path and a field). */
export function parseJsonText(source: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${source}: not valid JSON (${(e as Error).message}; truncated or hand-edited?)`);
  }
}

/** Reads and parses a JSON file (UTF-8, a BOM skipped) with the size limit; every error names the file. */
export function readJsonFile(file: string, maxBytes = DEFAULT_MAX_FILE_BYTES): unknown {
  let text = readFileBounded(file, maxBytes).toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return parseJsonText(file, text);
}
