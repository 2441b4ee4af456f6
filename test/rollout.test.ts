// Rollouts with the pure-TS fake model and a character tokenizer: resume after an interruption (a throw from
// onProgress, a torn last line) reproduces an unbroken run's file byte for byte; samples depend on the problem id,
// not its position; statistics on a hand-made set.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeCharTokenizer, Tokenizer } from '../lib/engine/tokenizer';
import { runRollouts, rolloutStats, problemKey, type RolloutOptions, type ScoreResult } from '../lib/rollout/rollout';
import { readRollouts, openRollouts, type RolloutRecord } from '../lib/rollout/store';
import { promptHash, type PromptSpec } from '../lib/data/prompt-spec';
import { FakeModel } from './helpers/fake-model';

const CHARS = [...'0123456789+= abc'];
const tok = new Tokenizer(makeCharTokenizer(CHARS, ['<eos>'], { eos: '<eos>' }).tokenizer, { eos_token: '<eos>' });
const model = new FakeModel(tok.vocabSize);

interface P {
  id: string;
  problem: string;
  answer: string;
}
const problems: P[] = Array.from({ length: 6 }, (_, i) => ({
  id: `p${i}`,
  problem: `${i}+${i + 1}=`,
  answer: String(2 * i + 1),
}));
const K = 4;
const score = (p: P, text: string): ScoreResult => {
  const correct = text.includes(p.answer.slice(-1)); // about half the samples hold the answer's last digit
  return { reward: correct ? 1 : -0.25, correct, extracted: text.replace(/\D/g, '').slice(0, 3) || null };
};

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-rollout-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
const opts = (over: Partial<RolloutOptions<P>> = {}): RolloutOptions<P> => ({
  model,
  tokenizer: tok,
  problems,
  k: K,
  params: { temperature: 1, topK: 0, topP: 0.95, maxNewTokens: 10, seed: 3 },
  file: path.join(dir, `r${n++}.jsonl`),
  score,
  promptFor: (p) => p.problem,
  ...over,
});

let reference: { file: string; text: string; records: RolloutRecord[] };
beforeAll(async () => {
  const o = opts();
  const r = await runRollouts(o);
  reference = { file: o.file, text: fs.readFileSync(o.file, 'utf8'), records: r.records };
  expect(r.generated).toBe(problems.length * K);
  expect(r.reused).toBe(0);
});

test('an unbroken run writes one well-formed record per (problem, sample)', () => {
  const lines = reference.text.trimEnd().split('\n');
  expect(lines).toHaveLength(problems.length * K);
  expect(readRollouts(reference.file)).toEqual(reference.records);
  const first = reference.records[0];
  expect(Object.keys(first)).toEqual([
    'problemId',
    'sampleIndex',
    'text',
    'tokens',
    'reward',
    'correct',
    'extracted',
    'finishReason',
    'params',
    'promptTokens',
    'promptHash',
  ]);
  expect(first.params).toEqual({ temperature: 1, topK: 0, topP: 0.95, maxNewTokens: 10, seed: 3 });
  reference.records.forEach((r, i) => {
    expect(r.problemId).toBe(problems[Math.floor(i / K)].id);
    const promptIds = tok.encode(problems[Math.floor(i / K)].problem);
    expect(r.promptTokens).toBe(promptIds.length);
    expect(r.promptHash).toBe(promptHash(promptIds));
    expect(r.sampleIndex).toBe(i % K);
    expect(r.tokens).toBeGreaterThan(0);
    expect(r.tokens).toBeLessThanOrEqual(10);
    expect(tok.encode(r.text, { addSpecialTokens: false }).length).toBe(
      r.finishReason === 'stop' ? r.tokens - 1 : r.tokens,
    );
    expect(score(problems[Math.floor(i / K)], r.text)).toEqual({
      reward: r.reward,
      correct: r.correct,
      extracted: r.extracted,
    });
  });
  // the samples differ (the streams are independent) and the set is mixed, so stats below mean something
  expect(new Set(reference.records.map((r) => r.text)).size).toBeGreaterThan(problems.length * K - 3);
  const s = rolloutStats(reference.records);
  expect(s.positives).toBeGreaterThan(0);
  expect(s.negatives).toBeGreaterThan(0);
});

