// evaluate(): K samples per held-out problem through the sampler (the rollouts' per-problem streams), Mean@K /
// Pass@k from metrics.ts; the JSON writer.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeCharTokenizer, Tokenizer } from '../lib/engine/tokenizer';
import { evaluate, writeJsonAtomic, formatBytes } from '../lib/eval/evaluate';
import { passAtK } from '../lib/eval/metrics';
import { runRollouts } from '../lib/rollout/rollout';
import { FakeModel } from './helpers/fake-model';

const tok = new Tokenizer(makeCharTokenizer([...'0123456789+= ab'], ['<eos>'], { eos: '<eos>' }).tokenizer, {
  eos_token: '<eos>',
});
const model = new FakeModel(tok.vocabSize);
const problems = Array.from({ length: 5 }, (_, i) => ({ id: `q${i}`, problem: `${i}+${i}=`, answer: String(2 * i) }));
const score = (p: { answer: string }, text: string) => {
  const correct = text.includes(p.answer);
  return { reward: correct ? 1 : 0, correct, extracted: correct ? p.answer : null };
};
const params = { temperature: 1.2, maxNewTokens: 8, seed: 11 };

test('evaluate: per-problem results, Mean@K and Pass@k; same samples as a rollout run', async () => {
  const K = 8;
  const r = await evaluate({
    model,
    tokenizer: tok,
    problems,
    k: K,
    params,
    score,
    promptFor: (p) => p.problem,
    keepTexts: true,
  });
  expect(r).toMatchObject({
    k: K,
    problems: 5,
    samples: 40,
    params: { temperature: 1.2, topK: 0, topP: 1, maxNewTokens: 8, seed: 11 },
  });
  expect(Object.keys(r.passAtK)).toEqual(['1', '2', '4', '8']);
  const cs = r.perProblem.map((e) => e.c);
  expect(cs.some((c) => c > 0 && c < K)).toBe(true); // something to average
  for (const e of r.perProblem) {
    expect(e.c).toBe(e.correct.filter(Boolean).length);
    e.texts!.forEach((t, i) =>
      expect(
        score(
          problems.find((p) => p.id === e.problemId)!,
          t,
        ).correct,
      ).toBe(e.correct[i]),
    );
  }
  expect(r.meanAtK).toBeCloseTo(cs.reduce((a, c) => a + c / K, 0) / 5, 15);
  for (const k of [1, 2, 4, 8])
    expect(r.passAtK[String(k)]).toBeCloseTo(cs.reduce((a, c) => a + passAtK(K, c, k), 0) / 5, 15);
  expect(r.meanTokens).toBeCloseTo(r.perProblem.flatMap((e) => e.tokens).reduce((a, b) => a + b, 0) / 40, 12);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-eval-'));
  try {
    const ro = await runRollouts({
      model,
      tokenizer: tok,
      problems,
      k: K,
      params,
      score,
      promptFor: (p) => p.problem,
      file: path.join(dir, 'r.jsonl'),
    });
    expect(ro.records.map((x) => x.text)).toEqual(r.perProblem.flatMap((e) => e.texts!));
    writeJsonAtomic(path.join(dir, 'eval.json'), r);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'eval.json'), 'utf8'))).toEqual(r);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluate with continuous batching: the per-prompt results, in problem order; onProgress counts problems done', async () => {
  const K = 4;
  const base = {
    tokenizer: tok,
    problems,
    k: K,
    params,
    score,
    promptFor: (p: { problem: string }) => p.problem,
    keepTexts: true,
  };
  const ref = await evaluate({ ...base, model });
  const done: number[] = [];
  const r = await evaluate({
    ...base,
    model: new FakeModel(tok.vocabSize, undefined, { rows: true }),
    params: { ...params, maxBatchRows: 6 },
    onProgress: (p) => {
      done.push(p.done);
    },
  });
  expect(r).toEqual(ref);
  expect(done).toEqual([1, 2, 3, 4, 5]);
});

test('evaluate: ks, bad input', async () => {
  const base = {
    model,
    tokenizer: tok,
    problems: problems.slice(0, 2),
    k: 4,
    params,
    score,
    promptFor: (p: { problem: string }) => p.problem,
  };
  const r = await evaluate({ ...base, ks: [1, 3] });
  expect(Object.keys(r.passAtK)).toEqual(['1', '3']);
  expect(r.perProblem[0]).not.toHaveProperty('texts');
  await expect(evaluate({ ...base, ks: [5] })).rejects.toThrow(/^ks: k = 5/);
  await expect(evaluate({ ...base, problems: [] })).rejects.toThrow(/^problems: nothing to evaluate/);
  await expect(
    evaluate({ ...base, score: () => ({ reward: 0, correct: 'yes' as unknown as boolean }) }),
  ).rejects.toThrow(/^score: correct/);
});

test('formatBytes', () => {
  expect(formatBytes(512)).toBe('512 B');
  expect(formatBytes(1536)).toBe('1.50 KiB');
  expect(formatBytes(40 * 2 ** 20)).toBe('40.0 MiB');
  expect(formatBytes(3.25 * 2 ** 30)).toBe('3.25 GiB');
});
