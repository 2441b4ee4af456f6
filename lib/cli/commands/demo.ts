// rift demo: the whole loop on the embedded base model (lib/demo/demo.ts) with progress bars and the table.
// --out is locked for the run and may not be the --model directory.
import * as fs from 'fs';
import { Command } from 'commander';
import { runDemo } from '../../demo/demo';
import type { Output } from '../io';
import { checkDirOutput, lockOutput, modelInputs, refuseOverlap } from '../outputs';
import { intList } from '../parse';

interface Flags {
  out: string;
  seeds?: number[];
  quick?: boolean;
  model?: string;
  json?: boolean;
}

export function demoCommand(out: () => Output): Command {
  return new Command('demo')
    .description('rollouts → train every method → evaluate → table + report (CPU, < 10 min)')
    .option('--out <dir>', 'output directory', 'demo-out')
    .option('--seeds <list>', 'comma-separated seeds (default 1,2,3; --quick: 1)', intList)
    .option('--quick', 'a smoke run: a handful of problems, 2 updates, K=2')
    .option('--model <dir>', 'base model directory (default models/tiny-base)')
    .option('--json', 'JSON lines on stdout')
    .action(async (f: Flags) => {
      const o = out();
      const outArg = { opt: '--out', path: f.out };
      checkDirOutput(outArg);
      if (f.model) refuseOverlap([outArg], modelInputs('--model', f.model));
      fs.mkdirSync(f.out, { recursive: true });
      const lock = lockOutput(outArg, 'dir', 'rift demo');
      try {
        await demo(f, o);
      } finally {
        lock.release();
      }
    });
}

async function demo(f: Flags, o: Output): Promise<void> {
  const r = await runDemo({
    out: f.out,
    seeds: f.seeds,
    quick: !!f.quick,
    modelDir: f.model,
    log: (l) => o.log(l),
    onEvent: (e) => {
      if (e.kind === 'start') o.startBar(e.label, e.total);
      else if (e.kind === 'progress') o.updateBar(e.label, e.done, e.total, { tokens: e.tokens, loss: e.loss });
      else o.endBar(e.label, { done: e.done, tokens: e.tokens });
    },
  });
  const timing = Object.entries(r.timings)
    .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
    .join(', ');
  o.result(
    {
      command: 'demo',
      out: r.out,
      wallSeconds: r.wallSeconds,
      timings: r.timings,
      summary: r.summary,
      rollouts: r.rollouts,
      table: r.table,
    },
    `\n${r.table}\nwall time ${r.wallSeconds.toFixed(1)} s (${timing}); results in ${r.out}/results.json, report in ${r.out}/report/report.md`,
  );
}
