// The math verifier: answer extraction, normalisation and equivalence on tables of equivalent and non-equivalent
// pairs, and adversarial inputs that must finish fast and say "not equivalent" instead of throwing.
import {
  compareAnswers,
  extractAnswer,
  isEquivalent,
  normalizeAnswer,
  shutdownVerifier,
  verify,
} from '../lib/reward/verifier';

// generous per-comparison limit: jest runs test files in parallel on 2 cores; the default (50 ms) is for training
const OPTS = { timeoutMs: 3000 };

afterAll(() => shutdownVerifier());

const EQUIVALENT: [string, string][] = [
  ['1/2', '0.5'],
  ['\\dfrac{1}{2}', '\\frac12'],
  ['1,000', '1000'],
  ['10^{6}', '1000000'],
  ['\\sqrt{12}', '2\\sqrt{3}'],
  ['3.0', '3'],
  ['(x+1)^2', 'x^2+2x+1'],
  ['\\left(3\\right)', '3'],
  ['5 cm', '5'],
  ['5\\text{ cm}', '5'],
  ['5\\text{ cm}^2', '5'],
  ['\\$12', '12'],
  ['12 dollars', '12'],
  ['50\\%', '50'],
  ['90^\\circ', '90'],
  ['+7', '7'],
  ['-\\frac{3}{4}', '-0.75'],
  ['\\tfrac{3}{4}', '0.75'],
  ['\\frac{-3}{4}', '-\\frac34'],
  ['2.50', '2.5'],
  ['.5', '0.5'],
  ['1{,}234', '1234'],
  ['1,234,567.0', '1234567'],
  ['3\\frac{1}{2}', '7/2'],
  ['3 1/2', '3.5'],
  ['x = 3', '3'],
  ['\\frac{6}{8}', '\\frac{3}{4}'],
  ['2x', 'x+x'],
  ['\\frac{x}{2}', '0.5x'],
  ['a+b', 'b+a'],
  ['\\frac{1}{\\sqrt{2}}', '\\frac{\\sqrt{2}}{2}'],
  ['2^{10}', '1024'],
  ['3\\cdot 4', '12'],
  ['3 \\times 4', '12'],
  ['$\\frac{1}{2}$', '1/2'],
  ['1e3', '1000'],
  ['0.3333333333333', '\\frac{1}{3}'],
  ['12345678901234567890', '12345678901234567890.00'],
  ['x^2-1', '(x-1)(x+1)'],
  ['\\sqrt{8}', '2\\sqrt2'],
  ['\\pi/2', '\\frac{\\pi}{2}'],
  ['2(x+3)', '2x+6'],
  ['1\\,000', '1000'],
  ['007', '7'],
  ['\\frac{10}{4}', '2.5'],
  ['-0', '0'],
  ['6 \\text{apples}', '6'],
  ['\\text{5}', '5'],
  ['45°', '45'],
  ['e^{i\\pi}', '-1'],
  ['\\frac{x^2-1}{x-1}', 'x+1'],
  ['18.', '18'],
  ['\\boxed{18}', '18'],
  ['\\pi r^2', 'r^2\\pi'],
  ['\\sin^2 x+\\cos^2 x', '1'],
  ['1 \\times 10^{3}', '1000'],
];

const NOT_EQUIVALENT: [string, string][] = [
  ['1/2', '0.51'],
  ['12', '21'],
  ['x+1', 'x-1'],
  ['0.333', '1/3'],
  ['12345678901234567890', '12345678901234567891'],
  ['\\sqrt{12}', '3\\sqrt{2}'],
  ['(x+1)^2', 'x^2+1'],
  ['\\pi', '3.14159'],
  ['2x', 'x^2'],
  ['1000', '100'],
  ['3', '-3'],
  ['\\frac{1}{2}', '\\frac{2}{1}'],
  ['1,000', '1'],
  ['10^{6}', '10^{5}'],
  ['5 cm', '6'],
  ['x', 'y'],
  ['a+b', 'a-b'],
  ['3.01', '3'],
  ['7/2', '3\\frac{1}{3}'],
  ['2\\sqrt{3}', '3\\sqrt{2}'],
  ['\\frac{x}{2}', '2x'],
  ['0', '1'],
  ['1e3', '100'],
  ['', '0'],
  ['abc', 'abd'],
  ['\\infty', '1000'],
  ['2^{10}', '1000'],
  ['\\sin x', '\\cos x'],
  ['\\sqrt{x^2}', 'x'],
  ['50\\%', '0.5'],
  ['(1,2)', '(2,1)'],
];

