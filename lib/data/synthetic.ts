// A built-in synthetic math task: short multi-step arithmetic problems whose worked solutions end in \boxed{answer}.
// Texts are kept short on purpose (problems ≤ 80 characters, solutions ≤ 80; difficulty 4: ≤ 128), so that the demo's tiny
// character-level model can learn them on a laptop CPU in minutes.
//
//   style 'tiny'  : "7+5*3-4=?"  →  "5*3=15;7+15=22;22-4=18;\boxed{18}"          (answer "18")
//                   "(9+4*5)/4=?" → "4*5=20;9+20=29;29/4=29/4;\boxed{29/4}"       (difficulty 3: a fraction)
//   style 'words' : "Mia has 12 pens. She buys 3 bags of 4 and loses 5. How many now?"
//                   →  "3*4=12;12+12=24;24-5=19;\boxed{19}"                        (answer "19")
//                   "... and splits them 4 ways. How many each?" → "...;25/4=25/4;\boxed{\frac{25}{4}}"
//
// Difficulty: 1 → 2 steps, operands 1–9; 2 (default) → 2–4 steps, +/− operands ≤ 20, × operands 2–9;
// 3 → 3–4 steps, +/− operands ≤ 99, × operands 2–12, and about 30% end with a division (the answer may be a
// reduced fraction); 4 (the hard setting) → 5–7 steps with level 2's operands and level 3's divisions: long worked solutions
// (≤ 128 characters) in which a wrong answer usually comes from one slipped step and shares the steps before it (and
// the format of those after it) with the right answer:
//                   "8*2*4-16+8*7+6-2=?" → "8*2=16;16*4=64;8*7=56;64-16=48;48+56=104;104+6=110;110-2=108;\boxed{108}"
// Levels 1–3 give exactly the problems they always gave (texts ≤ 80 characters).
// `steps: [min, max]` overrides a level's number of steps (1–6, level 4: 1–8; e.g. difficulty 2 with 5 steps:
// longer problems than that level ever makes, an out-of-distribution test set). Tiny style evaluates × before +/− (standard precedence, one step per operator); word problems
// apply the actions in story order. Every intermediate value is an integer in [0, 999] (before the last division).
// The same (count, seed, difficulty, style) gives the same problems (mulberry32, util/rng.ts); problem texts are
// distinct within one call, and ids are `${idPrefix}-${seed}-${index}`.
import { checkEnum, checkInteger } from '../util/validate';
import type { Problem } from './problems';
import { mulberry32 } from '../util/rng';

export type SyntheticStyle = 'tiny' | 'words';
export const SYNTHETIC_STYLES: readonly SyntheticStyle[] = ['tiny', 'words'];

export interface GenerateOptions {
  count: number;
  seed: number;
  /** 1, 2 (default), 3 or 4 (long problems: the hard setting). */
  difficulty?: number;
  /** 'words' (default) or 'tiny'. */
  style?: SyntheticStyle;
  /** [min, max] steps per problem (integers in [1, 6]; difficulty 4: [1, 8]), instead of the difficulty's range. */
  steps?: readonly [number, number];
  /** Default: the style name. */
  idPrefix?: string;
}

export interface SplitOptions {
  /** Fraction of problems in the test split, in [0, 1]; the count is rounded. */
  testFraction: number;
  seed: number;
}

