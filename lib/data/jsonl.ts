// JSON Lines: a streaming reader with `file:line:` errors, an append-only writer (fsync'd) and an atomic writer.
//
// Reading: the file is read in 64 KiB chunks and split at '\n' bytes (never part of a multi-byte UTF-8 sequence),
// so records are parsed one line at a time without holding the whole file as one string. A UTF-8 BOM is skipped,
// '\r\n' line ends are accepted, blank lines are skipped (they still count for line numbers). Every problem is an
// error naming `file:line`: SyntaxError for bad JSON, and the validator's TypeError/RangeError (re-thrown with the
// same class and the location prefixed). Nothing is ever dropped silently.
//
// Torn tails: appendJsonl always ends a record with '\n', so an interrupted append leaves a last line without a
// newline that is not valid JSON. Reading reports it (SyntaxError "incomplete last line"), or, with
// `{allowTruncatedTail: true}` (the rollout store, resuming), skips it and returns `truncatedTail: true` together
// with `validBytes`, the length of the intact prefix; `repairJsonlTail(file)` truncates the file to that length.
// A last line without a newline that IS valid JSON (a hand-written file) is an ordinary record.
import * as fs from 'fs';
import { writeFileAtomic } from '../engine/safetensors';

export type JsonlValidator<T> = (value: unknown, line: number) => T;

export interface ReadJsonlOptions<T> {
  /** Checks/converts each record; throw a TypeError/RangeError with a message (the location is prefixed). */
  validate?: JsonlValidator<T>;
  /** Skip (and flag) an incomplete last line instead of throwing. Default false. */
  allowTruncatedTail?: boolean;
}

export interface JsonlRecord<T> {
  value: T;
  line: number; // 1-based
}

export interface ReadJsonlResult<T> {
  records: T[];
  /** 1-based line number of each record. */
  lines: number[];
  /** An incomplete last line was skipped (only with allowTruncatedTail). */
  truncatedTail: boolean;
  /** Bytes of the file that hold complete lines (the whole file unless truncatedTail). */
  validBytes: number;
}

const CHUNK = 64 * 1024;

function located(file: string, line: number, e: unknown): Error {
  const msg = e instanceof Error ? e.message : String(e);
  const text = `${file}:${line}: ${msg}`;
  let out: Error;
  if (e instanceof RangeError || (e as Error)?.name === 'RangeError') out = new RangeError(text);
  else if (e instanceof SyntaxError || (e as Error)?.name === 'SyntaxError') out = new SyntaxError(text);
  else out = new TypeError(text);
  (out as Error & { cause?: unknown }).cause = e;
  return out;
}

/**
 * Streams the records of a JSONL file. `onTail` receives the truncation status at the end. The callback form keeps
 * the reader synchronous and the memory bounded by the longest line.
 */
export function scanJsonl<T = unknown>(
  file: string,
  onRecord: (rec: JsonlRecord<T>) => void,
  opts: ReadJsonlOptions<T> = {},
): { truncatedTail: boolean; validBytes: number; lines: number } {
  if (typeof file !== 'string' || file === '') throw new TypeError('file: must be a non-empty path string');
  if (opts.validate !== undefined && typeof opts.validate !== 'function')
    throw new TypeError(`validate: must be a function, got ${typeof opts.validate}`);
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let pending: Buffer[] = []; // bytes of the current, unfinished line
  let pendingStart = 0; // file offset where the current line starts
  let offset = 0; // file offset of buf[0]
  let lineNo = 0;
  const handle = (bytes: Buffer, complete: boolean): boolean => {
    lineNo++;
    let start = 0;
    if (lineNo === 1 && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
    let end = bytes.length;
    if (end > start && bytes[end - 1] === 0x0d) end--;
    const text = bytes.toString('utf8', start, end);
    if (text.trim() === '') return true;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      if (!complete) {
        if (opts.allowTruncatedTail) return false;
        throw new SyntaxError(
          `${file}:${lineNo}: incomplete last line (no final newline and not valid JSON: an interrupted write?): ${(e as Error).message}`,
        );
      }
      throw new SyntaxError(`${file}:${lineNo}: invalid JSON: ${(e as Error).message}`);
    }
    let out: T;
    if (opts.validate) {
      try {
        out = opts.validate(value, lineNo);
      } catch (e) {
        throw located(file, lineNo, e);
      }
    } else out = value as T;
    onRecord({ value: out, line: lineNo });
    return true;
  };
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      let from = 0;
      for (let nl = buf.indexOf(0x0a, from); nl >= 0 && nl < n; nl = buf.indexOf(0x0a, from)) {
        const piece = buf.subarray(from, nl);
        const line = pending.length ? Buffer.concat([...pending, piece]) : piece;
        pending = [];
        handle(line, true);
        from = nl + 1;
        pendingStart = offset + from;
      }
      if (from < n) pending.push(Buffer.from(buf.subarray(from, n)));
      offset += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  let truncatedTail = false;
  if (pending.length) {
    const ok = handle(Buffer.concat(pending), false);
    if (!ok) truncatedTail = true;
  }
  return { truncatedTail, validBytes: truncatedTail ? pendingStart : offset, lines: lineNo };
}

