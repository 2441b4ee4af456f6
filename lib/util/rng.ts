// The seeded 32-bit generator the library shuffles, initialises and generates with: mulberry32 (one state word,
// period 2^32; fine for shuffles and test data, not for cryptography). Sampling uses xoshiro128** instead
// (engine/sampler.ts: one stream per (prompt, sample), with a longer period).

/** The next 32 random bits of mulberry32 and the advanced state, as unsigned integers. */
function mulberry32Step(state: number): [bits: number, state: number] {
  const s = (state + 0x6d2b79f5) >>> 0;
  let t = Math.imul(s ^ (s >>> 15), s | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [(t ^ (t >>> 14)) >>> 0, s];
}

/** mulberry32 seeded with `seed` (taken modulo 2^32): uniform floats k / 2^32 in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    const [bits, next] = mulberry32Step(s);
    s = next;
    return bits / 4294967296;
  };
}

/** A seed mixed from several integer keys (e.g. (seed, epoch)): nearby keys give unrelated streams. */
export function mixSeed(seed: number, key: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(key + 1, 0x85ebca6b)) >>> 0;
}
