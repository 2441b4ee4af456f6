// Rewards: r_pos / r_neg, group normalisation, user reward modules (CommonJS here; ES modules in a child Node
// process, since jest's module sandbox has no dynamic import()), scoreSamples.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import { groupNormalize, loadRewardModule, rewardFor, scoreSamples } from '../lib/reward/rewards';
import { shutdownVerifier } from '../lib/reward/verifier';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-rewards-'));
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await shutdownVerifier();
});
const write = (name: string, text: string) => {
  const f = path.join(dir, name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, text);
  return f;
};
const sample = { problem: '7+5*3-4=?', response: '5*3=15;7+15=22;22-4=18;\\boxed{18}', reference: '18', id: 'p1' };

describe('rewardFor', () => {
  test('defaults +1 / -0.2, overridable, validated', () => {
    expect(rewardFor(true)).toBe(1);
    expect(rewardFor(false)).toBe(-0.2);
    expect(rewardFor(true, { rPos: 2, rNeg: -1 })).toBe(2);
    expect(rewardFor(false, { rPos: 2, rNeg: -1 })).toBe(-1);
    expect(rewardFor(false, { rNeg: 0 })).toBe(0);
    expect(() => rewardFor(true, { rPos: NaN })).toThrow(RangeError);
    expect(() => rewardFor(true, { rNeg: '1' as never })).toThrow(TypeError);
    expect(() => rewardFor(1 as never)).toThrow(/correct: must be a boolean/);
  });
});

describe('groupNormalize', () => {
  test('(r - mean) / std per group, population std', () => {
    const [g] = groupNormalize([[1, -0.2, -0.2, -0.2]]);
    // mean 0.1, std sqrt((0.81 + 3*0.09)/4) = sqrt(0.27) → [0.9, -0.3 x3] / 0.5196
    const std = Math.sqrt(0.27);
    [0.9 / std, -0.3 / std, -0.3 / std, -0.3 / std].forEach((v, i) => expect(g[i]).toBeCloseTo(v, 12));
    expect(g.reduce((a, b) => a + b, 0)).toBeCloseTo(0, 12);
    const mean2 = g.reduce((a, b) => a + b * b, 0) / g.length;
    expect(mean2).toBeCloseTo(1, 12);
  });

  test('std 0 → all zeros; groups independent; empty groups stay empty', () => {
    expect(groupNormalize([[1, 1, 1], [-0.2, -0.2], [0, 2], [], [5]])).toEqual([[0, 0, 0], [0, 0], [-1, 1], [], [0]]);
  });

  test('bad input', () => {
    expect(() => groupNormalize([[1, NaN]])).toThrow(/groups\[0\]\[1\]/);
    expect(() => groupNormalize([1] as never)).toThrow(TypeError);
  });
});

describe('loadRewardModule (CommonJS)', () => {
  test('module.exports = function, exports.default, named reward, async functions', async () => {
    const a = write('a.js', 'module.exports = (s) => s.response.includes(s.reference) ? 1 : -1;');
    const b = write('b.cjs', 'exports.default = async (s) => s.problem.length;');
    const c = write('c.js', 'exports.reward = function (s) { return 0.5; };');
    expect(await (await loadRewardModule(a))(sample)).toBe(1);
    expect(await (await loadRewardModule(b))(sample)).toBe(sample.problem.length);
    expect(await (await loadRewardModule(c))(sample)).toBe(0.5);
  });

  test('a module without a function → TypeError naming it', async () => {
    const f = write('nofn.js', 'module.exports = { value: 3 };');
    await expect(loadRewardModule(f)).rejects.toThrow(TypeError);
    await expect(loadRewardModule(f)).rejects.toThrow(`reward module ${f}: exports no function`);
    await expect(loadRewardModule(f)).rejects.toThrow('got an object with keys [value]');
  });

  test.each([
    ['a string', "module.exports = () => '1';", "returned '1'"],
    ['NaN', 'module.exports = () => NaN;', 'returned NaN'],
    ['Infinity', 'module.exports = async () => Infinity;', 'returned Infinity'],
    ['undefined', 'module.exports = () => {};', 'returned undefined'],
  ])('returning %s → TypeError naming the module', async (name, src, msg) => {
    const f = write(`bad-${name}.js`, src);
    const fn = await loadRewardModule(f);
    await expect(fn(sample)).rejects.toThrow(TypeError);
    await expect(fn(sample)).rejects.toThrow(`reward module ${f}: ${msg} for "p1", expected a finite number`);
  });

  test('a throwing function, a broken module, a missing file: errors naming the module', async () => {
    const t = write('throws.js', "module.exports = () => { throw new Error('boom'); };");
    await expect((await loadRewardModule(t))(sample)).rejects.toThrow(`reward module ${t}: threw on "p1": boom`);
    const broken = write('broken.js', 'module.exports = (;');
    await expect(loadRewardModule(broken)).rejects.toThrow(`reward module ${broken}: failed to load`);
    await expect(loadRewardModule(path.join(dir, 'nope.js'))).rejects.toThrow(/nope\.js: file not found/);
    await expect(loadRewardModule('' as never)).rejects.toThrow(TypeError);
  });
});

