// The math verifier: pulls the final answer out of a model response and decides whether it is equivalent to the
// reference answer. Nothing here throws on garbage text (only on bad options); every decision carries a reason.
//
// extractAnswer(text)
//   1. the LAST `\boxed{...}` / `\fbox{...}` (braces matched, nested braces and escaped `\{ \}` handled; also the
//      brace-less `\boxed 5`). If the last one is unbalanced (a truncated response) the answer is null: an earlier
//      box is not taken in its place.
//   2. no box at all: the last "final answer is X" / "the answer is X" / "answer: X" phrase (X up to the end of the
//      line or of the sentence);
//   3. else the last number on the last non-empty line.
//   `{boxedOnly: true}` turns 2 and 3 off.
//
// normalizeAnswer(s) — decisions:
//   - removed: `$`, `\$`, `\(`, `\)`, `\[`, `\]`, `\left`, `\right` (and `\left.`), `\big`-family sizes, `\!`, `\,`,
//     `\;`, `\:`, `\ `, `~`, `\quad`, `\displaystyle`, all whitespace (except between a command and a letter:
//     `\pi r` stays apart), a trailing sentence period, a leading `+`, a leading single-letter assignment `x =`;
//   - `\dfrac`, `\tfrac`, `\cfrac` → `\frac`; `\frac12` / `\frac1{2}` / `\frac{1}2` → `\frac{1}{2}`; `\sqrt2` →
//     `\sqrt{2}`; `\dbinom`/`\tbinom` → `\binom`;
//   - units are dropped: `\text{..}`/`\mbox{..}`/`\mathrm{..}` holding only words after some other content
//     (`5\text{ cm}^2` → `5`), plain words after a number (`12 dollars`, `6 apples`), known unit abbreviations
//     glued to a number (`5cm`, `3kg`), degrees (`^\circ`, `°`); other `\text{..}` wrappers are unwrapped;
//   - percent signs are dropped (`50\%` ≡ `50`, as the MATH dataset's graders do) — so `50%` is NOT `0.5`;
//   - numbers: thousands separators removed when the whole answer is one number (`1,000` → `1000`, `1{,}000` too;
//     `1,2` is left alone as a tuple), trailing zeros after a decimal point removed (`3.0` → `3`, `2.50` → `2.5`),
//     `.5` → `0.5`; a mixed number `3 1/2` → `3\frac{1}{2}`, which the numeric check reads as 3.5;
//   - one pair of outer parentheses/braces around the whole answer is removed unless it holds a top-level comma
//     (`\left(3\right)` → `3`, but `(1,2)` stays).
//
// isEquivalent(a, b) / compareAnswers(a, b): after normalisation, (1) identical strings; (2) both sides plain
// numbers (integers, decimals, scientific notation, a/b, \frac{a}{b}, mixed numbers) → exact rational comparison,
// and when either is not an integer also a relative tolerance of 1e-9 (integers compare exactly, so huge integers
// one apart differ); (3) otherwise @cortex-js/compute-engine (lib/reward/symbolic.ts): isEqual, then for free
// variables evaluation at random points — in a worker under a hard time limit (`timeoutMs`, default 50 ms; over
// it → not equivalent, reason says so). Inputs longer than `maxSymbolicLength` (200) characters, nested deeper
// than 12 brackets, unbalanced or non-ASCII never reach compute-engine. Symbolic verdicts are cached (LRU) per pair;
// timeouts are not cached.
import { shutdownSymbolic, symbolicCompare } from './symbolic';

export interface ExtractOptions {
  /** Only `\boxed{}`/`\fbox{}` count; no phrase or last-number fallback. Default false. */
  boxedOnly?: boolean;
}

export interface EquivalenceOptions {
  /** Time limit of one symbolic comparison in ms (default 50). */
  timeoutMs?: number;
  /** Use compute-engine for what the numeric check cannot decide (default true). */
  symbolic?: boolean;
  /** Longer normalised answers are not compared symbolically (default 200). */
  maxSymbolicLength?: number;
}

export interface VerifyOptions extends EquivalenceOptions, ExtractOptions {}

export interface EquivalenceResult {
  equivalent: boolean;
  reason: string;
}

export interface VerifyResult {
  correct: boolean;
  extracted: string | null;
  reason: string;
}

