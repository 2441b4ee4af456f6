// rift bench: runs the benchmark script (dist/bench/run.js) with the given arguments. A repository command: the
// benchmarks (bench/, tinybench) are not part of the installed package, so from an install it says so and stops.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Command } from 'commander';
import { packageRoot } from '../../loop/paths';
import { CliError } from '../io';

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'run the benchmarks from a clone of the repository (arguments go to bench/run.ts: --quick, --only cpu|cuda|engine)',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]', 'arguments for the benchmark script')
    .action((args: string[]) => {
      const script = path.join(packageRoot(), 'dist', 'bench', 'run.js');
      if (!fs.existsSync(script)) {
        const repo = fs.existsSync(path.join(packageRoot(), 'bench', 'run.ts'));
        throw new CliError(
          repo
            ? `bench: ${script} not found (run \`npm run build:ts\` first)`
            : 'bench: a repository command — the benchmarks are not part of the installed package; in a clone of the repository run `npm ci && npm run bench`',
        );
      }
      const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
      if (r.error) throw r.error;
      if (r.status !== 0) process.exitCode = r.status ?? 1;
    });
}
