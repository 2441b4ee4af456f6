// Depth growth of a trained base model: the hard preset (lib/demo/base-model.ts) starts from models/tiny-base, which
// already does the 2–4 step arithmetic of difficulty 2, with `factor`× its layers. Source layer i becomes layer
// i·factor; the layers between are new (random, std 0.02) with their output projections (self_attn.o_proj,
// mlp.down_proj) at zero, so each new layer starts as the identity on the residual stream and the grown model computes
// exactly the source model's function before training. Embeddings and the final norm are the source's.
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../engine/model';
import { readSafetensors } from '../engine/safetensors';
import { checkInteger } from '../util/validate';

/** The grown model's config.json object: the source's with `factor`× the layers. */
export function grownConfig(srcDir: string, factor: number): Record<string, unknown> {
  const f = checkInteger('factor', factor, 1, 16);
  const cfg = JSON.parse(fs.readFileSync(path.join(srcDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const layers = Number(cfg.num_hidden_layers);
  if (!Number.isInteger(layers) || layers < 1)
    throw new RangeError(`growFrom: ${srcDir}/config.json has no valid num_hidden_layers`);
  return { ...cfg, num_hidden_layers: layers * f, torch_dtype: 'float32' };
}

/** A model of grownConfig(srcDir, factor) holding the source's weights as described at the top of this file. */
export function growDepth(srcDir: string, factor: number, seed: number): Model {
  const config = grownConfig(srcDir, factor);
  const src = readSafetensors(path.join(srcDir, 'model.safetensors')).tensors;
  const model = Model.fromConfig(config, { seed, std: 0.02 });
  model.editParams((tensor) => {
    for (const t of model.tensorTable()) {
      const v = tensor(t.name)!;
      const m = /^model\.layers\.(\d+)\.(.+)$/.exec(t.name);
      let from: string | undefined = t.name;
      if (m) {
        const j = Number(m[1]);
        from = j % factor === 0 ? `model.layers.${j / factor}.${m[2]}` : undefined;
        if (from === undefined && (m[2] === 'self_attn.o_proj.weight' || m[2] === 'mlp.down_proj.weight')) v.fill(0);
      }
      if (from === undefined) continue;
      const s = src.get(from);
      if (!s) throw new RangeError(`growFrom: ${srcDir} has no tensor "${from}"`);
      if (s.data.length !== v.length)
        throw new RangeError(`growFrom: tensor "${from}" has ${s.data.length} values, the grown model ${v.length}`);
      v.set(s.data);
    }
  });
  return model;
}
