// rift experiment: the declared small-scale reproduction of the paper's comparisons (lib/experiment/experiment.ts).
// --out is locked for the run and may not be the --model directory; a rerun resumes from OUT/runs.jsonl.
// --setting picks the base model and problems (tiny: models/tiny-base; hard: models/hard-base on long problems);
// an OUT made for the other setting is refused.
import * as fs from 'fs';
import { Command, Option } from 'commander';
import { runExperiment } from '../../experiment/experiment';
import { EXPERIMENT_SETTINGS, PARTS, type ExperimentSetting, type Part } from '../../experiment/protocol';
import { CliError, type Output } from '../io';
import { checkDirOutput, lockOutput, modelInputs, refuseOverlap } from '../outputs';

interface Flags {
  out: string;
  quick?: boolean;
  setting: string;
  parts?: string;
  model?: string;
  json?: boolean;
}

export function experimentCommand(out: () => Output): Command {
  return new Command('experiment')
    .description(
      'the fair protocol: LR per method on a validation split, ≥ 5 seeds, epoch- and update-matched budgets, ablations, naive collapse, memory → report',
    )
    .option('--out <dir>', 'output directory (runs.jsonl, results.json, report/)', 'experiment-out')
    .option('--quick', 'the small protocol (≤ 10 min on 2 cores): fewer problems, seeds and grid points')
    .addOption(
      new Option(
        '--setting <name>',
        `${EXPERIMENT_SETTINGS.join(' | ')}: base model and task (tiny: models/tiny-base, 2–4 step problems; hard: models/hard-base, 5–7 step problems)`,
      ).default('tiny'),
    )
    .addOption(
      new Option(
        '--parts <list>',
        `comma-separated parts to run (default all: ${PARTS.join(',')}); the report uses every finished run`,
      ),
    )
    .option('--model <dir>', "base model directory (default: the setting's, models/tiny-base or models/hard-base)")
    .option('--json', 'JSON lines on stdout')
    .action(async (f: Flags) => {
      const o = out();
      const parts =
        f.parts === undefined
          ? undefined
          : f.parts
              .split(',')
              .map((p) => p.trim())
              .filter(Boolean);
      if (!EXPERIMENT_SETTINGS.includes(f.setting as ExperimentSetting))
        throw new CliError(
          `--setting: must be one of ${EXPERIMENT_SETTINGS.join(', ')}, got ${JSON.stringify(f.setting)}`,
        );
      for (const p of parts ?? [])
        if (!PARTS.includes(p as Part))
          throw new CliError(`--parts: unknown part ${JSON.stringify(p)} (one of ${PARTS.join(', ')})`);
      const outArg = { opt: '--out', path: f.out };
      checkDirOutput(outArg);
      if (f.model) refuseOverlap([outArg], modelInputs('--model', f.model));
      fs.mkdirSync(f.out, { recursive: true });
      const lock = lockOutput(outArg, 'dir', 'rift experiment');
      try {
        const r = await runExperiment({
          out: f.out,
          size: f.quick ? 'quick' : 'full',
          setting: f.setting as ExperimentSetting,
          parts: parts as Part[] | undefined,
          modelDir: f.model,
          log: (l) => o.log(l),
        });
        o.result(
          { command: 'experiment', ...r },
          `\n${r.runs} runs (${r.newRuns} new) in ${r.wallSeconds.toFixed(0)} s; report in ${r.report}`,
        );
      } finally {
        lock.release();
      }
    });
}