test('a run stopped after 2 problems (throw from onProgress) resumes to the same file', async () => {
  const o = opts();
  let calls = 0;
  await expect(
    runRollouts({
      ...o,
      onProgress: () => {
        if (++calls === 2) throw new Error('killed');
      },
    }),
  ).rejects.toThrow('killed');
  expect(fs.readFileSync(o.file, 'utf8').trimEnd().split('\n')).toHaveLength(2 * K);
  const seen: string[] = [];
  const r = await runRollouts({
    ...o,
    onProgress: (p) => {
      seen.push(`${p.problemId}:${p.records.length}`);
    },
  });
  expect(seen).toEqual(['p2:4', 'p3:4', 'p4:4', 'p5:4']);
  expect(r).toMatchObject({ generated: 4 * K, reused: 2 * K, droppedBytes: 0 });
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  expect(r.records).toEqual(reference.records);
});

test('a torn last line is cut off and the problem it belonged to is completed', async () => {
  const o = opts();
  const lines = reference.text.split('\n');
  const keep = lines.slice(0, 9).join('\n') + '\n'; // problems 0, 1 and sample 0 of problem 2
  const torn = lines[9].slice(0, Math.floor(lines[9].length / 2));
  fs.writeFileSync(o.file, keep + torn);
  const r = await runRollouts(o);
  expect(r).toMatchObject({ generated: 3 + 3 * K, reused: 9, droppedBytes: Buffer.byteLength(torn) });
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
});

test('a complete run reruns to nothing; a complete last line without its newline is a record', async () => {
  const o = opts();
  fs.writeFileSync(o.file, reference.text);
  const r = await runRollouts(o);
  expect(r).toMatchObject({ generated: 0, reused: problems.length * K });
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  // last record without '\n' (cut after problem 3): kept, and the resumed run still matches
  const cut = reference.text
    .split('\n')
    .slice(0, 4 * K)
    .join('\n');
  fs.writeFileSync(o.file, cut);
  expect(openRollouts(o.file)).toEqual({ records: reference.records.slice(0, 4 * K), droppedBytes: 0, duplicates: 0 });
  const r2 = await runRollouts(o);
  expect(r2).toMatchObject({ generated: 2 * K, reused: 4 * K });
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  expect(openRollouts(path.join(dir, 'missing.jsonl'))).toEqual({ records: [], droppedBytes: 0, duplicates: 0 });
});

