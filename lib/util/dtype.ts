// The one public spelling of a compute / storage dtype: 'fp32' | 'bf16' (a Model's precision, a DeviceTensor's dtype,
// the ops API's precision, Model.save's dtype). The HF names 'float32' / 'bfloat16' appear only where a file format
// requires them (config.json's torch_dtype); safetensors headers use 'F32' / 'BF16'. docs/design.md, vocabulary.
import { describe, rangeError, typeError } from './validate';

export const DTYPES = ['fp32', 'bf16'] as const;
export type Dtype = (typeof DTYPES)[number];

/**
 * Spellings accepted before the vocabulary was unified, each with the dtype it means: 'f32' (DeviceTensor, the ops
 * API's gemmDtype) and 'float32' / 'bfloat16' (Model.save, saveCheckpoint, writeSafetensors).
 * @deprecated use 'fp32' / 'bf16'.
 */
export type DeprecatedDtype = 'f32' | 'float32' | 'bfloat16';
const DEPRECATED: Record<DeprecatedDtype, Dtype> = { f32: 'fp32', float32: 'fp32', bfloat16: 'bf16' };

/** The HF / torch name of a dtype, as config.json's torch_dtype writes it. */
export function torchDtype(d: Dtype): 'float32' | 'bfloat16' {
  return d === 'fp32' ? 'float32' : 'bfloat16';
}

/**
 * Checks a dtype argument and returns its one spelling: 'fp32' | 'bf16', or one of `deprecated` (the spellings
 * this argument accepted before) mapped to it. TypeError for a non-string, RangeError for any other string.
 */
export function checkDtype(arg: string, v: unknown, deprecated: readonly DeprecatedDtype[] = []): Dtype {
  if (v === 'fp32' || v === 'bf16') return v;
  if (typeof v === 'string' && (deprecated as readonly string[]).includes(v)) return DEPRECATED[v as DeprecatedDtype];
  const what = `must be 'fp32' or 'bf16'${deprecated.length > 0 ? ` (or the deprecated ${deprecated.map((d) => `'${d}'`).join(', ')})` : ''}`;
  throw (typeof v === 'string' ? rangeError : typeError)(arg, `${what}, got ${describe(v)}`);
}
