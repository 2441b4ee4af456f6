// Gradients of the few tfjs kernels the tfjs examples and tests differentiate through, for a project that has
// @tensorflow/tfjs-core alone. tfjs-core's CommonJS build registers no kernel gradients: @tensorflow/tfjs and
// @tensorflow/tfjs-node register them all when loaded, and then this function changes nothing (it only fills
// kernels that have no gradient yet). rift's riftLoss itself needs none of them (it brings its own gradient).
//
// Covered: Add, Sub, Mul (with broadcasting), Neg, Exp, Tanh, Softplus, Sum, Reshape, BatchMatMul (rank 2 or equal
// batch dims), GatherV2 and UnsortedSegmentSum (axis 0: an embedding lookup and its transpose).
import type * as tfc from '@tensorflow/tfjs-core';

type Tf = typeof tfc;
type T = tfc.Tensor;

/** dy summed over the axes `shape` was broadcast along, reshaped to `shape`. */
function unbroadcast(tf: Tf, dy: T, shape: number[]): T {
  const lead = dy.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < dy.rank; i++) if (i < lead || (shape[i - lead] === 1 && dy.shape[i] !== 1)) axes.push(i);
  return tf.reshape(axes.length ? tf.sum(dy, axes) : dy, shape);
}

function axesOf(axis: unknown, rank: number): number[] {
  if (axis === null || axis === undefined) return Array.from({ length: rank }, (_, i) => i);
  return (Array.isArray(axis) ? axis : [axis]).map((a: number) => (a < 0 ? a + rank : a));
}

/** Registers the gradients above for every kernel that has none; returns the kernel names it registered. */
export function registerExampleGradients(tf: Tf): string[] {
  const done: string[] = [];
  const add = (kernelName: string, cfg: Omit<tfc.GradConfig, 'kernelName'>) => {
    if (tf.getGradient(kernelName) != null) return;
    tf.registerGradient({ kernelName, ...cfg });
    done.push(kernelName);
  };
  const both = (a: T, b: T, da: () => T, db: () => T) => ({
    a: () => unbroadcast(tf, da(), a.shape),
    b: () => unbroadcast(tf, db(), b.shape),
  });
  add('Add', {
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) =>
      both(
        a,
        b,
        () => dy as T,
        () => dy as T,
      ),
  });
  add('Sub', {
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) =>
      both(
        a,
        b,
        () => dy as T,
        () => tf.neg(dy as T),
      ),
  });
  add('Multiply', {
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) =>
      both(
        a,
        b,
        () => tf.mul(dy as T, b),
        () => tf.mul(dy as T, a),
      ),
  });
  add('Neg', { gradFunc: (dy) => ({ x: () => tf.neg(dy as T) }) });
  add('Exp', { outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as T, y) }) });
  add('Tanh', {
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as T, tf.sub(1, tf.square(y))) }),
  });
  add('Softplus', { inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as T, tf.sigmoid(x)) }) });
  add('Reshape', { inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy as T, x.shape) }) });
  add('Sum', {
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const axes = axesOf((attrs as { axis?: unknown }).axis, x.rank);
      const kept = x.shape.map((n, i) => (axes.includes(i) ? 1 : n));
      return { x: () => tf.mul(tf.reshape(dy as T, kept), tf.ones(x.shape)) };
    },
  });
  add('BatchMatMul', {
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b], attrs) => {
      const { transposeA: tA, transposeB: tB } = attrs as { transposeA: boolean; transposeB: boolean };
      const d = dy as T;
      if (!tA && !tB) return { a: () => tf.matMul(d, b, false, true), b: () => tf.matMul(a, d, true, false) };
      if (!tA && tB) return { a: () => tf.matMul(d, b), b: () => tf.matMul(d, a, true, false) };
      if (tA && !tB) return { a: () => tf.matMul(b, d, false, true), b: () => tf.matMul(a, d) };
      return { a: () => tf.matMul(b, d, true, true), b: () => tf.matMul(d, a, true, true) };
    },
  });
  add('GatherV2', {
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, [x, indices], attrs) => {
      if ((attrs as { axis?: number }).axis !== 0)
        throw new Error('examples/tfjs-grads: GatherV2 gradient: only axis 0');
      // Σ of dy's rows into the rows they were gathered from, as onehot(indices)ᵀ · dy (a GEMM: fast on every backend)
      const rows = tf.reshape(dy as T, [indices.size, x.size / x.shape[0]]);
      const onehot = tf.oneHot(tf.reshape(indices, [indices.size]) as tfc.Tensor1D, x.shape[0], 1, 0, 'float32');
      return { x: () => tf.reshape(tf.matMul(onehot, rows, true, false), x.shape) };
    },
  });
  add('UnsortedSegmentSum', {
    inputsToSave: ['segmentIds'],
    gradFunc: (dy, [segmentIds]) => ({ x: () => tf.gather(dy as T, segmentIds) }),
  });
  return done;
}
