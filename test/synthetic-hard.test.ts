// Synthetic difficulty 4 (the hard setting): deterministic, long (5–7 steps, texts ≤ 128 characters), every answer
// equal to an exact rational evaluation of the problem text, every worked step correct, and levels 1–3 unchanged
// (a fingerprint of their output taken before level 4 existed).
import { createHash } from 'crypto';
import { generateProblems, maxTextOf, SYNTHETIC_DIFFICULTIES, TINY_CHARSET } from '../lib/data/synthetic';
import { shutdownVerifier, verify } from '../lib/reward/verifier';

afterAll(async () => {
  await shutdownVerifier();
});

/** An exact rational p/q (BigInt, q > 0, reduced). */
type Q = [bigint, bigint];
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? (a < 0n ? -a : a) : gcd(b, a % b));
const norm = ([p, q]: Q): Q => {
  if (q < 0n) [p, q] = [-p, -q];
  const g = gcd(p, q) || 1n;
  return [p / g, q / g];
};
const add = (a: Q, b: Q): Q => norm([a[0] * b[1] + b[0] * a[1], a[1] * b[1]]);
const sub = (a: Q, b: Q): Q => add(a, [-b[0], b[1]]);
const mul = (a: Q, b: Q): Q => norm([a[0] * b[0], a[1] * b[1]]);
const div = (a: Q, b: Q): Q => norm([a[0] * b[1], a[1] * b[0]]);

/** Evaluates "a op b op … =?" or "(…)/k=?" with standard precedence, independently of the generator. */
function evalProblem(text: string): Q {
  const m = /^(?:\((.+)\)\/(\d+)|(.+))=\?$/.exec(text);
  if (!m) throw new Error(`unparsed problem ${text}`);
  const expr = m[1] ?? m[3];
  const toks = expr.match(/\d+|[+\-*]/g)!;
  expect(toks.join('')).toBe(expr);
  // sum of products
  let total: Q = [0n, 1n];
  let term: Q = [BigInt(toks[0]), 1n];
  let sign = 1;
  for (let i = 1; i < toks.length; i += 2) {
    const op = toks[i];
    const v: Q = [BigInt(toks[i + 1]), 1n];
    if (op === '*') term = mul(term, v);
    else {
      total = sign > 0 ? add(total, term) : sub(total, term);
      sign = op === '+' ? 1 : -1;
      term = v;
    }
  }
  total = sign > 0 ? add(total, term) : sub(total, term);
  return m[2] !== undefined ? div(total, [BigInt(m[2]), 1n]) : total;
}

const answerQ = (a: string): Q => {
  const f = /^\\frac\{(\d+)\}\{(\d+)\}$/.exec(a) ?? /^(\d+)\/(\d+)$/.exec(a);
  return f ? [BigInt(f[1]), BigInt(f[2])] : [BigInt(a), 1n];
};