describe('equivalence table', () => {
  test(`has at least 40 equivalent and 25 non-equivalent pairs`, () => {
    expect(EQUIVALENT.length).toBeGreaterThanOrEqual(40);
    expect(NOT_EQUIVALENT.length).toBeGreaterThanOrEqual(25);
  });

  test.each(EQUIVALENT)('%s ≡ %s', (a, b) => {
    const r = compareAnswers(a, b, OPTS);
    expect({ a, b, ...r }).toMatchObject({ equivalent: true });
    expect(isEquivalent(b, a, OPTS)).toBe(true); // symmetric
  });

  test.each(NOT_EQUIVALENT)('%s ≢ %s', (a, b) => {
    const r = compareAnswers(a, b, OPTS);
    expect({ a, b, ...r }).toMatchObject({ equivalent: false });
    expect(isEquivalent(b, a, OPTS)).toBe(false);
  });

  test('reasons say which rule decided', () => {
    expect(compareAnswers('1,000', '1000').reason).toMatch(/identical after normalisation/);
    expect(compareAnswers('1/2', '0.5').reason).toMatch(/numbers are equal/);
    expect(compareAnswers('1/2', '0.51').reason).toMatch(/numbers differ/);
    expect(compareAnswers('(x+1)^2', 'x^2+2x+1', OPTS).reason).toMatch(/compute-engine/);
  });

  test('symbolic: false keeps to strings and numbers', () => {
    expect(isEquivalent('1/2', '0.5', { symbolic: false })).toBe(true);
    expect(compareAnswers('(x+1)^2', 'x^2+2x+1', { symbolic: false })).toEqual({
      equivalent: false,
      reason: 'differ after normalisation (symbolic comparison off)',
    });
  });

  test('bad options throw; bad answers never do', () => {
    expect(() => isEquivalent('1', '1', { timeoutMs: 0 })).toThrow(RangeError);
    expect(() => isEquivalent('1', '1', { timeoutMs: NaN })).toThrow(/timeoutMs/);
    for (const junk of [null, undefined, 12, {}, [], Symbol('x')]) {
      expect(isEquivalent(junk, '12')).toBe(false);
      expect(extractAnswer(junk)).toBeNull();
      expect(normalizeAnswer(junk)).toBe('');
      expect(verify(junk, '12').correct).toBe(false);
    }
  });
});

describe('normalizeAnswer', () => {
  test.each([
    ['\\left( \\dfrac{1}{2} \\right)', '\\frac{1}{2}'],
    ['$1,000.00$', '1000'],
    ['\\frac12', '\\frac{1}{2}'],
    ['\\frac1{2}', '\\frac{1}{2}'],
    ['\\frac{1}2', '\\frac{1}{2}'],
    ['\\sqrt2', '\\sqrt{2}'],
    ['x = 5 \\text{ cm}', '5'],
    ['+3.50', '3.5'],
    ['(1,2)', '(1,2)'],
    ['1,2', '1,2'],
    ['\\pi r^2', '\\pi r^2'],
    ['12 apples.', '12'],
    ['5cm', '5'],
  ])('%s → %s', (input, out) => {
    expect(normalizeAnswer(input)).toBe(out);
  });
});

describe('extractAnswer', () => {
  test('the last \\boxed{} wins, nested braces matched', () => {
    expect(extractAnswer('first \\boxed{1} then \\boxed{\\frac{1}{2}}')).toBe('\\frac{1}{2}');
    expect(extractAnswer('so \\boxed{\\frac{\\sqrt{3}}{\\left(2\\right)}} done')).toBe(
      '\\frac{\\sqrt{3}}{\\left(2\\right)}',
    );
    expect(extractAnswer('set \\boxed{\\{1,2\\}}')).toBe('\\{1,2\\}');
    expect(extractAnswer('\\fbox{7} and earlier \\boxed{3}... no: \\fbox{8}')).toBe('8');
    expect(extractAnswer('5*3=15;7+15=22;22-4=18;\\boxed{18}')).toBe('18');
    expect(extractAnswer('\\boxed 42 is it')).toBe('42');
  });

  test('an unbalanced last box (truncated response) gives null, not an earlier box', () => {
    expect(extractAnswer('\\boxed{3} and then \\boxed{\\frac{1}{2}')).toBeNull();
    expect(extractAnswer('\\boxed{}')).toBeNull();
  });

  test('fallbacks: answer phrases, then the last number of the last line', () => {
    expect(extractAnswer('We add. The answer is 42.')).toBe('42');
    expect(extractAnswer('so the answer is $\\frac{1}{2}$. Done')).toBe('$\\frac{1}{2}$');
    expect(extractAnswer('Answer: 0.5')).toBe('0.5');
    expect(extractAnswer('Final answer: **17**')).toBe('17');
    expect(extractAnswer('7+5=12\n12*2=24\n')).toBe('24');
    expect(extractAnswer('total is 1,250 coins')).toBe('1,250');
    expect(extractAnswer('the answer is 3', { boxedOnly: true })).toBeNull();
  });

  test('no answer → null', () => {
    expect(extractAnswer('')).toBeNull();
    expect(extractAnswer('I do not know.')).toBeNull();
    expect(verify('I do not know.', '3')).toEqual({
      correct: false,
      extracted: null,
      reason: 'no answer found in the response',
    });
  });
});

