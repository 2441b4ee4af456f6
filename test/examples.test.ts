// The embedding examples run as written (ts-jest also type-checks them): examples/custom-loop.ts (generate →
// verify → packSamples → lossAndBackward over micro-batches → step, on the embedded tiny model) and
// examples/tfjs-rift.ts (a tfjs model trained with riftLoss). A few steps each.
import * as tf from '@tensorflow/tfjs-core';
import { customLoop } from '../examples/custom-loop';
import { tfjsRift } from '../examples/tfjs-rift';

tf.env().set('IS_TEST', true); // no "install tfjs-node" banner

test("custom-loop: every step accumulates several micro-batches and its update lowers the step's RIFT loss", async () => {
  const logs = await customLoop({ steps: 2, problemsPerStep: 4, k: 4, tokenBudget: 256 });
  expect(logs.length).toBe(2);
  for (const s of logs) {
    expect(s.samples).toBe(16);
    expect(s.microBatches).toBeGreaterThanOrEqual(2);
    expect(s.correct).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(s.loss)).toBe(true);
    expect(s.gradNorm).toBeGreaterThan(0);
    expect(s.lossAfter).toBeLessThan(s.loss);
  }
});

test('tfjs-rift: the RIFT loss falls and the model comes to prefer the correct solutions', async () => {
  const r = await tfjsRift({ steps: 25 });
  expect(r.losses.length).toBe(25);
  expect(r.positives).toBe(r.samples / 2);
  expect(r.losses.every(Number.isFinite)).toBe(true);
  expect(r.losses[24]).toBeLessThan(0.6 * r.losses[0]);
  expect(r.after.preferred).toBeGreaterThan(r.before.preferred);
  expect(r.after.preferred).toBeGreaterThanOrEqual(0.9 * r.after.problems);
  expect(r.after.correct).toBeGreaterThan(r.before.correct);
});
