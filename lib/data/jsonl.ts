// JSON Lines: a streaming reader with `file:line:` errors, an append-only writer (fsync'd) and an atomic writer.
//
// Reading: the file is read in 64 KiB chunks and split at '\n' bytes (never part of a multi-byte UTF-8 sequence),
// so records are parsed one line at a time without holding the whole file as one string. A UTF-8 BOM is skipped,
// '\r\n' line ends are accepted, blank lines are skipped (they still count for line numbers). Every problem is an
// error naming `file:line`: SyntaxError for bad JSON, and the validator's TypeError/RangeError (re-thrown with the
// same class and the location prefixed). Nothing is ever dropped silently.
//
// Line length: a line longer than `maxLineBytes` (default 8 MiB, or RIFT_MAX_LINE_BYTES) is a RangeError naming
// `file:line` as soon as the reader has seen that many bytes of it, so a huge line or endless input without
// newlines (`/dev/zero`) never grows memory past the limit. JsonlScanner is the byte-fed core (parseJsonl: text in
// memory); scanJsonl / readJsonl read files through it.
//
// Torn tails: appendJsonl always ends a record with '\n', so an interrupted append leaves a last line without a
// newline that is not valid JSON. Reading reports it (SyntaxError "incomplete last line"), or, with
// `{allowTruncatedTail: true}` (the rollout store, resuming), skips it and returns `truncatedTail: true` together
// with `validBytes`, the length of the intact prefix; `repairJsonlTail(file)` truncates the file to that length.
// A last line without a newline that IS valid JSON (a hand-written file) is an ordinary record.
import * as fs from 'fs';
import { writeFileAtomic } from '../util/atomic';

export type JsonlValidator<T> = (value: unknown, line: number) => T;

export interface ReadJsonlOptions<T> {
  /** Checks/converts each record; throw a TypeError/RangeError with a message (the location is prefixed). */
  validate?: JsonlValidator<T>;
  /** Skip (and flag) an incomplete last line instead of throwing. Default false. */
  allowTruncatedTail?: boolean;
  /** Longest accepted line in bytes (its '\n' not counted); default defaultMaxLineBytes(). */
  maxLineBytes?: number;
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

export interface ScanResult {
  truncatedTail: boolean;
  validBytes: number;
  lines: number;
}

const CHUNK = 64 * 1024;

/** The line-length limit when none is given: 8 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 8 * 2 ** 20;

/** The environment variable that sets the default line-length limit (bytes; for the CLI). */
export const MAX_LINE_ENV = 'RIFT_MAX_LINE_BYTES';

/** RIFT_MAX_LINE_BYTES when set (an integer ≥ 1), else DEFAULT_MAX_LINE_BYTES. */
export function defaultMaxLineBytes(): number {
  const v = process.env[MAX_LINE_ENV];
  if (v === undefined || v.trim() === '') return DEFAULT_MAX_LINE_BYTES;
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`${MAX_LINE_ENV}: must be an integer ≥ 1 (bytes), got ${JSON.stringify(v)}`);
  return n;
}

function checkMaxLine(v: unknown): number {
  if (v === undefined) return defaultMaxLineBytes();
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw new RangeError(`maxLineBytes: must be an integer ≥ 1, got ${String(v)}`);
  return v;
}

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
 * The reader's core, fed with bytes: push() the data in chunks of any size, then end(). Lines are split at '\n',
 * parsed and validated as they complete; a line longer than maxLineBytes is a RangeError as soon as it passes the
 * limit (so memory stays bounded by the limit even for input without newlines). `source` names the input in errors.
 */
export class JsonlScanner<T = unknown> {
  private pending: Buffer[] = []; // bytes of the current, unfinished line
  private pendingBytes = 0;
  private pendingStart = 0; // offset where the current line starts
  private offset = 0; // bytes pushed so far
  private lineNo = 0;
  private ended = false;
  private readonly maxLine: number;

  constructor(
    readonly source: string,
    private readonly onRecord: (rec: JsonlRecord<T>) => void,
    private readonly opts: ReadJsonlOptions<T> = {},
  ) {
    if (typeof source !== 'string' || source === '') throw new TypeError('source: must be a non-empty string');
    if (typeof onRecord !== 'function') throw new TypeError(`onRecord: must be a function, got ${typeof onRecord}`);
    if (opts === null || typeof opts !== 'object') throw new TypeError('options: must be an object');
    if (opts.validate !== undefined && typeof opts.validate !== 'function')
      throw new TypeError(`validate: must be a function, got ${typeof opts.validate}`);
    this.maxLine = checkMaxLine(opts.maxLineBytes);
  }

  private tooLong(): RangeError {
    return new RangeError(
      `${this.source}:${this.lineNo + 1}: line is longer than ${this.maxLine} bytes (the limit: maxLineBytes, or ${MAX_LINE_ENV} for the CLI)`,
    );
  }

  /** Feeds bytes (copied when kept). */
  push(chunk: Uint8Array): void {
    if (this.ended) throw new Error(`${this.source}: push() after end()`);
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let from = 0;
    for (let nl = buf.indexOf(0x0a, from); nl >= 0; nl = buf.indexOf(0x0a, from)) {
      if (this.pendingBytes + nl - from > this.maxLine) throw this.tooLong();
      const piece = buf.subarray(from, nl);
      const line = this.pending.length ? Buffer.concat([...this.pending, piece]) : piece;
      this.pending = [];
      this.pendingBytes = 0;
      this.handle(line, true);
      from = nl + 1;
      this.pendingStart = this.offset + from;
    }
    if (from < buf.length) {
      if (this.pendingBytes + buf.length - from > this.maxLine) throw this.tooLong();
      this.pending.push(Buffer.from(buf.subarray(from)));
      this.pendingBytes += buf.length - from;
    }
    this.offset += buf.length;
  }

