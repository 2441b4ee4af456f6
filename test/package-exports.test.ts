// The package as a dependency sees it (package.json "exports", "typesVersions", the optional tfjs-core peer):
// `require('rift')` / `import … from 'rift'` and the `rift/tfjs` subpath from CommonJS, an ES module and
// TypeScript (moduleResolution node10 and node16); without @tensorflow/tfjs-core installed, 'rift' still loads and
// riftLoss says what to install. The package is compiled into a temporary copy (the repository's dist/ is left
// alone), its build/ and node_modules/ linked from the repository.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
let tmp = '';

function run(cwd: string, args: string[]): string {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A consumer directory whose node_modules holds `rift` → pkg and the given other packages from the repository. */
function consumer(name: string, pkg: string, others: string[]): string {
  const app = path.join(tmp, name);
  fs.mkdirSync(path.join(app, 'node_modules'), { recursive: true });
  fs.symlinkSync(pkg, path.join(app, 'node_modules', 'rift'), 'dir');
  for (const o of others) fs.symlinkSync(path.join(root, 'node_modules', o), path.join(app, 'node_modules', o), 'dir');
  return app;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-exports-'));
  const pkg = path.join(tmp, 'pkg');
  fs.mkdirSync(pkg);
  fs.writeFileSync(
    path.join(tmp, 'tsconfig.json'),
    JSON.stringify({
      extends: path.join(root, 'tsconfig.json'),
      compilerOptions: {
        rootDir: root,
        outDir: path.join(pkg, 'dist'),
        typeRoots: [path.join(root, 'node_modules', '@types')],
      },
      include: [path.join(root, 'lib/**/*.ts')],
    }),
  );
  const tsc = spawnSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', path.join(tmp, 'tsconfig.json')],
    { encoding: 'utf8' },
  );
  if (tsc.status !== 0) throw new Error(`tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  fs.symlinkSync(path.join(root, 'build'), path.join(pkg, 'build'), 'dir');
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'), 'dir');
  // the same package without @tensorflow in reach
  const bare = path.join(tmp, 'pkg-no-tfjs');
  fs.mkdirSync(path.join(bare, 'node_modules'), { recursive: true });
  fs.cpSync(path.join(pkg, 'dist'), path.join(bare, 'dist'), { recursive: true }); // a link would resolve to pkg/
  for (const f of ['package.json', 'build']) fs.symlinkSync(path.join(pkg, f), path.join(bare, f));
  for (const m of fs.readdirSync(path.join(root, 'node_modules')))
    if (m !== '@tensorflow' && m !== '.bin')
      fs.symlinkSync(path.join(root, 'node_modules', m), path.join(bare, 'node_modules', m));
}, 180_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// The same small RIFT loss through lossAndGrad and through riftLoss + tf.grad (their sum of |grad| entries).
const BODY = `
tf.env().set('IS_TEST', true);
const logits = new Float32Array([0.5, -1, 2, 0.1, 1, 0, -0.5, 0.3, 0.2]);
const targets = new Int32Array([-100, 2, 0]), offsets = new Int32Array([0, 2, 3]), rewards = new Float32Array([1, -0.5]);
const step = packSamples([{ promptIds: new Int32Array([1]), responseIds: new Int32Array([2, 0]), reward: 1 }], { tokenBudget: 8 });
const k = lossAndGrad({ logits, rows: 3, vocab: 3, targets, offsets, rewards, method: 'rift', grad: new Float32Array(9) });
const x = tf.tensor2d(logits, [3, 3]);
const { value, grad } = tf.valueAndGrad((z) => riftLoss(z, targets, offsets, rewards, { method: 'rift' }))(x);
console.log(JSON.stringify({ kernel: k.loss, tfjs: value.dataSync()[0], grad: Array.from(grad.dataSync()).reduce((a, b) => a + Math.abs(b), 0), normalizer: step.normalizer }));
`;

function expectSameLoss(out: string): void {
  const r = JSON.parse(out.trim().split('\n').pop()!) as {
    kernel: number;
    tfjs: number;
    grad: number;
    normalizer: number;
  };
  expect(r.tfjs).toBeCloseTo(r.kernel, 6);
  expect(r.grad).toBeGreaterThan(0);
  expect(r.normalizer).toBe(2);
}

test('CommonJS: require("rift"), require("rift/tfjs"), require("rift/package.json"); other deep paths are not exported', () => {
  const app = consumer('cjs', path.join(tmp, 'pkg'), ['@tensorflow']);
  fs.writeFileSync(
    path.join(app, 'main.js'),
    `const tf = require('@tensorflow/tfjs-core'); require('@tensorflow/tfjs-backend-cpu');
const { lossAndGrad, packSamples } = require('rift'); const { riftLoss } = require('rift/tfjs');
if (require('rift/package.json').name !== 'rift') throw new Error('package.json');
try { require('rift/dist/lib/tfjs'); throw new Error('deep path loaded'); } catch (e) { if (e.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e; }
${BODY}`,
  );
  expectSameLoss(run(app, ['main.js']));
});

test('ES module: import { … } from "rift" and from "rift/tfjs"', () => {
  const app = consumer('esm', path.join(tmp, 'pkg'), ['@tensorflow']);
  fs.writeFileSync(
    path.join(app, 'main.mjs'),
    `import * as tf from '@tensorflow/tfjs-core'; import '@tensorflow/tfjs-backend-cpu';
import { lossAndGrad, packSamples } from 'rift'; import { riftLoss } from 'rift/tfjs';
${BODY}`,
  );
  expectSameLoss(run(app, ['main.mjs']));
});

test.each(['node10', 'node16'])(
  'TypeScript (moduleResolution %s) finds the types of "rift" and "rift/tfjs"',
  (resolution) => {
    const app = consumer(`ts-${resolution}`, path.join(tmp, 'pkg'), ['@tensorflow', '@types']);
    fs.writeFileSync(
      path.join(app, 'main.ts'),
      `import * as tf from '@tensorflow/tfjs-core';
import { packSamples, type PackedBatches, type BatchSample } from 'rift';
import { riftLoss, type RiftLossOptions } from 'rift/tfjs';
const s: BatchSample = { promptIds: new Int32Array([1]), responseIds: new Int32Array([2]), reward: 1 };
const p: PackedBatches<BatchSample> = packSamples([s], { tokenBudget: 8 });
const o: RiftLossOptions = { method: 'rift', normalizer: p.normalizer };
const loss: tf.Scalar = riftLoss(tf.zeros([2, 3]) as tf.Tensor2D, p.microBatches[0].targets, p.microBatches[0].offsets, p.microBatches[0].rewards, o);
// @ts-expect-error: the method is checked
riftLoss(tf.zeros([2, 3]) as tf.Tensor2D, p.microBatches[0].targets, p.microBatches[0].offsets, null, { method: 'ppo' });
export { loss };
`,
    );
    const module = resolution === 'node16' ? 'node16' : 'commonjs';
    const r = spawnSync(
      process.execPath,
      [
        require.resolve('typescript/bin/tsc'),
        '--noEmit',
        '--strict',
        '--skipLibCheck',
        '--types',
        'node',
        '--module',
        module,
        '--moduleResolution',
        resolution,
        'main.ts',
      ],
      { cwd: app, encoding: 'utf8' },
    );
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  },
);

test('without @tensorflow/tfjs-core: "rift" loads, "rift/tfjs" loads and riftLoss names the missing peer', () => {
  const app = consumer('no-tfjs', path.join(tmp, 'pkg-no-tfjs'), []);
  fs.writeFileSync(
    path.join(app, 'main.js'),
    `const rift = require('rift');
const packed = rift.packSamples([{ promptIds: new Int32Array([1]), responseIds: new Int32Array([2]), reward: 1 }], { tokenBudget: 8 });
const { riftLoss } = require('rift/tfjs');
let message = '';
try { riftLoss({}, new Int32Array(0), new Int32Array([0]), null, { method: 'sft' }); } catch (e) { message = e.message; }
console.log(JSON.stringify({ tokens: packed.tokens, message }));`,
  );
  const out = JSON.parse(run(app, ['main.js']).trim()) as { tokens: number; message: string };
  expect(out.tokens).toBe(1);
  expect(out.message).toMatch(/^rift\/tfjs: @tensorflow\/tfjs-core is not installed; install it and a backend/);
});