/**
 * Reads a whole JSONL file. The second argument is a validator or an options object.
 *   readJsonl(file) / readJsonl(file, validate) / readJsonl(file, {validate, allowTruncatedTail: true})
 */
export function readJsonl<T = unknown>(file: string, validateOrOpts?: JsonlValidator<T> | ReadJsonlOptions<T>): ReadJsonlResult<T> {
  const opts: ReadJsonlOptions<T> =
    typeof validateOrOpts === 'function' ? { validate: validateOrOpts } : (validateOrOpts ?? {});
  if (typeof opts !== 'object') throw new TypeError(`readJsonl: second argument must be a function or an options object`);
  const records: T[] = [];
  const lines: number[] = [];
  const r = scanJsonl<T>(
    file,
    (rec) => {
      records.push(rec.value);
      lines.push(rec.line);
    },
    opts,
  );
  return { records, lines, truncatedTail: r.truncatedTail, validBytes: r.validBytes };
}

/** One record as one JSON line; non-finite numbers, BigInts, cycles and undefined are TypeErrors naming the index. */
function serialize(rec: unknown, i: number): string {
  if (rec === undefined || typeof rec === 'function' || typeof rec === 'symbol')
    throw new TypeError(`records[${i}]: cannot be written as JSON (${typeof rec})`);
  let s: string;
  try {
    s = JSON.stringify(rec, (key, v) => {
      if (typeof v === 'number' && !Number.isFinite(v))
        throw new TypeError(`${key === '' ? 'value' : `field "${key}"`} is ${v} (JSON has no non-finite numbers)`);
      return v;
    });
  } catch (e) {
    throw new TypeError(`records[${i}]: ${(e as Error).message}`);
  }
  return s;
}

function toLines(records: readonly unknown[]): Buffer {
  if (!Array.isArray(records)) throw new TypeError(`records: must be an array`);
  return Buffer.from(records.map((r, i) => serialize(r, i) + '\n').join(''), 'utf8');
}

function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off);
}

/** The last line of a file that does not end in '\n' (its bytes), or null when it ends in '\n' or is empty. */
function unterminatedTail(fd: number, size: number): Buffer | null {
  if (size === 0) return null;
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, size - 1);
  if (one[0] === 0x0a) return null;
  const parts: Buffer[] = [];
  let pos = size;
  while (pos > 0) {
    const len = Math.min(CHUNK, pos);
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, pos - len);
    const nl = b.lastIndexOf(0x0a);
    if (nl >= 0) {
      parts.unshift(b.subarray(nl + 1));
      break;
    }
    parts.unshift(b);
    pos -= len;
  }
  return Buffer.concat(parts);
}

/**
 * Appends records, one JSON line each, and fsyncs. If the file's last line lacks its newline it is completed first
 * when it is valid JSON; a torn (invalid) last line is an Error — call repairJsonlTail(file) first.
 */
export function appendJsonl(file: string, records: readonly unknown[]): void {
  let data = toLines(records);
  if (data.length === 0) return;
  const fd = fs.openSync(file, 'a+');
  try {
    const tail = unterminatedTail(fd, fs.fstatSync(fd).size);
    if (tail) {
      let text = tail.toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (text.trim() !== '') {
        try {
          JSON.parse(text);
        } catch {
          throw new Error(`${file}: the last line is incomplete (an interrupted write?); call repairJsonlTail() before appending`);
        }
      }
      data = Buffer.concat([Buffer.from('\n'), data]);
    }
    writeAll(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Cuts an incomplete last line off the file (see readJsonl's allowTruncatedTail). Returns whether it did. */
export function repairJsonlTail(file: string): boolean {
  const r = scanJsonl(file, () => undefined, { allowTruncatedTail: true });
  if (!r.truncatedTail) return false;
  const fd = fs.openSync(file, 'r+');
  try {
    fs.ftruncateSync(fd, r.validBytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** Writes all records to a temporary file, fsyncs, and renames it over `file` (readers never see half a file). */
export function writeJsonlAtomic(file: string, records: readonly unknown[]): void {
  const data = toLines(records);
  writeFileAtomic(file, (fd) => writeAll(fd, data));
}