describe('synthetic difficulty 4', () => {
  const ps = generateProblems({ count: 1000, seed: 5, style: 'tiny', difficulty: 4 });

  test('levels 1–3 are unchanged (fingerprint of their output before level 4)', () => {
    const all = [];
    for (const style of ['tiny', 'words'] as const)
      for (const d of [1, 2, 3]) {
        all.push(generateProblems({ count: 300, seed: 7, style, difficulty: d }));
        all.push(generateProblems({ count: 50, seed: 8, style, difficulty: d, steps: [d === 1 ? 2 : 3, 5] }));
      }
    expect(createHash('sha256').update(JSON.stringify(all)).digest('hex')).toBe(
      '0014327415bc8431debe4ac113a18cd8add800879277b39192ccd3024fab70ee',
    );
    expect(SYNTHETIC_DIFFICULTIES).toEqual([1, 2, 3, 4]);
    expect([1, 2, 3, 4].map(maxTextOf)).toEqual([80, 80, 80, 128]);
    expect(() => maxTextOf(5)).toThrow(RangeError);
  });

  test('deterministic, distinct, long, within the charset and the text limit', () => {
    expect(generateProblems({ count: 1000, seed: 5, style: 'tiny', difficulty: 4 })).toEqual(ps);
    expect(generateProblems({ count: 50, seed: 6, style: 'tiny', difficulty: 4 })).not.toEqual(ps.slice(0, 50));
    expect(new Set(ps.map((p) => p.problem)).size).toBe(ps.length);
    const steps = ps.map((p) => p.solution!.split(';').length - 1);
    expect(Math.min(...steps)).toBe(5);
    expect(Math.max(...steps)).toBe(7);
    for (const n of [5, 6, 7]) expect(steps.filter((s) => s === n).length).toBeGreaterThan(150);
    for (const p of ps) {
      expect(p.problem.length).toBeLessThanOrEqual(128);
      expect(p.solution!.length).toBeLessThanOrEqual(128);
      for (const c of p.problem + p.solution) expect(TINY_CHARSET).toContain(c);
    }
    // much longer than level 2 (the same operands) on average: the point of the level
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const l2 = generateProblems({ count: 1000, seed: 5, style: 'tiny', difficulty: 2 });
    expect(mean(ps.map((p) => p.solution!.length))).toBeGreaterThan(1.6 * mean(l2.map((p) => p.solution!.length)));
    const fractions = ps.filter((p) => p.answer.includes('/')).length;
    expect(fractions).toBeGreaterThan(100);
    expect(fractions).toBeLessThan(400);
  });

  test('every answer equals an exact rational evaluation of the problem text, and every step is right', () => {
    const bad: string[] = [];
    for (const p of ps) {
      const want = evalProblem(p.problem);
      const got = norm(answerQ(p.answer));
      if (want[0] !== got[0] || want[1] !== got[1]) bad.push(`${p.problem} → ${p.answer}`);
      const parts = p.solution!.split(';');
      expect(parts[parts.length - 1]).toBe(`\\boxed{${p.answer}}`);
      for (const step of parts.slice(0, -1)) {
        const s = /^(\d+)([+\-*/])(\d+)=(\d+)(?:\/(\d+))?$/.exec(step);
        if (!s) {
          bad.push(step);
          continue;
        }
        const [a, b]: Q[] = [
          [BigInt(s[1]), 1n],
          [BigInt(s[3]), 1n],
        ];
        const r = s[2] === '+' ? add(a, b) : s[2] === '-' ? sub(a, b) : s[2] === '*' ? mul(a, b) : div(a, b);
        const c = norm([BigInt(s[4]), BigInt(s[5] ?? '1')]);
        if (r[0] !== c[0] || r[1] !== c[1] || r[0] < 0n || r[0] > 999n * r[1]) bad.push(step);
      }
    }
    expect(bad).toEqual([]);
  });

  test('the verifier accepts the worked solutions; one slipped step gives a wrong answer sharing most tokens', () => {
    for (const p of ps.slice(0, 200)) expect(verify(p.solution, p.answer).correct).toBe(true);
    // slip the last arithmetic step by one: the wrong solution keeps every earlier step
    let shared = 0;
    let total = 0;
    for (const p of ps.slice(0, 200).filter((q) => !q.answer.includes('/'))) {
      const parts = p.solution!.split(';');
      const last = parts[parts.length - 2];
      const wrongValue = String(Number(last.split('=')[1]) + 1);
      const wrong = [...parts.slice(0, -2), `${last.split('=')[0]}=${wrongValue}`, `\\boxed{${wrongValue}}`].join(';');
      expect(verify(wrong, p.answer).correct).toBe(false);
      let i = 0;
      while (i < wrong.length && wrong[i] === p.solution![i]) i++;
      shared += i;
      total += p.solution!.length;
    }
    expect(shared / total).toBeGreaterThan(0.7);
  });

  test('words style, steps overrides and bad options', () => {
    const w = generateProblems({ count: 100, seed: 2, style: 'words', difficulty: 4 });
    for (const p of w) {
      expect(p.problem.length).toBeLessThanOrEqual(128);
      expect(verify(p.solution, p.answer).correct).toBe(true);
    }
    const eight = generateProblems({ count: 30, seed: 3, style: 'tiny', difficulty: 4, steps: [8, 8] });
    expect(eight.every((p) => p.solution!.split(';').length - 1 === 8)).toBe(true);
    expect(() => generateProblems({ count: 1, seed: 1, difficulty: 4, steps: [2, 9] })).toThrow(/^steps:/);
    expect(() => generateProblems({ count: 1, seed: 1, difficulty: 3, steps: [2, 7] })).toThrow(/^steps:/);
    expect(() => generateProblems({ count: 1, seed: 1, difficulty: 0 })).toThrow(/difficulty/);
  });
});