describe('continuous batching (a model with decodeRows)', () => {
  // p0's samples never stop (10 tokens); the others stop after 2 tokens: with 8 rows, p1..p5 finish before p0.
  const EOS = tok.eosTokenIds[0];
  const p0 = tok.encode(problems[0].problem);
  const base = new FakeModel(tok.vocabSize).logitsOf;
  const logitsOf = (h: readonly number[]) => {
    const z = base(h);
    const first = p0.every((t, i) => h[i] === t);
    z[EOS] = first ? -30 : h.length >= 6 ? 30 : -30;
    return z;
  };

  test('records are appended in problem order (problems finish out of order); the same file as one problem at a time', async () => {
    const o = opts({ model: new FakeModel(tok.vocabSize, logitsOf) });
    await runRollouts(o);
    const want = fs.readFileSync(o.file, 'utf8');
    const batched = new FakeModel(tok.vocabSize, logitsOf, { rows: true });
    const seen: string[] = [];
    const o2 = opts({
      model: batched,
      params: { ...o.params, maxBatchRows: 8 },
      onProgress: (p) => {
        seen.push(p.problemId);
      },
    });
    const r = await runRollouts(o2);
    expect(fs.readFileSync(o2.file, 'utf8')).toBe(want);
    expect(seen).toEqual(problems.map((p) => p.id));
    expect(r.generated).toBe(problems.length * K);
    // p0's rows (slots 0..3) ran in each of its 9 decodes while the others came and went in slots 4..7
    for (const rows of batched.rowCalls.slice(0, 9)) expect(rows.slice(0, 4)).toEqual([0, 1, 2, 3]);
    expect(new Set(batched.rowCalls.flat())).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7]));
    // killed after problem 1's records (p2..p5 already finished, not yet written): the resumed run gives the same file
    const o3 = opts({
      model: new FakeModel(tok.vocabSize, logitsOf, { rows: true }),
      params: { ...o.params, maxBatchRows: 8 },
    });
    let calls = 0;
    await expect(
      runRollouts({
        ...o3,
        onProgress: () => {
          if (++calls === 2) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(fs.readFileSync(o3.file, 'utf8').trimEnd().split('\n')).toHaveLength(2 * K);
    const again = await runRollouts(o3);
    expect(again).toMatchObject({ generated: 4 * K, reused: 2 * K });
    expect(fs.readFileSync(o3.file, 'utf8')).toBe(want);
  });
});

test('samples depend on the problem id, not on its position or the other problems', async () => {
  const o = opts({ problems: [problems[4], problems[1]] });
  const r = await runRollouts(o);
  const byKey = new Map(reference.records.map((x) => [`${x.problemId}/${x.sampleIndex}`, x]));
  for (const x of r.records) expect(x).toEqual(byKey.get(`${x.problemId}/${x.sampleIndex}`));
  expect(problemKey('p1')).not.toBe(problemKey('p2'));
  expect(Number.isSafeInteger(problemKey('a'.repeat(1000)))).toBe(true);
});

test('more samples later: K = 6 on a K = 4 file adds samples 4 and 5 only; other records are left alone', async () => {
  const o = opts();
  const foreign = { ...reference.records[0], problemId: 'other' };
  fs.writeFileSync(o.file, reference.text + JSON.stringify(foreign) + '\n');
  const r = await runRollouts({ ...o, k: 6 });
  expect(r).toMatchObject({ generated: 2 * problems.length, reused: K * problems.length });
  const all = readRollouts(o.file);
  expect(all.slice(0, K * problems.length + 1)).toEqual([...reference.records, foreign]);
  expect(r.records.filter((x) => x.sampleIndex < K)).toEqual(reference.records);
  // and the first 4 samples of a K = 6 run are those of the K = 4 run (per-sample streams)
  const fresh = await runRollouts({ ...opts(), k: 6, problems: problems.slice(0, 1) });
  expect(fresh.records.slice(0, K)).toEqual(reference.records.slice(0, K));
});

test('records made with other sampling parameters are an error', async () => {
  const o = opts();
  fs.writeFileSync(o.file, reference.text);
  await expect(runRollouts({ ...o, params: { ...o.params, temperature: 0.7 } })).rejects.toThrow(
    /was sampled with .* use another file/,
  );
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
});

test('a resumed store must have the same prompt format and the same prompt tokens', async () => {
  const spec: PromptSpec = { format: 'plain', template: '{problem}' };
  const o = opts({ promptFormat: spec });
  const r = await runRollouts(o);
  expect(r.records.every((x) => JSON.stringify(x.promptFormat) === JSON.stringify(spec))).toBe(true);
  const text = fs.readFileSync(o.file, 'utf8');
  const more = problems.map((p) => ({ ...p }));
  // another recorded format, or none (a store written before formats were recorded)
  await expect(
    runRollouts({ ...o, problems: more, k: K + 1, promptFormat: { format: 'plain', template: '{problem}=' } }),
  ).rejects.toThrow(
    /record 1 \(problem "p0", sample 0\) was sampled with the prompt format \{"format":"plain","template":"\{problem\}"\}, this run uses .*use another file$/,
  );
  await expect(runRollouts({ ...o, problems: more, k: K + 1, promptFormat: undefined })).rejects.toThrow(
    /prompt format .* this run uses none; use another file$/,
  );
  // the same format, but a problem's text changed: its records were drawn after other prompt tokens
  more[2].problem = '2+3=5';
  await expect(runRollouts({ ...o, problems: more, k: K + 1 })).rejects.toThrow(
    /record 9 \(problem "p2", sample 0\) was sampled after another prompt \(4 tokens, hash [0-9a-f]{16}\) than this run builds \(5 tokens, hash [0-9a-f]{16}\).*use another file$/,
  );
  expect(fs.readFileSync(o.file, 'utf8')).toBe(text);
  // unchanged: K + 1 resumes, one new sample per problem
  const again = await runRollouts({ ...o, k: K + 1 });
  expect(again.generated).toBe(problems.length);
});

test('a prompt that cannot be built leaves the store untouched', async () => {
  const o = opts();
  fs.writeFileSync(o.file, reference.text + '{"problemId":"p0","sampl'); // a torn tail: only repaired once sampling starts
  const before = fs.readFileSync(o.file, 'utf8');
  await expect(runRollouts({ ...o, promptFor: (p) => (p.id === 'p3' ? '' : p.problem) })).rejects.toThrow(
    /^promptFor: the prompt of problem "p3" has no tokens/,
  );
  await expect(
    runRollouts({
      ...o,
      promptFor: (p) => {
        if (p.id === 'p5') throw new Error('template broke');
        return p.problem;
      },
    }),
  ).rejects.toThrow(/template broke/);
  await expect(runRollouts({ ...o, promptFormat: { format: 'plain', template: 'no placeholder' } })).rejects.toThrow(
    /^promptFormat: template: .* has no \{problem\} placeholder/,
  );
  expect(fs.readFileSync(o.file, 'utf8')).toBe(before);
});

test('bad arguments', async () => {
  await expect(runRollouts(opts({ k: 0 }))).rejects.toThrow(/^k: /);
  await expect(runRollouts(opts({ problems: [problems[0], problems[0]] }))).rejects.toThrow(/appears twice/);
  await expect(runRollouts(opts({ score: () => ({ reward: NaN, correct: true }) }))).rejects.toThrow(/^score: reward/);
  await expect(runRollouts(opts({ params: { maxNewTokens: 0 } }))).rejects.toThrow(/maxNewTokens/);
  const o = opts();
  fs.writeFileSync(o.file, '{"problemId":"p0"}\n');
  await expect(runRollouts(o)).rejects.toThrow(/r\d+\.jsonl:1: sampleIndex must be/);
});

test('timestamps are opt-in', async () => {
  const r = await runRollouts(opts({ problems: problems.slice(0, 1), timestamps: true }));
  expect(r.records.every((x) => typeof x.ts === 'string' && !Number.isNaN(Date.parse(x.ts)))).toBe(true);
  expect(reference.records.every((x) => x.ts === undefined)).toBe(true);
});

test('rolloutStats on a hand-made set', () => {
  const rec = (problemId: string, correct: boolean, reward: number) => ({ problemId, correct, reward });
  const s = rolloutStats([
    rec('a', true, 1),
    rec('a', false, -0.5),
    rec('a', true, 1), // mixed
    rec('b', true, 1),
    rec('b', true, 1), // all correct
    rec('c', false, -0.5),
    rec('c', false, -0.5), // all wrong
    rec('d', false, 0),
    rec('d', true, 2), // mixed
  ]);
  expect(s).toEqual({
    problems: 4,
    samples: 9,
    positives: 5,
    negatives: 4,
    correct: 5,
    mixedRate: 0.5,
    allCorrect: 1,
    allWrong: 1,
    meanReward: 4.5 / 9,
  });
  expect(rolloutStats([])).toEqual({
    problems: 0,
    samples: 0,
    positives: 0,
    negatives: 0,
    correct: 0,
    mixedRate: 0,
    allCorrect: 0,
    allWrong: 0,
    meanReward: 0,
  });
});

test('positives and negatives follow the reward sign (a custom reward), the verifier is counted apart', () => {
  // a reward module that pays for effort: wrong answers get +0.5, one right answer is penalised for its length
  const s = rolloutStats([
    { problemId: 'a', correct: false, reward: 0.5 },
    { problemId: 'a', correct: true, reward: -1 },
    { problemId: 'b', correct: false, reward: 0.5 },
    { problemId: 'b', correct: false, reward: 0.25 },
  ]);
  expect(s).toMatchObject({ positives: 3, negatives: 1, correct: 1, mixedRate: 0.5, allCorrect: 0, allWrong: 1 });
});

describe('repeated (problem, sample) records (two writers appended to one file)', () => {
  test('identical repeats are read once, with one warning; a resumed run generates nothing', async () => {
    const f = path.join(dir, 'twice.jsonl');
    fs.writeFileSync(f, reference.text + reference.text);
    const warnings: string[] = [];
    expect(readRollouts(f, { onWarning: (m) => warnings.push(m) })).toEqual(reference.records);
    expect(warnings).toEqual([
      `${f}: ${problems.length * K} repeated (problem, sample) records skipped (identical copies: two runs appended the same samples)`,
    ]);
    expect(readRollouts(f)).toHaveLength(problems.length * K); // no callback: still once each
    const r = await runRollouts(opts({ file: f, onWarning: (m) => warnings.push(m) }));
    expect(r).toMatchObject({ generated: 0, reused: problems.length * K, duplicates: problems.length * K });
    expect(r.stats.samples).toBe(problems.length * K);
    expect(warnings).toHaveLength(2);
  });

  test('a repeat with other contents is a RangeError naming both lines', () => {
    const f = path.join(dir, 'conflict.jsonl');
    const lines = reference.text.trimEnd().split('\n');
    const other = JSON.stringify({ ...JSON.parse(lines[2]), text: 'something else' });
    fs.writeFileSync(f, [...lines, other].join('\n') + '\n');
    expect(() => readRollouts(f)).toThrow(RangeError);
    expect(() => readRollouts(f)).toThrow(
      `${f}:${lines.length + 1}: problem "p0" sample 2 is already on line 3 with other contents`,
    );
    expect(() => openRollouts(f)).toThrow(/is already on line 3/);
  });
});