const MAX_NORMALIZE = 5000; // longer "answers" are garbage: only whitespace is removed
const MAX_DEPTH = 12;

// ---------------------------------------------------------------------------------------------------------------
// extraction

/** The content of the brace group opening at text[open] === '{', or null when it never closes. */
function braceGroup(text: string, open: number): { content: string; end: number } | null {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 92 /* \ */) {
      i++; // an escaped character (\{, \}, \\) never opens or closes a group
    } else if (c === 123 /* { */) {
      depth++;
    } else if (c === 125 /* } */) {
      if (--depth === 0) return { content: text.slice(open + 1, i), end: i + 1 };
    }
  }
  return null;
}

/** undefined: no box in the text; null: the last box is malformed; else its content. */
function lastBoxed(text: string): string | null | undefined {
  let at = -1;
  let len = 0;
  for (const cmd of ['\\boxed', '\\fbox']) {
    let i = text.lastIndexOf(cmd);
    // skip longer command names such as \boxedsomething
    while (i >= 0 && /[a-zA-Z]/.test(text.charAt(i + cmd.length))) i = i > 0 ? text.lastIndexOf(cmd, i - 1) : -1;
    if (i > at) {
      at = i;
      len = cmd.length;
    }
  }
  if (at < 0) return undefined;
  let i = at + len;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  if (text[i] === '{') {
    const g = braceGroup(text, i);
    if (!g) return null;
    const c = g.content.trim();
    return c === '' ? null : c;
  }
  const m = /^[^\s$]+/.exec(text.slice(i, i + 200)); // \boxed 5
  return m && i > at + len ? m[0] : null;
}

const PHRASE_RE = /(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?/gi;

function phraseAnswer(text: string): string | null {
  let last: RegExpExecArray | null = null;
  PHRASE_RE.lastIndex = 0;
  for (let m = PHRASE_RE.exec(text); m; m = PHRASE_RE.exec(text)) last = m;
  if (!last) return null;
  let rest = text.slice(last.index + last[0].length);
  const nl = rest.search(/[\r\n]/);
  if (nl >= 0) rest = rest.slice(0, nl);
  const stop = rest.search(/\.(?=\s|$)/); // the sentence ends at ". " (not inside 0.5)
  if (stop >= 0) rest = rest.slice(0, stop);
  rest = rest.replace(/^[\s*]+|[\s*,;!]+$/g, '');
  if (rest.length > 200) rest = rest.slice(0, 200);
  return rest === '' ? null : rest;
}

const NUMBER_RE = /-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\/\d+)?|-?\.\d+/g;

function lastNumber(text: string): string | null {
  const lines = text.split(/\r?\n/);
  let line = '';
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].trim() !== '') {
      line = lines[i];
      break;
    }
  }
  let last: string | null = null;
  NUMBER_RE.lastIndex = 0;
  for (let m = NUMBER_RE.exec(line); m; m = NUMBER_RE.exec(line)) last = m[0];
  return last;
}

/** The final answer in a response, or null. Never throws (non-strings give null). */
export function extractAnswer(text: unknown, opts: ExtractOptions = {}): string | null {
  if (typeof text !== 'string' || text === '') return null;
  const boxed = lastBoxed(text);
  if (boxed !== undefined) return boxed;
  if (opts.boxedOnly) return null;
  return phraseAnswer(text) ?? lastNumber(text);
}

// ---------------------------------------------------------------------------------------------------------------
// normalisation

const UNIT_ABBREV =
  'mm|cm|km|m|in|ft|yd|mi|mg|kg|g|lb|lbs|oz|ml|mL|l|L|s|sec|min|h|hr|hrs|mph|kph|km/h|m/s|cents?|dollars?|units?';
const NUM = String.raw`[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:\s*/\s*\d+)?|[-+]?\\frac\{[^{}]*\}\{[^{}]*\}`;
const WORD_UNITS_RE = new RegExp(
  String.raw`^(${NUM})\s+[A-Za-z]{2,}\.?(?:\s+[A-Za-z]+\.?){0,3}(?:\s*\^\s*\{?[23]\}?)?$`,
);
const ABBREV_UNITS_RE = new RegExp(String.raw`^(${NUM})\s*(?:${UNIT_ABBREV})(?:\s*\^\s*\{?[23]\}?)?\.?$`);
const TEXT_CMD_RE =
  /\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}(\s*\^\s*\{?\s*[23]\s*\}?)?/g;