describe('verify', () => {
  test('grades responses against references', () => {
    expect(verify('5*3=15;7+15=22;22-4=18;\\boxed{18}', '18')).toMatchObject({ correct: true, extracted: '18' });
    expect(verify('so \\boxed{\\dfrac{3}{4}}', '0.75')).toMatchObject({ correct: true });
    expect(verify('so \\boxed{19}', '18')).toMatchObject({ correct: false, extracted: '19' });
    // a worked reference solution is reduced to its boxed answer
    expect(verify('\\boxed{22}', '7+15=22;\\boxed{22}')).toMatchObject({ correct: true });
  });
});

describe('adversarial inputs finish fast and are not equivalent', () => {
  // Bounds on this process's CPU time (user + system, worker threads included), not wall time: they catch
  // super-linear parsing without failing when other processes load the machine.
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const fast = (f: () => void, ms: number) => {
    const t = cpuMs();
    f();
    expect(cpuMs() - t).toBeLessThan(ms);
  };
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const garbage = (n: number) => {
    const chars = '{}\\^_abcxyz0123456789+-*/()[] fracsqrtboxed$,.';
    let s = '';
    for (let i = 0; i < n; i++) s += chars[Math.floor(rnd() * chars.length)];
    return s;
  };

  test('unbalanced braces', () => {
    fast(() => {
      expect(extractAnswer('\\boxed{' + '{'.repeat(10000))).toBeNull();
      expect(isEquivalent('{{{1', '1', OPTS)).toBe(false);
      expect(isEquivalent('\\frac{1}{2', '0.5', OPTS)).toBe(false);
      expect(isEquivalent('1}', '1', OPTS)).toBe(false);
    }, 500);
  });

  test('10k characters of garbage', () => {
    const g = garbage(10000);
    fast(() => {
      extractAnswer(g);
      normalizeAnswer(g);
      expect(isEquivalent(g, '3', OPTS)).toBe(false);
      expect(verify(g, '3').correct).toBe(false);
      expect(verify('\\boxed{' + g + '}', '3').correct).toBe(false);
    }, 1000);
  });

  test('deeply nested expressions', () => {
    const frac = '\\frac{'.repeat(5000) + '1' + '}{2}'.repeat(5000);
    const parens = '('.repeat(3000) + '1' + ')'.repeat(3000);
    const sqrt = '\\sqrt{'.repeat(14) + '2' + '}'.repeat(14);
    fast(() => {
      expect(extractAnswer('\\boxed{' + frac + '}')).toBe(frac);
      expect(isEquivalent(frac, '1', OPTS)).toBe(false);
      expect(isEquivalent(parens, '2', OPTS)).toBe(false);
      expect(compareAnswers(sqrt, '2', OPTS).reason).toMatch(/nested deeper/);
    }, 1000);
  });

  test('a slow symbolic comparison hits the time limit and reports it', () => {
    // compute-engine needs ~1 s for this sum; the worker is terminated at the limit
    let r = compareAnswers('\\sum_{n=1}^{10^9} n', '5', { timeoutMs: 30 });
    fast(() => {
      r = compareAnswers('\\sum_{n=1}^{10^8} n', '5', { timeoutMs: 30 });
    }, 1000);
    expect(r).toEqual({ equivalent: false, reason: 'compute-engine: time limit of 30 ms exceeded' });
    // and the next comparison starts a fresh worker
    expect(isEquivalent('\\sqrt{12}', '2\\sqrt{3}', OPTS)).toBe(true);
  });

  test('many random short garbage strings never throw', () => {
    const t = cpuMs();
    for (let i = 0; i < 200; i++) {
      const g = garbage(1 + Math.floor(rnd() * 30));
      expect(typeof isEquivalent(g, garbage(5), { timeoutMs: 20, symbolic: i % 4 === 0 })).toBe('boolean');
      expect(() => verify(g, g, { symbolic: false })).not.toThrow();
    }
    expect(cpuMs() - t).toBeLessThan(8000);
  });
});
