// The committed base model (models/tiny-base, made by scripts/make-base-model.js): it loads, its tokenizer matches
// the prompt format of lib/demo/base-model.ts, and it samples well-formed responses; greedy decoding solves some but
// not all of 20 fixed held-out problems (deterministic: greedy decoding of a fixed checkpoint).
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { Tokenizer } from '../lib/engine/tokenizer';
import { generate } from '../lib/engine/sampler';
import { verify } from '../lib/reward/verifier';
import {
  BASE_CHARS,
  BASE_MAX_NEW_TOKENS,
  BASE_SPECIALS,
  baseModelProblems,
  EOS_TOKEN,
  promptFor,
  responseFor,
} from '../lib/demo/base-model';

const DIR = path.join(__dirname, '..', 'models', 'tiny-base');

describe('models/tiny-base', () => {
  const model = Model.load(DIR);
  const tok = Tokenizer.load(DIR);
  const heldOut = baseModelProblems().test;

  test('files, config and tokenizer', () => {
    for (const f of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'generation_config.json',
      'README.md',
    ])
      expect(fs.existsSync(path.join(DIR, f))).toBe(true);
    expect(fs.statSync(path.join(DIR, 'model.safetensors')).size).toBeLessThan(5e6);
    expect(model.config.model_type).toBe('qwen2');
    expect(model.config.tie_word_embeddings).toBe(true);
    expect(model.config.vocab_size).toBe(BASE_SPECIALS.length + BASE_CHARS.length);
    expect(tok.vocabSize).toBe(model.config.vocab_size);
    expect(tok.eosTokenIds).toEqual([tok.tokenToId(EOS_TOKEN)]);
    expect(tok.padTokenId).toBe(0);
    const p = heldOut[0];
    const text = promptFor(p) + responseFor(p);
    const ids = tok.encode(text);
    expect(ids.length).toBe(p.problem.length + 1 + p.solution!.length + 1); // one token per character, eos one token
    expect(tok.decode(ids)).toBe(text);
    expect(promptFor({ problem: '7+5*3-4=?' })).toBe('7+5*3-4=?\n');
  });

  test('sampling on held-out problems gives well-formed responses', async () => {
    const problems = heldOut.slice(0, 4);
    const out = await generate(model, tok, problems.map(promptFor), {
      k: 4,
      temperature: 1,
      maxNewTokens: BASE_MAX_NEW_TOKENS,
      seed: 3,
    });
    expect(out).toHaveLength(4);
    const eos = tok.eosTokenIds[0];
    for (const o of out) {
      expect(o.samples).toHaveLength(4);
      for (const s of o.samples) {
        expect(s.ids.length).toBeGreaterThan(0);
        if (s.finishReason === 'stop') expect(s.ids[s.ids.length - 1]).toBe(eos);
        else expect(s.ids.length).toBe(BASE_MAX_NEW_TOKENS);
        expect(s.text).toBe(tok.decode(s.ids, { skipSpecialTokens: true }));
        for (const c of s.text) expect(BASE_CHARS).toContain(c);
        expect(Array.from(s.logprobs).every((x) => Number.isFinite(x) && x <= 0)).toBe(true);
      }
    }
    // a trained model ends most of its samples itself
    const stopped = out.flatMap((o) => o.samples).filter((s) => s.finishReason === 'stop').length;
    expect(stopped).toBeGreaterThanOrEqual(12);
  });

  test('greedy decoding solves some but not all of 20 fixed held-out problems', async () => {
    const problems = heldOut.slice(0, 20);
    const out = await generate(model, tok, problems.map(promptFor), {
      k: 1,
      temperature: 0,
      maxNewTokens: BASE_MAX_NEW_TOKENS,
    });
    const solved = out.filter(
      (o, i) => verify(o.samples[0].text, problems[i].answer, { symbolic: false }).correct,
    ).length;
    expect(solved).toBeGreaterThanOrEqual(1);
    expect(solved).toBeLessThan(20);
    // every greedy answer is a worked solution in the trained format
    for (const o of out) expect(o.samples[0].text).toMatch(/\\boxed\{/);
  });
});

test("makeBaseModel's dtype: 'fp32' | 'bf16' (the HF names are deprecated aliases); anything else is a typed error before any work", async () => {
  const { makeBaseModel } = await import('../lib/demo/base-model');
  await expect(makeBaseModel({ outDir: '/nonexistent/never-written', dtype: 'f16' as never })).rejects.toThrow(
    /^dtype: must be 'fp32' or 'bf16' \(or the deprecated 'float32', 'bfloat16'\)/,
  );
  await expect(makeBaseModel({ outDir: '/nonexistent/never-written', dtype: 16 as never })).rejects.toThrow(TypeError);
  expect(fs.existsSync('/nonexistent/never-written')).toBe(false);
});