/** The library's seeded generator (util/rng.ts), re-exported here where it was first exported. */
export { mulberry32 };

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    // mix the seed so that nearby seeds give unrelated streams
    this.next = mulberry32((Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) ^ (seed / 4294967296)) | 0);
  }
  float(): number {
    return this.next();
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

interface Level {
  steps: [number, number];
  addMax: number;
  mulMin: number;
  mulMax: number;
  startMax: number;
  fraction: number; // probability of a final division
  maxText: number; // longest problem and solution text
  maxSteps: number; // largest `steps` override
}

const LEVELS: Record<number, Level> = {
  1: { steps: [2, 2], addMax: 9, mulMin: 2, mulMax: 9, startMax: 20, fraction: 0, maxText: 80, maxSteps: 6 },
  2: { steps: [2, 4], addMax: 20, mulMin: 2, mulMax: 9, startMax: 30, fraction: 0, maxText: 80, maxSteps: 6 },
  3: { steps: [3, 4], addMax: 99, mulMin: 2, mulMax: 12, startMax: 99, fraction: 0.3, maxText: 80, maxSteps: 6 },
  4: { steps: [5, 7], addMax: 20, mulMin: 2, mulMax: 9, startMax: 30, fraction: 0.3, maxText: 128, maxSteps: 8 },
};

/** The synthetic difficulty levels (generateProblems' `difficulty`). */
export const SYNTHETIC_DIFFICULTIES: readonly number[] = [1, 2, 3, 4];
/** The longest problem or solution text of a difficulty level. */
export function maxTextOf(difficulty: number): number {
  return LEVELS[checkInteger('difficulty', difficulty, 1, 4)].maxText;
}

const MAX_VALUE = 999;

interface Generated {
  problem: string;
  solution: string;
  answer: string;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** v / k as "n" or "p/q" (reduced), plus the step text. */
function divide(v: number, k: number): { step: string; plain: string; p: number; q: number } {
  const g = gcd(v, k);
  const p = v / g;
  const q = k / g;
  const plain = q === 1 ? `${p}` : `${p}/${q}`;
  return { step: `${v}/${k}=${plain}`, plain, p, q };
}

function tiny(rng: Rng, lv: Level): Generated | null {
  const steps = rng.int(lv.steps[0], lv.steps[1]);
  const withDivision = rng.float() < lv.fraction;
  const nOps = withDivision ? steps - 1 : steps;
  const ops: string[] = [];
  for (let i = 0; i < nOps; i++) ops.push(rng.pick(['+', '-', '*']));
  const vals: number[] = [];
  for (let i = 0; i <= nOps; i++) {
    const mul = ops[i - 1] === '*' || ops[i] === '*';
    vals.push(mul ? rng.int(lv.mulMin, lv.mulMax) : rng.int(1, lv.addMax));
  }
  let expr = `${vals[0]}`;
  for (let i = 0; i < nOps; i++) expr += `${ops[i]}${vals[i + 1]}`;
  const out: string[] = [];
  const v = vals.slice();
  const o = ops.slice();
  for (let k = o.indexOf('*'); k >= 0; k = o.indexOf('*')) {
    const c = v[k] * v[k + 1];
    if (c > MAX_VALUE) return null;
    out.push(`${v[k]}*${v[k + 1]}=${c}`);
    v.splice(k, 2, c);
    o.splice(k, 1);
  }
  while (o.length) {
    const op = o.shift() as string;
    const c = op === '+' ? v[0] + v[1] : v[0] - v[1];
    if (c < 0 || c > MAX_VALUE) return null;
    out.push(`${v[0]}${op}${v[1]}=${c}`);
    v.splice(0, 2, c);
  }
  let answer = `${v[0]}`;
  let problem = `${expr}=?`;
  if (withDivision) {
    if (v[0] === 0) return null;
    const k = rng.int(2, 9);
    const d = divide(v[0], k);
    out.push(d.step);
    answer = d.plain;
    problem = `(${expr})/${k}=?`;
  }
  return { problem, solution: `${out.join(';')};\\boxed{${answer}}`, answer };
}

const NAMES: readonly [string, string][] = [
  ['Mia', 'She'],
  ['Tom', 'He'],
  ['Ana', 'She'],
  ['Ben', 'He'],
  ['Leo', 'He'],
  ['Zoe', 'She'],
  ['Sam', 'He'],
  ['Eva', 'She'],
];
const ITEMS: readonly string[] = ['apples', 'pens', 'cards', 'eggs', 'books', 'coins', 'shells', 'stamps'];
const ADD_VERBS: readonly string[] = ['buys', 'finds', 'gets'];
const SUB_VERBS: readonly string[] = ['gives away', 'loses', 'sells'];
const BAGS: readonly string[] = ['bags', 'boxes', 'packs'];
const TIMES: readonly [string, number][] = [
  ['doubles them', 2],
  ['triples them', 3],
];
const QUESTION = 'How many now?';
const SHARE_QUESTION = 'How many each?';

function words(rng: Rng, lv: Level): Generated | null {
  const [name, pronoun] = rng.pick(NAMES);
  const item = rng.pick(ITEMS);
  const steps = rng.int(lv.steps[0], lv.steps[1]);
  const withDivision = rng.float() < lv.fraction;
  let s = rng.int(2, lv.startMax);
  const start = s;
  const actions: string[] = [];
  const out: string[] = [];
  let left = withDivision ? steps - 1 : steps;
  while (left > 0) {
    const kinds = ['add', 'sub', 'times'];
    if (left >= 2) kinds.push('bags', 'bags');
    const kind = rng.pick(kinds);
    if (kind === 'add') {
      const b = rng.int(1, lv.addMax);
      actions.push(`${rng.pick(ADD_VERBS)} ${b}`);
      out.push(`${s}+${b}=${s + b}`);
      s += b;
      left -= 1;
    } else if (kind === 'sub') {
      if (s < 2) continue;
      const b = rng.int(1, Math.min(lv.addMax, s - 1));
      actions.push(`${rng.pick(SUB_VERBS)} ${b}`);
      out.push(`${s}-${b}=${s - b}`);
      s -= b;
      left -= 1;
    } else if (kind === 'times') {
      const [phrase, k] = rng.pick(TIMES);
      actions.push(phrase);
      out.push(`${s}*${k}=${s * k}`);
      s *= k;
      left -= 1;
    } else {
      const b = rng.int(lv.mulMin, lv.mulMax);
      const c = rng.int(lv.mulMin, lv.mulMax);
      actions.push(`${rng.pick(ADD_VERBS)} ${b} ${rng.pick(BAGS)} of ${c}`);
      out.push(`${b}*${c}=${b * c}`, `${s}+${b * c}=${s + b * c}`);
      s += b * c;
      left -= 2;
    }
    if (s > MAX_VALUE) return null;
  }
  let question = QUESTION;
  let answer = `${s}`;
  let boxed = answer;
  if (withDivision) {
    if (s === 0) return null;
    const k = rng.int(2, 9);
    const d = divide(s, k);
    actions.push(`splits them ${k} ways`);
    out.push(d.step);
    question = SHARE_QUESTION;
    answer = d.q === 1 ? `${d.p}` : `\\frac{${d.p}}{${d.q}}`;
    boxed = answer;
  }
  const list =
    actions.length === 1 ? actions[0] : `${actions.slice(0, -1).join(', ')} and ${actions[actions.length - 1]}`;
  const problem = `${name} has ${start} ${item}. ${pronoun} ${list}. ${question}`;
  return { problem, solution: `${out.join(';')};\\boxed{${boxed}}`, answer };
}

/** Deterministic synthetic problems (see the top of this file). */
export function generateProblems(opts: GenerateOptions): Problem[] {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('generateProblems: options must be an object');
  const count = checkInteger('count', opts.count, 0, 10_000_000);
  const seed = checkInteger('seed', opts.seed, Number.MIN_SAFE_INTEGER);
  const difficulty = checkInteger('difficulty', opts.difficulty ?? 2, 1, 4);
  const style = checkEnum('style', opts.style ?? 'words', SYNTHETIC_STYLES);
  const prefix = opts.idPrefix ?? style;
  if (typeof prefix !== 'string' || prefix === '') throw new TypeError('idPrefix: must be a non-empty string');
  let lv = LEVELS[difficulty];
  if (opts.steps !== undefined) {
    if (!Array.isArray(opts.steps) || opts.steps.length !== 2)
      throw new TypeError('steps: must be a [min, max] pair of integers');
    const lo = checkInteger('steps', opts.steps[0], 1, lv.maxSteps),
      hi = checkInteger('steps', opts.steps[1], lo, lv.maxSteps);
    lv = { ...lv, steps: [lo, hi] };
  }
  const rng = new Rng(seed);
  const make = style === 'tiny' ? tiny : words;
  const seen = new Set<string>();
  const problems: Problem[] = [];
  let misses = 0;
  while (problems.length < count) {
    const g = make(rng, lv);
    if (!g || g.problem.length > lv.maxText || g.solution.length > lv.maxText || seen.has(g.problem)) {
      if (++misses > 1000 + 50 * count)
        throw new RangeError(
          `count: could only make ${problems.length} distinct problems (style '${style}', difficulty ${difficulty})`,
        );
      continue;
    }
    seen.add(g.problem);
    problems.push({
      id: `${prefix}-${seed}-${problems.length}`,
      problem: g.problem,
      answer: g.answer,
      solution: g.solution,
    });
  }
  return problems;
}

/** Seeded random split into train and test; each keeps the input order. Ids must be unique (RangeError). */
export function splitProblems(problems: readonly Problem[], opts: SplitOptions): { train: Problem[]; test: Problem[] } {
  if (!Array.isArray(problems)) throw new TypeError('problems: must be an array');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('splitProblems: options must be an object');
  const f = opts.testFraction;
  if (typeof f !== 'number') throw new TypeError(`testFraction: must be a number, got ${typeof f}`);
  if (!(f >= 0 && f <= 1)) throw new RangeError(`testFraction: must be in [0, 1], got ${f}`);
  const seed = checkInteger('seed', opts.seed, Number.MIN_SAFE_INTEGER);
  const ids = new Set<string>();
  for (const p of problems) {
    if (ids.has(p.id)) throw new RangeError(`problems: duplicate id "${p.id}"`);
    ids.add(p.id);
  }
  const n = problems.length;
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const inTest = new Uint8Array(n);
  for (let i = 0; i < Math.round(n * f); i++) inTest[order[i]] = 1;
  return { train: problems.filter((_, i) => !inTest[i]), test: problems.filter((_, i) => inTest[i]) };
}

function sortedChars(s: string): string {
  return Array.from(new Set(Array.from(s)))
    .sort()
    .join('');
}

/** The characters of a set of texts, sorted and unique (build a character tokenizer from it). */
export function charsetOf(texts: Iterable<string>): string {
  let all = '';
  for (const t of texts) all += t;
  return sortedChars(all);
}

/** Every character a 'tiny' problem or solution can contain: digits, + - * / = ? ; ( ) and \boxed{}. */
export const TINY_CHARSET: string = sortedChars('0123456789+-*/=?;()\\boxed{}');

/** Every character a 'words' problem or solution can contain. */
export const WORDS_CHARSET: string = sortedChars(
  [
    '0123456789+-*/=;\\boxed{}\\frac .,?',
    ...NAMES.flat(),
    ...ITEMS,
    ...ADD_VERBS,
    ...SUB_VERBS,
    ...BAGS,
    ...TIMES.map((t) => t[0]),
    'has of and splits them ways',
    QUESTION,
    SHARE_QUESTION,
  ].join(''),
);

/** The character set of a style. */
export function charsetFor(style: SyntheticStyle): string {
  return checkEnum('style', style, SYNTHETIC_STYLES) === 'tiny' ? TINY_CHARSET : WORDS_CHARSET;
}
