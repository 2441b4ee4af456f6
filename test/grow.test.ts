// Depth growth (lib/demo/grow.ts, the hard base model's init): the grown model computes exactly the source model's
// log-probs (new layers start as the identity), keeps the source's tensors at every factor-th layer, and bad
// factors / mismatched sources are typed errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { readSafetensors } from '../lib/engine/safetensors';
import { buildMicroBatch } from '../lib/train/batching';
import { baseModelConfig, writeBaseTokenizer } from '../lib/demo/base-model';
import { growDepth, grownConfig } from '../lib/demo/grow';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-grow-'));
  const m = Model.fromConfig(baseModelConfig({ hidden: 32, layers: 2, intermediate: 64 }), { seed: 3, std: 0.2 });
  m.save(path.join(dir, 'src'));
  writeBaseTokenizer(path.join(dir, 'src'));
  m.dispose();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the grown model has factor× the layers and the source function', () => {
  const srcDir = path.join(dir, 'src');
  const src = Model.load(srcDir);
  for (const factor of [2, 3]) {
    const g = growDepth(srcDir, factor, 7);
    expect(g.config.num_hidden_layers).toBe(2 * factor);
    expect(grownConfig(srcDir, factor).num_hidden_layers).toBe(2 * factor);
    const ex = [
      [
        {
          problemId: 'a',
          sampleIndex: 0,
          promptIds: Int32Array.from([3, 4, 5, 6]),
          responseIds: Int32Array.from([7, 8, 9, 2]),
          reward: 1,
        },
      ],
      [
        {
          problemId: 'b',
          sampleIndex: 0,
          promptIds: Int32Array.from([10, 11]),
          responseIds: Int32Array.from([12, 13, 14, 15, 2]),
          reward: 1,
        },
      ],
    ];
    const mb = buildMicroBatch(ex, { padId: 0 });
    const lp = (m: Model) =>
      Array.from(
        m.lossAndBackward({
          ids: mb.ids,
          B: mb.B,
          T: mb.T,
          targets: mb.targets,
          offsets: mb.offsets,
          method: 'logprob',
          backward: false,
        }).seqLogps,
      );
    const a = lp(src),
      b = lp(g);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i], 9);
    // a random (non-grown) model of the same shape differs: the check can fail
    const r = Model.fromConfig(grownConfig(srcDir, factor), { seed: 7, std: 0.2 });
    expect(Math.abs(lp(r)[0] - a[0])).toBeGreaterThan(1e-3);
    g.save(path.join(dir, `g${factor}`));
    const t = readSafetensors(path.join(dir, `g${factor}`, 'model.safetensors')).tensors;
    const s = readSafetensors(path.join(srcDir, 'model.safetensors')).tensors;
    expect(t.get(`model.layers.${factor}.mlp.up_proj.weight`)!.data).toEqual(
      s.get('model.layers.1.mlp.up_proj.weight')!.data,
    );
    expect(t.get('model.layers.1.self_attn.o_proj.weight')!.data.every((v) => v === 0)).toBe(true);
    expect(t.get('model.layers.1.mlp.down_proj.weight')!.data.every((v) => v === 0)).toBe(true);
    expect(t.get('model.layers.1.mlp.up_proj.weight')!.data.some((v) => v !== 0)).toBe(true);
    g.dispose();
    r.dispose();
  }
  src.dispose();
});

test('bad factors and sources are typed errors', () => {
  const srcDir = path.join(dir, 'src');
  expect(() => growDepth(srcDir, 0, 1)).toThrow(RangeError);
  expect(() => growDepth(srcDir, 1.5, 1)).toThrow(/factor/);
  expect(() => grownConfig(path.join(dir, 'missing'), 2)).toThrow();
  const bad = path.join(dir, 'bad');
  fs.mkdirSync(bad);
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ num_hidden_layers: 'x' }));
  expect(() => grownConfig(bad, 2)).toThrow(/num_hidden_layers/);
});
