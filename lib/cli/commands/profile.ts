// rift profile-memory: peak training memory of RIFT vs DPO (held / precomputed reference), measured here for
// shapes that fit and predicted (same accounting) for the big HF configs. --ranks N --zero 0|1: per rank of a
// data-parallel job (predicted); --device / --precision / --recompute: the engine's settings the accounting uses.
import * as fs from 'fs';
import * as path from 'path';
import { Command, Option } from 'commander';
import {
  measureMemory,
  predictMemory,
  PROFILE_METHODS,
  QWEN25_MATH_1_5B,
  QWEN25_MATH_7B,
  numParams,
  type ProfileMethod,
} from '../../profile/memory';
import { parseConfig } from '../../engine/checkpoint';
import { readJsonFile } from '../../data/files';
import { formatBytes } from '../../eval/evaluate';
import { baseModelConfig } from '../../demo/base-model';
import { CliError, type Output } from '../io';
import { int } from '../parse';
import { DEFAULT_MODEL } from './common';

interface Flags {
  config: string;
  B?: number;
  T?: number;
  json?: boolean;
  ranks: number;
  zero: '0' | '1';
  device: 'cpu' | 'cuda';
  precision?: 'fp32' | 'bf16';
  recompute?: boolean;
  weightCopy: boolean;
}

const NAMED: Record<string, Record<string, unknown>> = {
  'qwen2.5-math-1.5b': { ...QWEN25_MATH_1_5B },
  'qwen2.5-math-7b': { ...QWEN25_MATH_7B },
};

/** Measure when the model's training state (params + grads + AdamW ≈ 16 B/param) stays under this. */
const MEASURE_LIMIT_BYTES = 2 * 2 ** 30;

export function profileCommand(out: () => Output): Command {
  return new Command('profile-memory')
    .description('peak training memory per category, RIFT vs DPO: measured for shapes that fit, predicted for big ones')
    .option('--config <name|dir>', 'tiny | qwen2.5-math-1.5b | qwen2.5-math-7b | a model directory', 'tiny')
    .option('--B <n>', 'sequences per micro-batch (default 4 measured, 8 predicted)', int(2))
    .option('--T <n>', 'tokens per sequence (default 128 measured, 1024 predicted)', int(2))
    .option('--ranks <n>', 'data-parallel ranks: memory per rank (predicted)', int(1), 1)
    .addOption(
      new Option('--zero <stage>', 'ZeRO stage of the data-parallel job (1: AdamW state sharded over ranks)')
        .choices(['0', '1'])
        .default('0'),
    )
    .addOption(
      new Option('--device <name>', 'the engine the accounting is for').choices(['cpu', 'cuda']).default('cpu'),
    )
    .addOption(
      new Option(
        '--precision <p>',
        'GEMM precision (default: fp32 on cpu, bf16 on cuda: + a bf16 copy of the weights)',
      ).choices(['fp32', 'bf16']),
    )
    .option('--recompute', 'activation recomputation')
    .option(
      '--no-weight-copy',
      "cuda bf16: without the weights' bf16 copy (RIFT_CUDA_WEIGHT_COPY=0: less memory, slower GEMMs)",
    )
    .option('--json', 'JSON lines on stdout')
    .action(async (f: Flags) => {
      const o = out();
      let config: Record<string, unknown>;
      let name = f.config;
      if (f.config === 'tiny') {
        const dir = DEFAULT_MODEL;
        config = fs.existsSync(path.join(dir, 'config.json'))
          ? (readJsonFile(path.join(dir, 'config.json')) as Record<string, unknown>)
          : baseModelConfig();
      } else if (NAMED[f.config.toLowerCase()]) config = NAMED[f.config.toLowerCase()];
      else if (fs.existsSync(path.join(f.config, 'config.json'))) {
        config = readJsonFile(path.join(f.config, 'config.json')) as Record<string, unknown>; // errors name the file
        name = path.basename(path.resolve(f.config));
      } else
        throw new CliError(
          `--config: expected tiny, qwen2.5-math-1.5b, qwen2.5-math-7b or a model directory with config.json, got ${JSON.stringify(f.config)}`,
        );
      const parsed = parseConfig(config);
      const P = numParams(parsed);
      const zero = f.zero === '1' ? 1 : 0;
      const engine = {
        device: f.device,
        precision: f.precision,
        recompute: !!f.recompute,
        ranks: f.ranks,
        zero,
        weightCopy: f.weightCopy,
      } as const;
      // measured in this process: one rank, on the CPU (a GPU's memory is measured by scripts on a GPU machine)
      const measure = 16 * P <= MEASURE_LIMIT_BYTES && f.ranks === 1 && zero === 0 && f.device === 'cpu';
      const B = f.B ?? (measure ? 4 : 8);
      const T = f.T ?? (measure ? 128 : 1024);
      if (B % 2) throw new CliError(`--B: must be even (DPO pairs), got ${B}`);
      const rows: Record<string, unknown>[] = [];
      for (const method of PROFILE_METHODS as readonly ProfileMethod[]) {
        const pred = predictMemory(config, { method, B, T, ...engine });
        let measured: Record<string, number> | undefined;
        let seconds: number | undefined;
        if (measure) {
          o.log(`measuring ${method} at B=${B}, T=${T} …`);
          const m = await measureMemory({ config, method, B, T, precision: f.precision, recompute: engine.recompute });
          const p2 = predictMemory(config, { method, B, T, targetRows: m.targetRows, ...engine });
          measured = { ...m.bytes };
          seconds = m.seconds;
          rows.push({ method, kind: 'measured', B, T, params: P, bytes: measured, predicted: p2.bytes, seconds });
        } else rows.push({ method, kind: 'predicted', B, T, params: P, bytes: pred.bytes });
      }
      const cats = ['params', 'grads', 'optimizer', 'activations', 'logitsChunk', 'reference', 'total'];
      const head = `| method | ${measure ? 'measured' : 'predicted'} | ${cats.join(' | ')} |${measure ? ' predicted total |' : ''}`;
      const setting =
        `${f.device}${f.precision ? ` ${f.precision}` : ''}${engine.recompute ? ', recompute' : ''}` +
        (f.ranks > 1 || zero ? `, per rank of ${f.ranks} (ZeRO-${zero})` : '') +
        (f.weightCopy ? '' : ', no bf16 weight copy');
      const why = 16 * P > MEASURE_LIMIT_BYTES ? 'too big to measure here' : 'measured for one CPU process only';
      const lines = [
        `${name}: ${P.toLocaleString('en-US')} parameters, B=${B}, T=${T}, ${setting}${measure ? ' (measured on this machine; prediction alongside)' : ` (predicted: ${why})`}`,
        '',
        head,
        `| --- | --- | ${cats.map(() => '---:').join(' | ')} |${measure ? ' ---: |' : ''}`,
        ...rows.map((r) => {
          const b = r.bytes as Record<string, number>;
          const p = r.predicted as Record<string, number> | undefined;
          return `| ${r.method} | ${r.kind} | ${cats.map((c) => formatBytes(b[c] ?? 0)).join(' | ')} |${p ? ` ${formatBytes(p.total)} |` : ''}`;
        }),
      ];
      o.result(
        {
          command: 'profile-memory',
          config: name,
          numParams: P,
          B,
          T,
          device: f.device,
          precision: f.precision ?? null,
          recompute: engine.recompute,
          ranks: f.ranks,
          zero,
          weightCopy: f.weightCopy,
          rows,
        },
        lines.join('\n'),
      );
    });
}
