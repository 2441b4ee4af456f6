// The committed hard-setting base model (models/hard-base, `node scripts/make-base-model.js --preset hard`): it loads,
// has the preset's shape and bf16 weights ≤ 40 MB, shares the tiny model's vocabulary and prompt format, its recorded
// held-out accuracy is inside the 20–50% target, and greedy decoding solves some but not all of 20 fixed held-out
// difficulty-4 problems (deterministic: greedy decoding of a fixed checkpoint). Measuring the recorded accuracy
// itself (256 problems × 8 samples) is too slow for CI; the README and metadata.json hold it.
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { Tokenizer } from '../lib/engine/tokenizer';
import { generate } from '../lib/engine/sampler';
import { SafetensorsFile } from '../lib/engine/safetensors';
import { shutdownVerifier, verify } from '../lib/reward/verifier';
import {
  BASE_CHARS,
  BASE_PRESETS,
  BASE_SPECIALS,
  baseModelProblems,
  EOS_TOKEN,
  HARD_MAX_NEW_TOKENS,
  promptFor,
  responseFor,
} from '../lib/demo/base-model';

const DIR = path.join(__dirname, '..', 'models', 'hard-base');
const P = BASE_PRESETS.hard;

afterAll(async () => {
  await shutdownVerifier();
});

describe('models/hard-base', () => {
  const model = Model.load(DIR);
  const tok = Tokenizer.load(DIR);
  const heldOut = baseModelProblems({ difficulty: P.difficulty }).test;
  afterAll(() => model.dispose());

  test('files, shape, bf16 weights, tokenizer and prompt format', () => {
    for (const f of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'generation_config.json',
      'prompt_format.json',
      'README.md',
      'metadata.json',
    ])
      expect(fs.existsSync(path.join(DIR, f))).toBe(true);
    const size = fs.statSync(path.join(DIR, 'model.safetensors')).size;
    expect(size).toBeLessThanOrEqual(40e6);
    const c = model.config;
    expect([c.hidden_size, c.num_hidden_layers, c.intermediate_size]).toEqual([P.hidden, P.layers, P.intermediate]);
    expect(model.numParams).toBeGreaterThan(1.5e6); // twice the layers of models/tiny-base
    expect(model.numParams).toBeLessThan(20e6);
    expect(size).toBeLessThan(2.1 * model.numParams); // 2 bytes per parameter (+ header)
    const st = SafetensorsFile.open(path.join(DIR, 'model.safetensors'));
    const dtypes = new Set(st.header.tensors.map((t) => t.dtype));
    st.close();
    expect([...dtypes]).toEqual(['BF16']);
    expect(c.vocab_size).toBe(BASE_SPECIALS.length + BASE_CHARS.length);
    expect(tok.vocabSize).toBe(c.vocab_size);
    expect(tok.eosTokenIds).toEqual([tok.tokenToId(EOS_TOKEN)]);
    const gen = JSON.parse(fs.readFileSync(path.join(DIR, 'generation_config.json'), 'utf8'));
    expect(gen.max_new_tokens).toBe(HARD_MAX_NEW_TOKENS);
    expect(JSON.parse(fs.readFileSync(path.join(DIR, 'prompt_format.json'), 'utf8'))).toEqual({
      format: 'plain',
      template: '{problem}\n',
    });
    const p = heldOut[0];
    const text = promptFor(p) + responseFor(p);
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(p.problem.length + 1 + p.solution!.length + 1 + 1).toBeLessThanOrEqual(Number(c.max_position_embeddings));
  });

  test('recorded held-out accuracy is inside the 20–50% target', () => {
    const meta = JSON.parse(fs.readFileSync(path.join(DIR, 'metadata.json'), 'utf8'));
    expect(meta.preset).toBe('hard');
    expect(meta.params).toBe(model.numParams);
    expect(meta.final.problems).toBe(256);
    expect(meta.final.meanAtK).toBeGreaterThanOrEqual(0.2);
    expect(meta.final.meanAtK).toBeLessThanOrEqual(0.5);
    expect(meta.final.passAtK).toBeGreaterThan(meta.final.meanAtK);
    expect(fs.readFileSync(path.join(DIR, 'README.md'), 'utf8')).toContain(`${(100 * meta.final.meanAtK).toFixed(1)}%`);
  });

  test('greedy decoding solves some but not all of 20 fixed held-out problems, in the trained format', async () => {
    const problems = heldOut.slice(0, 20);
    const out = await generate(model, tok, problems.map(promptFor), {
      k: 1,
      temperature: 0,
      maxNewTokens: HARD_MAX_NEW_TOKENS,
    });
    const solved = out.filter(
      (o, i) => verify(o.samples[0].text, problems[i].answer, { symbolic: false }).correct,
    ).length;
    expect(solved).toBeGreaterThanOrEqual(1);
    expect(solved).toBeLessThan(20);
    for (const o of out) expect(o.samples[0].text).toMatch(/^(\d+[+\-*/]\d+=\d+(\/\d+)?;){3,}/);
  });
});
