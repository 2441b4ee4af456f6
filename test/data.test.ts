// Data: the synthetic generator (determinism, lengths, charsets, its own solutions verify), splits, the JSONL
// reader/writers (file:line errors, BOM, blank lines, torn tails) and problems files.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  appendJsonl,
  DEFAULT_MAX_LINE_BYTES,
  parseJsonl,
  readJsonl,
  repairJsonlTail,
  writeJsonlAtomic,
} from '../lib/data/jsonl';
import { readFileBounded, readJsonFile } from '../lib/data/files';
import { readProblems, writeProblems, Problem } from '../lib/data/problems';
import {
  charsetFor,
  charsetOf,
  generateProblems,
  splitProblems,
  TINY_CHARSET,
  WORDS_CHARSET,
} from '../lib/data/synthetic';
import { shutdownVerifier, verify } from '../lib/reward/verifier';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-data-'));
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await shutdownVerifier();
});
const tmp = (name: string, text?: string | Buffer) => {
  const f = path.join(dir, name);
  if (text !== undefined) fs.writeFileSync(f, text);
  return f;
};

describe('synthetic generator', () => {
  test('deterministic for a seed, different for another', () => {
    for (const style of ['tiny', 'words'] as const) {
      const a = generateProblems({ count: 50, seed: 7, style });
      expect(generateProblems({ count: 50, seed: 7, style })).toEqual(a);
      const b = generateProblems({ count: 50, seed: 8, style });
      expect(b.map((p) => p.problem)).not.toEqual(a.map((p) => p.problem));
      // a prefix of a longer run is the shorter run
      expect(generateProblems({ count: 80, seed: 7, style }).slice(0, 50)).toEqual(a);
    }
  });

  test('examples look as documented', () => {
    const [t] = generateProblems({ count: 1, seed: 1, style: 'tiny', difficulty: 1 });
    expect(t.problem).toMatch(/^\d[\d+\-*]*=\?$/);
    expect(t.solution).toMatch(/^(\d+[+\-*]\d+=\d+;){2}\\boxed\{\d+\}$/);
    const [w] = generateProblems({ count: 1, seed: 1, style: 'words' });
    expect(w.problem).toMatch(/^[A-Z][a-z]+ has \d+ [a-z]+\. (She|He) .+\. How many (now|each)\?$/);
    expect(w.id).toBe('words-1-0');
  });

  test.each([
    ['tiny', 1],
    ['tiny', 2],
    ['tiny', 3],
    ['words', 1],
    ['words', 2],
    ['words', 3],
  ] as const)(
    '%s, difficulty %d: short texts, 2–4 steps, in the charset, distinct, unique ids',
    (style, difficulty) => {
      const ps = generateProblems({ count: 300, seed: 42, style, difficulty });
      expect(ps).toHaveLength(300);
      expect(new Set(ps.map((p) => p.id)).size).toBe(300);
      expect(new Set(ps.map((p) => p.problem)).size).toBe(300);
      const charset = new Set(charsetFor(style));
      const bad: string[] = [];
      const [minSteps, maxSteps] = difficulty === 1 ? [2, 2] : difficulty === 3 ? [3, 4] : [2, 4];
      for (const p of ps) {
        const why = (w: string) => bad.push(`${p.id}: ${w}: ${p.problem} | ${p.solution}`);
        if (p.problem.length > 80 || p.solution!.length > 80) why('too long');
        for (const c of p.problem + p.solution + p.answer) if (!charset.has(c)) why(`char ${c}`);
        const steps = p.solution!.split(';').length - 1;
        if (steps < minSteps || steps > maxSteps) why(`${steps} steps`);
        // results < 1000, operands at most 2 digits
        if (p.solution!.match(/\d+/g)!.some((n) => Number(n) >= 1000)) why('result >= 1000');
        if (p.problem.match(/\d+/g)!.some((n) => n.length > 2)) why('operand > 2 digits');
      }
      expect(bad).toEqual([]);
      if (difficulty === 3) expect(ps.some((p) => /\//.test(p.answer) || /frac/.test(p.answer))).toBe(true);
      else expect(ps.every((p) => /^\d+$/.test(p.answer))).toBe(true);
    },
  );

  test("steps overrides the level's range (5-step problems at difficulty 2); bad ranges are RangeErrors naming steps", () => {
    const ps = generateProblems({ count: 100, seed: 9, style: 'tiny', difficulty: 2, steps: [5, 5] });
    expect(ps.every((p) => p.solution!.split(';').length - 1 === 5)).toBe(true);
    const plain = new Set(
      generateProblems({ count: 2000, seed: 9, style: 'tiny', difficulty: 2 }).map((p) => p.problem),
    );
    expect(ps.some((p) => plain.has(p.problem))).toBe(false); // difficulty 2 alone never makes 5 steps
    expect(() => generateProblems({ count: 1, seed: 1, steps: [3, 2] })).toThrow(/^steps:/);
    expect(() => generateProblems({ count: 1, seed: 1, steps: [0, 2] })).toThrow(/^steps:/);
    expect(() => generateProblems({ count: 1, seed: 1, steps: [2, 7] })).toThrow(/^steps:/);
    expect(() => generateProblems({ count: 1, seed: 1, steps: 3 as never })).toThrow(TypeError);
  });

  test('each worked step is correct arithmetic', () => {
    const bad: string[] = [];
    for (const p of generateProblems({ count: 200, seed: 3, style: 'tiny', difficulty: 3 })) {
      for (const step of p.solution!.split(';').slice(0, -1)) {
        const m = /^(\d+)([+\-*/])(\d+)=(\d+)(?:\/(\d+))?$/.exec(step);
        if (!m) {
          bad.push(step);
          continue;
        }
        const [a, op, b, n, d = '1'] = [Number(m[1]), m[2], Number(m[3]), Number(m[4]), m[5]];
        const want = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b;
        if (Math.abs(n / Number(d) - want) > 1e-12) bad.push(step);
      }
    }
    expect(bad).toEqual([]);
  });

  test('the verifier accepts the generator’s own solutions (500 problems) and rejects a wrong one', () => {
    const ps = [
      ...generateProblems({ count: 200, seed: 11, style: 'tiny', difficulty: 2 }),
      ...generateProblems({ count: 100, seed: 12, style: 'tiny', difficulty: 3 }),
      ...generateProblems({ count: 100, seed: 13, style: 'words', difficulty: 2 }),
      ...generateProblems({ count: 100, seed: 14, style: 'words', difficulty: 3 }),
    ];
    expect(ps).toHaveLength(500);
    const bad: unknown[] = [];
    for (const p of ps) {
      const r = verify(p.solution, p.answer);
      if (!r.correct) bad.push({ id: p.id, solution: p.solution, answer: p.answer, ...r });
      const wrong = p.solution!.replace(/\\boxed\{.*\}$/, '\\boxed{1000}');
      if (verify(wrong, p.answer).correct) bad.push({ id: p.id, wrong });
    }
    expect(bad).toEqual([]);
  });

  test('charsets', () => {
    expect(TINY_CHARSET).toBe(charsetOf(['0123456789', '+-*/=?;()', '\\boxed{}']));
    expect(TINY_CHARSET.length).toBe(27);
    expect(WORDS_CHARSET).toContain(' ');
    expect(charsetOf(['ba', 'ab'])).toBe('ab');
  });

  test('bad options', () => {
    expect(() => generateProblems({ count: -1, seed: 1 })).toThrow(RangeError);
    expect(() => generateProblems({ count: 1.5, seed: 1 })).toThrow(/count/);
    expect(() => generateProblems({ count: 1, seed: 1, difficulty: 5 })).toThrow(/difficulty/);
    expect(() => generateProblems({ count: 1, seed: 1, style: 'poems' as never })).toThrow(/style/);
    expect(() => generateProblems({ count: 1, seed: 'x' as never })).toThrow(TypeError);
    expect(generateProblems({ count: 0, seed: 1 })).toEqual([]);
  });
});

describe('splitProblems', () => {
  const ps = generateProblems({ count: 101, seed: 5, style: 'tiny' });

  test('disjoint, complete, seeded, order kept', () => {
    const { train, test } = splitProblems(ps, { testFraction: 0.2, seed: 9 });
    expect(test).toHaveLength(20);
    expect(train).toHaveLength(81);
    const trainIds = new Set(train.map((p) => p.id));
    expect(test.some((p) => trainIds.has(p.id))).toBe(false);
    expect(new Set([...train, ...test].map((p) => p.id)).size).toBe(101);
    expect(splitProblems(ps, { testFraction: 0.2, seed: 9 })).toEqual({ train, test });
    expect(splitProblems(ps, { testFraction: 0.2, seed: 10 }).test).not.toEqual(test);
    const pos = (p: Problem) => ps.indexOf(p);
    expect(test.map(pos)).toEqual([...test.map(pos)].sort((a, b) => a - b));
    expect(splitProblems(ps, { testFraction: 0, seed: 1 }).test).toEqual([]);
    expect(splitProblems(ps, { testFraction: 1, seed: 1 }).train).toEqual([]);
  });

  test('bad input', () => {
    expect(() => splitProblems(ps, { testFraction: 1.5, seed: 1 })).toThrow(RangeError);
    expect(() => splitProblems([ps[0], ps[0]], { testFraction: 0.5, seed: 1 })).toThrow(/duplicate id/);
  });
});

describe('JSONL', () => {
  test('round trip: atomic write, append, BOM, CRLF, blank lines', () => {
    const f = tmp('a.jsonl');
    writeJsonlAtomic(f, [{ a: 1 }, { b: 'x\ny' }]);
    appendJsonl(f, [{ c: [1, 2] }]);
    appendJsonl(f, []);
    expect(fs.readFileSync(f, 'utf8')).toBe('{"a":1}\n{"b":"x\\ny"}\n{"c":[1,2]}\n');
    expect(readJsonl(f).records).toEqual([{ a: 1 }, { b: 'x\ny' }, { c: [1, 2] }]);
    const g = tmp(
      'bom.jsonl',
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"x":"é"}\r\n\r\n  \n{"y":2}')]),
    );
    const r = readJsonl(g);
    expect(r.records).toEqual([{ x: 'é' }, { y: 2 }]);
    expect(r.lines).toEqual([1, 4]);
    expect(r.truncatedTail).toBe(false);
    expect(r.validBytes).toBe(fs.statSync(g).size);
    expect(readJsonl(tmp('empty.jsonl', '')).records).toEqual([]);
  });

  test('lines longer than the read chunk, multi-byte characters across chunk borders', () => {
    const f = tmp('long.jsonl');
    const recs = [{ s: 'é'.repeat(50000) }, { s: '€'.repeat(70001) }, { n: 3 }];
    writeJsonlAtomic(f, recs);
    expect(readJsonl(f).records).toEqual(recs);
  });

  test('bad JSON → SyntaxError naming file:line', () => {
    const f = tmp('bad.jsonl', '{"a":1}\n\n{"a":2,}\n{"a":3}\n');
    expect(() => readJsonl(f)).toThrow(SyntaxError);
    expect(() => readJsonl(f)).toThrow(`${f}:3: invalid JSON`);
  });

  test('validator errors keep their class and gain file:line', () => {
    const f = tmp('v.jsonl', '{"n":1}\n{"n":-1}\n{"n":"x"}\n');
    const pos = (v: unknown) => {
      const n = (v as { n: unknown }).n;
      if (typeof n !== 'number') throw new TypeError('n: must be a number');
      if (n < 0) throw new RangeError('n: must be >= 0');
      return n;
    };
    expect(() => readJsonl(f, pos)).toThrow(RangeError);
    expect(() => readJsonl(f, pos)).toThrow(`${f}:2: n: must be >= 0`);
    fs.writeFileSync(f, '{"n":1}\n{"n":"x"}\n');
    expect(() => readJsonl(f, { validate: pos })).toThrow(TypeError);
    expect(() => readJsonl(f, { validate: pos })).toThrow(`${f}:2: n: must be a number`);
  });

  test('torn last line: an error by default, skipped and flagged with allowTruncatedTail, repairable', () => {
    const f = tmp('torn.jsonl');
    appendJsonl(f, [{ i: 0 }, { i: 1 }]);
    const intact = fs.statSync(f).size;
    fs.appendFileSync(f, '{"i":2,"resp'); // an interrupted append
    expect(() => readJsonl(f)).toThrow(SyntaxError);
    expect(() => readJsonl(f)).toThrow(`${f}:3: incomplete last line`);
    const r = readJsonl(f, { allowTruncatedTail: true });
    expect(r).toEqual({ records: [{ i: 0 }, { i: 1 }], lines: [1, 2], truncatedTail: true, validBytes: intact });
    // appending after a torn tail would glue two records together: refused
    expect(() => appendJsonl(f, [{ i: 3 }])).toThrow(/incomplete.*repairJsonlTail/);
    expect(repairJsonlTail(f)).toBe(true);
    expect(fs.statSync(f).size).toBe(intact);
    expect(repairJsonlTail(f)).toBe(false);
    appendJsonl(f, [{ i: 2 }]);
    expect(readJsonl(f).records).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    // a bad line that is not the last one is never forgiven
    fs.writeFileSync(f, '{"i":0}\n{"i":\n{"i":2}');
    expect(() => readJsonl(f, { allowTruncatedTail: true })).toThrow(`${f}:2: invalid JSON`);
  });

  test('a complete last line without newline is a record; appending adds the newline', () => {
    const f = tmp('nonl.jsonl', '{"i":0}\n{"i":1}');
    expect(readJsonl(f, { allowTruncatedTail: true })).toMatchObject({
      records: [{ i: 0 }, { i: 1 }],
      truncatedTail: false,
    });
    appendJsonl(f, [{ i: 2 }]);
    expect(readJsonl(f).records).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });

  test('records that JSON cannot hold are TypeErrors naming the index; nothing is written', () => {
    const f = tmp('w.jsonl');
    expect(() => appendJsonl(f, [{ ok: 1 }, { r: NaN }])).toThrow(/records\[1\]: field "r" is NaN/);
    expect(() => appendJsonl(f, [undefined])).toThrow(TypeError);
    expect(() => writeJsonlAtomic(f, [{ b: 1n }])).toThrow(/records\[0\]/);
    expect(() => appendJsonl(f, 'x' as never)).toThrow(TypeError);
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe('bounded reads', () => {
  test('a line longer than maxLineBytes is a RangeError naming file:line; a line at the limit is read', () => {
    const at = JSON.stringify({ s: 'x'.repeat(92) }); // 100 bytes
    const f = tmp('limit.jsonl', `{"a":1}\n${at}\n{"b":2}\n`);
    expect(readJsonl(f, { maxLineBytes: 100 }).records).toHaveLength(3);
    expect(() => readJsonl(f, { maxLineBytes: 99 })).toThrow(RangeError);
    expect(() => readJsonl(f, { maxLineBytes: 99 })).toThrow(`${f}:2: line is longer than 99 bytes`);
    // a last line without '\n' and a torn tail count too, and so does parseJsonl
    fs.writeFileSync(f, `{"a":1}\n${at}`);
    expect(() => readJsonl(f, { maxLineBytes: 50, allowTruncatedTail: true })).toThrow(
      `${f}:2: line is longer than 50 bytes`,
    );
    expect(() => parseJsonl('mem', `{"a":1}\n${at}\n`, { maxLineBytes: 64 })).toThrow(
      'mem:2: line is longer than 64 bytes',
    );
    expect(() => readJsonl(f, { maxLineBytes: 0 })).toThrow(/maxLineBytes/);
  });

  test('RIFT_MAX_LINE_BYTES sets the default limit; a bad value is a RangeError naming it', () => {
    const f = tmp('env.jsonl', `${JSON.stringify({ s: 'y'.repeat(200) })}\n`);
    const old = process.env.RIFT_MAX_LINE_BYTES;
    try {
      process.env.RIFT_MAX_LINE_BYTES = '128';
      expect(() => readJsonl(f)).toThrow(`${f}:1: line is longer than 128 bytes`);
      expect(() => appendJsonl(tmp('env-tail.jsonl', 'z'.repeat(300)), [{ a: 1 }])).toThrow(
        /last line is longer than 128 bytes/,
      );
      process.env.RIFT_MAX_LINE_BYTES = 'lots';
      expect(() => readJsonl(f)).toThrow(/RIFT_MAX_LINE_BYTES: must be an integer/);
    } finally {
      if (old === undefined) delete process.env.RIFT_MAX_LINE_BYTES;
      else process.env.RIFT_MAX_LINE_BYTES = old;
    }
    expect(readJsonl(f).records).toHaveLength(1);
  });

  test('a 100 MB line stops at the default limit (no heap blow-up); endless input without newlines stops too', () => {
    const f = tmp('huge.jsonl');
    const fd = fs.openSync(f, 'w');
    const block = Buffer.alloc(1 << 20, 0x61);
    fs.writeSync(fd, '{"id":"a","problem":"');
    for (let i = 0; i < 100; i++) fs.writeSync(fd, block);
    fs.writeSync(fd, '","answer":"1"}\n');
    fs.closeSync(fd);
    const t0 = Date.now();
    expect(() => readProblems(f)).toThrow(`${f}:1: line is longer than ${DEFAULT_MAX_LINE_BYTES} bytes`);
    expect(Date.now() - t0).toBeLessThan(5000);
    fs.rmSync(f);
    if (fs.existsSync('/dev/zero'))
      expect(() => readJsonl('/dev/zero', { maxLineBytes: 1 << 20 })).toThrow(
        '/dev/zero:1: line is longer than 1048576 bytes',
      );
  });

  test('a directory given as a file is an error naming it', () => {
    expect(() => readJsonl(dir)).toThrow(`${dir}: is a directory`);
    expect(() => readFileBounded(dir)).toThrow(`${dir}: is a directory`);
  });

  test('whole-file JSON reads: size limit, endless input and bad JSON name the file', () => {
    const f = tmp('big.json', JSON.stringify({ a: 'x'.repeat(1000) }));
    expect(readJsonFile(f)).toEqual({ a: 'x'.repeat(1000) });
    expect(() => readJsonFile(f, 500)).toThrow(RangeError);
    expect(() => readJsonFile(f, 500)).toThrow(`${f}: larger than 500 bytes`);
    if (fs.existsSync('/dev/zero'))
      expect(() => readFileBounded('/dev/zero', 1 << 20)).toThrow('/dev/zero: larger than 1048576 bytes');
    const g = tmp('cut.json', '{"a": [1, 2');
    expect(() => readJsonFile(g)).toThrow(SyntaxError);
    expect(() => readJsonFile(g)).toThrow(`${g}: not valid JSON`);
  });
});

describe('problems files', () => {
  const line = (o: unknown) => JSON.stringify(o);
  const good = { id: 'p1', problem: '1+1=?', answer: '2' };

  test('round trip', () => {
    const f = tmp('p.jsonl');
    const ps = generateProblems({ count: 20, seed: 1 });
    writeProblems(f, ps);
    expect(readProblems(f)).toEqual(ps);
    const g = tmp('extra.jsonl', line({ ...good, source: 'x' }) + '\n');
    expect(readProblems(g)).toEqual([good]);
  });

  test.each([
    ['bad JSON', '{"id":"p2",', SyntaxError, ':2: '],
    ['not an object', '[1,2]', TypeError, ':2: expected a JSON object, got array'],
    ['missing field', line({ id: 'p2', problem: 'x' }), TypeError, ':2: missing field "answer"'],
    ['missing id', line({ problem: 'x', answer: '1' }), TypeError, ':2: missing field "id"'],
    [
      'wrong type',
      line({ id: 'p2', problem: 'x', answer: 3 }),
      TypeError,
      ':2: field "answer" must be a string, got number',
    ],
    ['wrong id type', line({ id: 2, problem: 'x', answer: '3' }), TypeError, ':2: field "id" must be a string'],
    ['empty id', line({ id: ' ', problem: 'x', answer: '3' }), RangeError, ':2: field "id" must be a non-empty string'],
    ['bad solution', line({ id: 'p2', problem: 'x', answer: '3', solution: 4 }), TypeError, ':2: field "solution"'],
    ['duplicate id', line(good), RangeError, ':2: duplicate id "p1" (first on line 1)'],
  ] as const)('%s → %p naming file:line', (_name, second, cls, msg) => {
    const f = tmp(
      `bad-${_name.replace(/ /g, '-')}.jsonl`,
      `${line(good)}\n${second}\n${line({ ...good, id: 'p9' })}\n`,
    );
    expect(() => readProblems(f)).toThrow(cls as unknown as ErrorConstructor);
    expect(() => readProblems(f)).toThrow(`${f}${msg}`);
  });
});
