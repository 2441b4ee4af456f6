// The experiment's memory comparison: RIFT vs DPO with a held reference model, one training step, at
//   equal sequences  RIFT B samples vs DPO B/2 pairs (B sequences)       — what a fixed GPU batch holds
//   equal examples   RIFT B samples vs DPO B pairs (2B sequences)         — the same number of training examples
// for the two weight settings: fp32 master weights + AdamW (the CPU engine; fp32 GEMMs and activations) and the bf16
// setting a GPU user runs (CUDA precision bf16: fp32 master + AdamW plus the weights' bf16 copy, bf16 activations).
// Predicted for Qwen2.5-Math-1.5B/7B shapes (lib/profile/memory.ts predictMemory) and measured on the shapes that
// fit here (the base model's config, CPU, fp32: measureMemory, compared with its prediction).
import { DecoderConfig } from '../engine/checkpoint';
import { measureMemory, predictMemory, QWEN25_MATH_1_5B, QWEN25_MATH_7B, type MemoryBytes } from '../profile/memory';

export type WeightSetting = 'fp32' | 'bf16';
export const WEIGHT_SETTINGS: Record<
  WeightSetting,
  { label: string; device: 'cpu' | 'cuda'; precision: 'fp32' | 'bf16' }
> = {
  fp32: { label: 'fp32 master weights + AdamW (fp32 compute)', device: 'cpu', precision: 'fp32' },
  bf16: { label: 'bf16 weights (CUDA bf16: + bf16 weight copy, bf16 activations)', device: 'cuda', precision: 'bf16' },
};

export interface MemoryComparison {
  model: string;
  setting: WeightSetting;
  basis: 'equal sequences' | 'equal examples';
  T: number;
  riftB: number;
  dpoB: number;
  rift: MemoryBytes;
  dpo: MemoryBytes;
  /** rift.total / dpo.total. */
  ratio: number;
  source: 'predicted' | 'measured';
  /** measured rows: whether every predicted category equals the measurement. */
  matchesPrediction?: boolean;
}

function pair(
  model: string,
  config: DecoderConfig | Record<string, unknown>,
  setting: WeightSetting,
  B: number,
  T: number,
): MemoryComparison[] {
  const s = WEIGHT_SETTINGS[setting];
  const o = { T, device: s.device, precision: s.precision };
  const rift = predictMemory(config, { method: 'rift', B, ...o }).bytes;
  return (
    [
      ['equal sequences', B],
      ['equal examples', 2 * B],
    ] as const
  ).map(([basis, dpoB]) => {
    const dpo = predictMemory(config, { method: 'dpo-held', B: dpoB, ...o }).bytes;
    return {
      model,
      setting,
      basis,
      T,
      riftB: B,
      dpoB,
      rift,
      dpo,
      ratio: rift.total / dpo.total,
      source: 'predicted' as const,
    };
  });
}

/** Predictions for the paper's models at B sequences × T tokens (default 8 × 1024), both weight settings. */
export function predictedComparisons(B = 8, T = 1024): MemoryComparison[] {
  const out: MemoryComparison[] = [];
  for (const [name, cfg] of [
    ['Qwen2.5-Math-1.5B', QWEN25_MATH_1_5B],
    ['Qwen2.5-Math-7B', QWEN25_MATH_7B],
  ] as const)
    for (const setting of ['fp32', 'bf16'] as const) out.push(...pair(name, cfg, setting, B, T));
  return out;
}

/** Measured on `config` here (CPU, fp32) at B × T, with the prediction for the same shapes alongside. */
export async function measuredComparisons(
  name: string,
  config: DecoderConfig | Record<string, unknown>,
  B: number,
  T: number,
): Promise<MemoryComparison[]> {
  const rift = await measureMemory({ config, method: 'rift', B, T });
  const out: MemoryComparison[] = [];
  for (const [basis, dpoB] of [
    ['equal sequences', B],
    ['equal examples', 2 * B],
  ] as const) {
    const dpo = await measureMemory({ config, method: 'dpo-held', B: dpoB, T });
    const pr = predictMemory(config, { method: 'rift', B, T, targetRows: rift.targetRows }).bytes;
    const pd = predictMemory(config, { method: 'dpo-held', B: dpoB, T, targetRows: dpo.targetRows }).bytes;
    const same = (a: MemoryBytes, b: MemoryBytes) =>
      (['params', 'grads', 'optimizer', 'activations', 'logitsChunk', 'reference'] as const).every(
        (k) => a[k] === b[k],
      );
    out.push({
      model: name,
      setting: 'fp32',
      basis,
      T,
      riftB: B,
      dpoB,
      rift: rift.bytes,
      dpo: dpo.bytes,
      ratio: rift.bytes.total / dpo.bytes.total,
      source: 'measured',
      matchesPrediction: same(rift.bytes, pr) && same(dpo.bytes, pd),
    });
  }
  return out;
}