describe('loadRewardModule (ES modules, in a child Node process)', () => {
  test('.mjs default export and an ESM .js in a "type": "module" package', () => {
    // compile the reward modules (and what they import) as the package build would, then use them from plain Node
    const out = path.join(dir, 'build');
    const files = ['lib/reward/rewards.ts', 'lib/reward/verifier.ts', 'lib/reward/symbolic.ts', 'lib/util/validate.ts'];
    for (const f of files) {
      const src = fs.readFileSync(path.join(__dirname, '..', f), 'utf8');
      const js = ts.transpileModule(src, {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      }).outputText;
      write(path.join('build', f.replace(/\.ts$/, '.js')), js);
    }
    const mjs = write('esm/r.mjs', 'export default async function (s) { return s.reference === "18" ? 2 : -2; }');
    write('esm-pkg/package.json', '{"type": "module"}');
    const esmJs = write('esm-pkg/r.js', 'export const reward = (s) => s.problem.length / 100;');
    const nofn = write('esm/nofn.mjs', 'export const x = 1;');
    const runner = write(
      'run.js',
      `const { loadRewardModule } = require(${JSON.stringify(path.join(out, 'lib/reward/rewards.js'))});
       const s = ${JSON.stringify(sample)};
       (async () => {
         const a = await (await loadRewardModule(${JSON.stringify(mjs)}))(s);
         const b = await (await loadRewardModule(${JSON.stringify(esmJs)}))(s);
         let c = '';
         try { await loadRewardModule(${JSON.stringify(nofn)}); } catch (e) { c = e.name + ': ' + e.message; }
         console.log(JSON.stringify({ a, b, c }));
       })().catch((e) => { console.error(e); process.exit(1); });`,
    );
    const r = spawnSync(process.execPath, [runner], { encoding: 'utf8', timeout: 30000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(got.a).toBe(2);
    expect(got.b).toBeCloseTo(sample.problem.length / 100, 12);
    expect(got.c).toBe(
      `TypeError: reward module ${nofn}: exports no function (expected a default export, module.exports = function, or a named export "reward"), got an object with keys [x]`,
    );
  });
});

describe('scoreSamples', () => {
  const samples = [
    { problemId: 'a', problem: '2+2=?', response: '\\boxed{4}', reference: '4' },
    { problemId: 'a', problem: '2+2=?', response: '\\boxed{5}', reference: '4' },
    { problemId: 'b', problem: '1/2=?', response: 'the answer is 0.5', reference: '\\frac{1}{2}' },
    { problemId: 'b', problem: '1/2=?', response: 'no idea', reference: '\\frac{1}{2}' },
    { problemId: 'c', problem: '3*3=?', response: '\\boxed{9}', reference: '9' },
  ];

  test('verifier rewards, with and without group normalisation', async () => {
    const r = await scoreSamples(samples);
    expect(r.map((x) => x.reward)).toEqual([1, -0.2, 1, -0.2, 1]);
    expect(r.map((x) => x.correct)).toEqual([true, false, true, false, true]);
    expect(r[2].extracted).toBe('0.5');
    expect(r[3]).toMatchObject({ extracted: null, reason: 'no answer found in the response' });
    const n = await scoreSamples(samples, { groupNormalize: true, rPos: 1, rNeg: -1 });
    expect(n.map((x) => x.reward)).toEqual([1, -1, 1, -1, 0]);
    expect(n.map((x) => x.rawReward)).toEqual([1, -1, 1, -1, 1]);
  });

  test('a user module gives the reward; the verdict is still reported', async () => {
    const f = write('len.js', 'module.exports = (s) => s.response.length;');
    const r = await scoreSamples(samples, { rewardFn: await loadRewardModule(f) });
    expect(r.map((x) => x.reward)).toEqual(samples.map((s) => s.response.length));
    expect(r.map((x) => x.correct)).toEqual([true, false, true, false, true]);
  });

  test('bad samples', async () => {
    await expect(scoreSamples([{ ...samples[0], response: 3 as never }])).rejects.toThrow(
      'samples[0].response: must be a string',
    );
    await expect(scoreSamples(samples, { rNeg: NaN })).rejects.toThrow(RangeError);
  });
});
