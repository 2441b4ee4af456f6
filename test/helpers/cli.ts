// Running the built CLI (`node bin/rift.js …`) from tests: builds dist/ with tsc when lib/ is newer, makes a
// scratch directory with a model directory and a problems file.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../../lib/engine/model';
import { baseModelConfig, writeBaseTokenizer } from '../../lib/demo/base-model';
import { demoProblems } from '../../lib/demo/demo';
import { writeProblems } from '../../lib/data/problems';

export const root = path.join(__dirname, '..', '..');
const bin = path.join(root, 'bin', 'rift.js');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestMtime(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, fs.statSync(p).mtimeMs);
  }
  return t;
}

/** Compiles lib/ into dist/ when a source is newer than the CLI entry. */
export function buildCli(): void {
  const built = path.join(root, 'dist', 'lib', 'cli', 'index.js');
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newestMtime(path.join(root, 'lib'))) {
    const r = spawnSync(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
  }
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A scratch directory holding `problems.jsonl` (6 problems with solutions) and a model directory. */
export function cliScratch(): { tmp: string; modelDir: string } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-cli-'));
  const real = path.join(root, 'models', 'tiny-base');
  let modelDir = real;
  if (!fs.existsSync(path.join(real, 'config.json'))) {
    modelDir = path.join(tmp, 'random-base');
    Model.fromConfig(baseModelConfig({ hidden: 32, layers: 1, intermediate: 64 }), { seed: 1 }).save(modelDir);
    writeBaseTokenizer(modelDir);
  }
  writeProblems(path.join(tmp, 'problems.jsonl'), demoProblems(6, 0).train);
  return { tmp, modelDir };
}

/** Runs the CLI to completion in `cwd`. */
export function riftSync(cwd: string, args: string[], env: Record<string, string> = {}): CliRun {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI in the background; `done` settles when it exits. */
export function riftAsync(cwd: string, args: string[]): { pid: number; done: Promise<CliRun> } {
  const c = spawn(process.execPath, [bin, ...args], { cwd });
  let stdout = '',
    stderr = '';
  c.stdout.on('data', (d) => (stdout += d));
  c.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliRun>((resolve) => c.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  return { pid: c.pid!, done };
}