function stripOuter(s: string): string {
  for (let guard = 0; guard < 4 && s.length >= 2; guard++) {
    const open = s[0];
    const close = open === '(' ? ')' : open === '{' ? '}' : '';
    if (!close || s[s.length - 1] !== close) break;
    let depth = 0;
    let wraps = true;
    let comma = false;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c === '\\') {
        i++;
        continue;
      }
      if (c === '(' || c === '{' || c === '[') depth++;
      else if (c === ')' || c === '}' || c === ']') {
        depth--;
        if (depth === 0 && i < s.length - 1) {
          wraps = false;
          break;
        }
      } else if (c === ',' && depth === 1) comma = true;
    }
    if (!wraps || comma) break;
    s = s.slice(1, -1);
  }
  return s;
}

/** The canonical string form of an answer (see the decisions at the top of this file). Never throws. */
export function normalizeAnswer(input: unknown): string {
  if (typeof input !== 'string') return '';
  let s = input.trim();
  if (s.length > MAX_NORMALIZE) return s.replace(/\s+/g, '');
  if (/^\\(?:boxed|fbox)\s*\{/.test(s)) {
    const b = lastBoxed(s);
    if (typeof b === 'string' && s.endsWith('}') && s.indexOf('\\boxed', 1) < 0 && s.indexOf('\\fbox', 1) < 0) s = b;
  }
  s = s
    .replace(/\\?\$/g, '')
    .replace(/\\[()[\]]/g, ' ')
    .replace(/\\(?:left|right)\s*\./g, '')
    .replace(/\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![a-zA-Z])/g, '')
    .replace(/\\[!,]/g, '')
    .replace(/\\[;: ]|~|\\q?quad(?![a-zA-Z])|\\(?:displaystyle|textstyle)(?![a-zA-Z])/g, ' ')
    .replace(/\\[dtc]frac(?![a-zA-Z])/g, '\\frac')
    .replace(/\\[dt]binom(?![a-zA-Z])/g, '\\binom')
    .replace(/\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|°|\\degrees?(?![a-zA-Z])/g, ' ')
    .replace(/\\%|%/g, ' ')
    .replace(/\{,\}/g, '');
  s = s.replace(TEXT_CMD_RE, (_m, content: string, _pow: string | undefined, offset: number, whole: string) => {
    const c = content.trim();
    const unit = /^[A-Za-z][A-Za-z .]*$/.test(c) && whole.slice(0, offset).trim() !== '';
    return unit ? ' ' : ` ${c} `;
  });
  s = s.trim().replace(/\s+/g, ' ');
  s = s.replace(/^[a-zA-Z]\s*=(?!=)\s*/, ''); // x = 3 → 3
  s = s.replace(/\.+$/, '').trim(); // the end of a sentence
  let m = WORD_UNITS_RE.exec(s) ?? ABBREV_UNITS_RE.exec(s);
  if (m) s = m[1];
  m = /^(-?\d+)\s+(\d+)\s*\/\s*(\d+)$/.exec(s); // mixed number 3 1/2
  if (m) s = `${m[1]}\\frac{${m[2]}}{${m[3]}}`;
  // whitespace: keep one space only between a command name and a following letter (\pi r)
  // \u0001 is a placeholder that no input text holds
  s = s
    .replace(/(?<=\\[a-zA-Z]+)\s+(?=[a-zA-Z])/g, '\u0001')
    .replace(/\s+/g, '')
    .split('\u0001')
    .join(' ');
  if (/^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, '');
  s = s.replace(/^\+/, '');
  s = s.replace(/(^|[^\d.])\.(\d)/g, '$10.$2');
  s = s.replace(/(?<![\d.])(\d+)\.(\d*?)0+(?![\d.])/g, (_m, int: string, frac: string) =>
    frac ? `${int}.${frac}` : int,
  );
  s = s
    .replace(/\\frac(?![a-zA-Z])([^{\\])([^{\\])/g, '\\frac{$1}{$2}')
    .replace(/\\frac\{([^{}]*)\}([^{\\])/g, '\\frac{$1}{$2}')
    .replace(/\\frac(?![a-zA-Z])([^{\\])\{/g, '\\frac{$1}{')
    .replace(/\\sqrt(?![a-zA-Z])([^{[\\])/g, '\\sqrt{$1}');
  s = stripOuter(s);
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// numbers: exact rationals over BigInt

interface Rational {
  n: bigint;
  d: bigint; // > 0
}

const DEC = String.raw`(\d+(?:\.\d+)?|\.\d+)(?:[eE]([-+]?\d+))?`;
const DEC_RE = new RegExp(`^${DEC}$`);

function parseDecimal(s: string): Rational | null {
  const m = DEC_RE.exec(s);
  if (!m || m[1].length > 1000) return null;
  const [intPart, fracPart = ''] = m[1].split('.');
  const exp = m[2] === undefined ? 0 : Number(m[2]);
  if (!Number.isFinite(exp) || Math.abs(exp) > 1000) return null;
  let n = BigInt((intPart || '0') + fracPart);
  let d = 10n ** BigInt(fracPart.length);
  if (exp > 0) n *= 10n ** BigInt(exp);
  else if (exp < 0) d *= 10n ** BigInt(-exp);
  return { n, d };
}

function signed(neg: boolean, r: Rational | null): Rational | null {
  return r && (neg ? { n: -r.n, d: r.d } : r);
}

function divide(a: Rational | null, b: Rational | null): Rational | null {
  if (!a || !b || b.n === 0n) return null;
  const n = a.n * b.d;
  const d = a.d * b.n;
  return d < 0n ? { n: -n, d: -d } : { n, d };
}

function parseSignedDecimal(s: string): Rational | null {
  const neg = s.startsWith('-');
  return signed(neg, parseDecimal(neg ? s.slice(1) : s));
}

/** A plain number (integer, decimal, 1e3, a/b, \frac{a}{b}, mixed 3\frac{1}{2}) as an exact rational, or null. */
function parseNumber(s: string): Rational | null {
  if (s.length > 2100) return null;
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  let m: RegExpExecArray | null;
  if ((m = /^(\d+)\\frac\{(\d+)\}\{(\d+)\}$/.exec(body))) {
    const whole = BigInt(m[1]);
    const a = BigInt(m[2]);
    const b = BigInt(m[3]);
    if (b === 0n || a >= b) return null; // not a proper mixed number: leave it to compute-engine (a product)
    return signed(neg, { n: whole * b + a, d: b });
  }
  if ((m = /^\\frac\{([^{}]+)\}\{([^{}]+)\}$/.exec(body)))
    return signed(neg, divide(parseSignedDecimal(m[1]), parseSignedDecimal(m[2])));
  if ((m = /^([^/]+)\/([^/]+)$/.exec(body))) return signed(neg, divide(parseDecimal(m[1]), parseSignedDecimal(m[2])));
  return signed(neg, parseDecimal(body));
}

function toFloat(r: Rational): number {
  let { n, d } = r;
  const digits = Math.max(n.toString().length, d.toString().length);
  if (digits > 300) {
    const k = 10n ** BigInt(digits - 300);
    n /= k;
    d /= k;
    if (d === 0n) return n < 0n ? -Infinity : Infinity;
  }
  return Number(n) / Number(d);
}

function compareNumbers(a: Rational, b: Rational): EquivalenceResult {
  if (a.n * b.d === b.n * a.d) return { equivalent: true, reason: 'numbers are equal' };
  const aInt = a.n % a.d === 0n;
  const bInt = b.n % b.d === 0n;
  if (aInt && bInt) return { equivalent: false, reason: 'integers differ' };
  const x = toFloat(a);
  const y = toFloat(b);
  const close = Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
  return { equivalent: close, reason: close ? 'numbers agree within relative tolerance 1e-9' : 'numbers differ' };
}

// ---------------------------------------------------------------------------------------------------------------
// symbolic

/** Why a normalised answer must not go to compute-engine, or null when it may. */
function symbolicObstacle(s: string, maxLength: number): string | null {
  if (s.length > maxLength) return `longer than ${maxLength} characters`;
  if (!/^[\x20-\x7e]*$/.test(s)) return 'non-ASCII characters';
  let depth = 0;
  const stack: string[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '{' || c === '(' || c === '[') {
      stack.push(c === '{' ? '}' : c === '(' ? ')' : ']');
      depth = Math.max(depth, stack.length);
    } else if (c === '}' || c === ')' || c === ']') {
      // intervals such as [0,1) mix brackets: only braces must match exactly
      const want = stack.pop();
      if (want === undefined || ((c === '}' || want === '}') && c !== want)) return 'unbalanced brackets';
    }
  }
  if (stack.length) return 'unbalanced brackets';
  if (depth > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH}`;
  return null;
}

const pairCache = new Map<string, EquivalenceResult>();
const PAIR_CACHE_MAX = 2000;

function checkOptions(opts: EquivalenceOptions): { timeoutMs: number; symbolic: boolean; maxSymbolicLength: number } {
  const timeoutMs = opts.timeoutMs ?? 50;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs))
    throw new RangeError(`timeoutMs: must be a positive finite number, got ${String(timeoutMs)}`);
  const maxSymbolicLength = opts.maxSymbolicLength ?? 200;
  if (typeof maxSymbolicLength !== 'number' || !(maxSymbolicLength >= 0))
    throw new RangeError(`maxSymbolicLength: must be a non-negative number, got ${String(maxSymbolicLength)}`);
  const symbolic = opts.symbolic ?? true;
  if (typeof symbolic !== 'boolean') throw new TypeError(`symbolic: must be a boolean, got ${typeof symbolic}`);
  return { timeoutMs, symbolic, maxSymbolicLength };
}

/** Whether two answers are equivalent, and why (see the top of this file). Never throws on any answer value. */
export function compareAnswers(a: unknown, b: unknown, opts: EquivalenceOptions = {}): EquivalenceResult {
  const { timeoutMs, symbolic, maxSymbolicLength } = checkOptions(opts);
  const na = normalizeAnswer(a);
  const nb = normalizeAnswer(b);
  if (na === '' || nb === '') return { equivalent: false, reason: 'empty answer' };
  if (na === nb) return { equivalent: true, reason: 'identical after normalisation' };
  const ra = parseNumber(na);
  const rb = parseNumber(nb);
  if (ra && rb) return compareNumbers(ra, rb);
  if (!symbolic) return { equivalent: false, reason: 'differ after normalisation (symbolic comparison off)' };
  const obstacle = symbolicObstacle(na, maxSymbolicLength) ?? symbolicObstacle(nb, maxSymbolicLength);
  if (obstacle) return { equivalent: false, reason: `not compared symbolically: ${obstacle}` };
  const key = na < nb ? `${na}\u0000${nb}` : `${nb}\u0000${na}`;
  const hit = pairCache.get(key);
  if (hit) {
    pairCache.delete(key);
    pairCache.set(key, hit);
    return hit;
  }
  const res = symbolicCompare(na, nb, timeoutMs);
  if (!/time limit|unavailable|no reply/.test(res.reason)) {
    pairCache.set(key, res);
    if (pairCache.size > PAIR_CACHE_MAX) pairCache.delete(pairCache.keys().next().value as string);
  }
  return res;
}

/** compareAnswers(a, b, opts).equivalent */
export function isEquivalent(a: unknown, b: unknown, opts: EquivalenceOptions = {}): boolean {
  return compareAnswers(a, b, opts).equivalent;
}

/**
 * Grades a response against a reference answer: extracts the response's final answer and compares it. A reference
 * that itself holds `\boxed{}` (a worked solution) is reduced to its boxed answer first.
 */
export function verify(response: unknown, reference: unknown, opts: VerifyOptions = {}): VerifyResult {
  const extracted = extractAnswer(response, opts);
  let ref = typeof reference === 'string' ? reference : '';
  if (/\\(?:boxed|fbox)/.test(ref)) ref = extractAnswer(ref, { boxedOnly: true }) ?? ref;
  if (extracted === null) {
    checkOptions(opts);
    return { correct: false, extracted: null, reason: 'no answer found in the response' };
  }
  const r = compareAnswers(extracted, ref, opts);
  return { correct: r.equivalent, extracted, reason: r.reason };
}

/** Stops the compute-engine worker and clears the caches (the worker is unref'd: only for a tidy shutdown). */
export async function shutdownVerifier(): Promise<void> {
  pairCache.clear();
  await shutdownSymbolic();
}

/** @internal exposed for tests */
export const _internal = { parseNumber, symbolicObstacle };