  /** Handles a last line without '\n' and returns the totals. */
  end(): ScanResult {
    if (this.ended) throw new Error(`${this.source}: end() called twice`);
    this.ended = true;
    let truncatedTail = false;
    if (this.pending.length && !this.handle(Buffer.concat(this.pending), false)) truncatedTail = true;
    this.pending = [];
    return { truncatedTail, validBytes: truncatedTail ? this.pendingStart : this.offset, lines: this.lineNo };
  }

  /** One line (without '\n'); false when it is a torn tail that allowTruncatedTail skips. */
  private handle(bytes: Buffer, complete: boolean): boolean {
    const { source, opts } = this;
    const lineNo = ++this.lineNo;
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
          `${source}:${lineNo}: incomplete last line (no final newline and not valid JSON: an interrupted write?): ${(e as Error).message}`,
        );
      }
      throw new SyntaxError(`${source}:${lineNo}: invalid JSON: ${(e as Error).message}`);
    }
    let out: T;
    if (opts.validate) {
      try {
        out = opts.validate(value, lineNo);
      } catch (e) {
        throw located(source, lineNo, e);
      }
    } else out = value as T;
    this.onRecord({ value: out, line: lineNo });
    return true;
  }
}

/** An I/O error as an Error naming the file (Node's read errors do not). */
function ioError(file: string, e: unknown): Error {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err.code !== 'string') return e as Error;
  const out = new Error(`${file}: cannot read: ${err.code === 'EISDIR' ? 'is a directory' : err.message}`);
  (out as NodeJS.ErrnoException).code = err.code;
  return out;
}

/**
 * Streams the records of a JSONL file. The callback form keeps the reader synchronous and the memory bounded by
 * the line-length limit (maxLineBytes): a longer line, or endless input without newlines, is a RangeError naming
 * `file:line`.
 */
export function scanJsonl<T = unknown>(
  file: string,
  onRecord: (rec: JsonlRecord<T>) => void,
  opts: ReadJsonlOptions<T> = {},
): ScanResult {
  if (typeof file !== 'string' || file === '') throw new TypeError('file: must be a non-empty path string');
  const scanner = new JsonlScanner<T>(file, onRecord, opts);
  const fd = fs.openSync(file, 'r');
  try {
    if (fs.fstatSync(fd).isDirectory()) throw new TypeError(`${file}: is a directory, not a JSONL file`);
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, 0, CHUNK, null);
      } catch (e) {
        throw ioError(file, e);
      }
      if (n === 0) break;
      scanner.push(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return scanner.end();
}

/** Parses JSONL held in memory (the same rules and errors as a file; `source` names it). */
export function parseJsonl<T = unknown>(
  source: string,
  data: string | Uint8Array,
  opts: ReadJsonlOptions<T> = {},
): ReadJsonlResult<T> {
  const records: T[] = [];
  const lines: number[] = [];
  const scanner = new JsonlScanner<T>(
    source,
    (rec) => {
      records.push(rec.value);
      lines.push(rec.line);
    },
    opts,
  );
  if (typeof data === 'string') scanner.push(Buffer.from(data, 'utf8'));
  else if (data instanceof Uint8Array) scanner.push(data);
  else throw new TypeError(`data: must be a string or a Uint8Array, got ${typeof data}`);
  const r = scanner.end();
  return { records, lines, truncatedTail: r.truncatedTail, validBytes: r.validBytes };
}

/**
 * Reads a whole JSONL file. The second argument is a validator or an options object.
 *   readJsonl(file) / readJsonl(file, validate) / readJsonl(file, {validate, allowTruncatedTail: true})
 */
export function readJsonl<T = unknown>(
  file: string,
  validateOrOpts?: JsonlValidator<T> | ReadJsonlOptions<T>,
): ReadJsonlResult<T> {
  const opts: ReadJsonlOptions<T> =
    typeof validateOrOpts === 'function' ? { validate: validateOrOpts } : (validateOrOpts ?? {});
  if (typeof opts !== 'object')
    throw new TypeError(`readJsonl: second argument must be a function or an options object`);
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
  for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off, data.length - off);
}

/**
 * The last line of a file that does not end in '\n' (its bytes), or null when it ends in '\n' or is empty; a tail
 * longer than the line-length limit is an Error (the reader would refuse it too).
 */
function unterminatedTail(file: string, fd: number, size: number): Buffer | null {
  const max = defaultMaxLineBytes();
  if (size === 0) return null;
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, size - 1);
  if (one[0] === 0x0a) return null;
  const parts: Buffer[] = [];
  let pos = size;
  while (pos > 0) {
    if (size - pos > max) break; // too long already: refused below
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
  const tail = Buffer.concat(parts);
  if (tail.length > max)
    throw new RangeError(`${file}: the last line is longer than ${max} bytes (the limit: ${MAX_LINE_ENV})`);
  return tail;
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
    const tail = unterminatedTail(file, fd, fs.fstatSync(fd).size);
    if (tail) {
      let text = tail.toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (text.trim() !== '') {
        try {
          JSON.parse(text);
        } catch {
          throw new Error(
            `${file}: the last line is incomplete (an interrupted write?); call repairJsonlTail() before appending`,
          );
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
