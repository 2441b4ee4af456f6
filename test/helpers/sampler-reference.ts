// The TypeScript sampler: the specification that sampleToken()'s native twin (native/cpu/sampler.cc) is tested
// against, drawing from lib/engine/sampler.ts's float64 sampling distribution.
import {
  checkSamplingParams,
  fillSamplingDistribution,
  Rng,
  rowStats,
  SampledToken,
  SamplerScratch,
  SamplingParams,
} from '../../lib/engine/sampler';

/**
 * The TypeScript sampler: the specification sampleToken()'s native twin is tested against (same tokens, log-probs
 * within float64 rounding). Same arguments and results as sampleToken().
 */
export function sampleTokenReference(
  logits: Float32Array,
  params: SamplingParams,
  rng: Rng,
  scratch?: SamplerScratch,
): SampledToken {
  const p = checkSamplingParams(params);
  const V = logits.length;
  const { argmax, lse } = rowStats(logits);
  if (p.temperature === 0) return { token: argmax, logprob: logits[argmax] - lse, samplingLogprob: 0 };
  if (scratch && scratch.vocab !== V) throw new RangeError(`scratch: made for V = ${scratch.vocab}, logits have ${V}`);
  const sc = scratch ?? new SamplerScratch(V);
  const total = fillSamplingDistribution(logits, p, logits[argmax], sc);
  const prob = sc.prob;

  // draw: walk the kept tokens in id order
  const u = rng.next() * total;
  let acc = 0,
    token = -1,
    last = -1;
  for (let v = 0; v < V; v++) {
    if (prob[v] === 0) continue;
    last = v;
    acc += prob[v];
    if (u < acc) {
      token = v;
      break;
    }
  }
  if (token < 0) token = last; // u rounded up to `total`
  return { token, logprob: logits[token] - lse, samplingLogprob: Math.log(prob[token] / total) };
}
