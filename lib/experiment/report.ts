// The experiment's report: every table is computed from the runs present (OUT/runs.jsonl), with mean ± 95% CI over
// seeds and paired t-tests on matched seeds; the verdict on each of the paper's claims follows fixed rules (below)
// so the text can say "holds", "reversed" or "not shown" without a human choosing.
//
// Verdict rules (Δ = paired mean difference in Mean@K points, its 95% CI [lo, hi]):
//   "A beats B"         holds if lo > 0; reversed if hi < 0; otherwise not shown (the interval includes 0)
//   "no gain from X"    holds unless lo > 0 (then: X gains)
//   "insensitive to X"  holds if every variant's interval includes 0 and |Δ| < 2 points; else not shown / reversed
import * as path from 'path';
import { formatBytes } from '../eval/evaluate';
import {
  intervalPlot,
  linePlot,
  lossCurvePlot,
  memoryPlot,
  type IntervalRow,
  type LinePoint,
  type LossPoint,
  type MemoryRow,
} from '../report/plots';
import { writeReport, type ReportPlot } from '../report/report';
import type { RolloutStats } from '../rollout/rollout';
import type { MemoryComparison } from './memory';
import { WEIGHT_SETTINGS } from './memory';
import { MAIN_METHODS, type ExperimentSetting, type ExperimentSize, type ExperimentSizing } from './protocol';
import type { RunRecord } from './runner';
import { mean, meanCI, pairedTTest, type Interval, type PairedTest } from './stats';

export interface ExperimentData {
  size: ExperimentSize;
  setting: ExperimentSetting;
  /** The setting's description (protocol.ts SETTINGS). */
  settingLabel: string;
  sizing: ExperimentSizing;
  modelDir: string;
  out: string;
  runs: RunRecord[];
  chosen: Record<string, { lr: number; dpoBeta?: number; tuned: boolean }>;
  updateBudget: number;
  rollouts: Record<
    string,
    { problems: number; k: number; seconds: number; atK: RolloutStats; byK: Record<string, RolloutStats> }
  >;
  problemSets: Record<string, string>;
  splits: Record<string, number>;
  memory: MemoryComparison[];
  timings: Record<string, number>;
  parts: string[];
  wallSeconds: number;
  /** Every call that wrote to OUT, this one last (OUT/calls.json). */
  calls?: ExperimentCall[];
}

/** One `rift experiment` call on an output directory: what it ran and how long it took. */
export interface ExperimentCall {
  at: string;
  parts: string[];
  newRuns: number;
  wallSeconds: number;
  timings: Record<string, number>;
}

/** The calls that made OUT's runs, when there were several: each call's parts, new runs and wall time, and the sum. */
function callsLine(calls: ExperimentCall[]): string {
  if (calls.length < 2) return '';
  const total = calls.reduce((s, c) => s + c.wallSeconds, 0);
  const each = calls
    .map(
      (c, i) =>
        `${i + 1}. ${c.at.slice(0, 16).replace('T', ' ')} UTC: ${c.parts.join(', ')}; ${c.newRuns} new runs, ${c.wallSeconds.toFixed(0)} s`,
    )
    .join('; ');
  return `The runs come from ${calls.length} calls, ${total.toFixed(0)} s in all: ${each}.\n\n`;
}

type Metric = 'mean' | 'pass';
const val = (r: RunRecord, set: string, m: Metric, K: number): number =>
  m === 'mean' ? r.evals[set].meanAtK : r.evals[set].passAtK[String(K)];
const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–');
const pts = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}` : '–');
const ci = (iv: Interval) =>
  iv.n === 0 ? '–' : iv.n < 2 ? pct(iv.mean) : `${pct(iv.mean)} ± ${(100 * iv.half).toFixed(1)}`;
const pval = (p: number) => (!Number.isFinite(p) ? '–' : p < 0.001 ? '< 0.001' : p.toFixed(3));
const diff = (t: PairedTest) =>
  t.n === 0 ? '–' : t.n < 2 ? pts(t.mean) : `${pts(t.mean)} [${pts(t.lo)}, ${pts(t.hi)}]`;

/** The runs behind one table cell, one per seed (sorted by seed). */
export class Runs {
  constructor(private readonly all: readonly RunRecord[]) {}
  of(part: string, method: string, variant = '', set?: string): RunRecord[] {
    return this.all
      .filter(
        (r) =>
          !r.skipped &&
          r.spec.part === part &&
          r.spec.method.name === method &&
          r.spec.variant === variant &&
          (set === undefined || r.evals[set]),
      )
      .sort((a, b) => a.spec.seed - b.spec.seed);
  }
}

const interval = (rs: readonly RunRecord[], set: string, m: Metric, K: number) =>
  meanCI(rs.map((r) => val(r, set, m, K)));

/** Paired test of a − b on the seeds both have. */
function paired(a: readonly RunRecord[], b: readonly RunRecord[], set: string, m: Metric, K: number): PairedTest {
  const bs = new Map(b.map((r) => [r.spec.seed, r]));
  const common = a.filter((r) => bs.has(r.spec.seed));
  return pairedTTest(
    common.map((r) => val(r, set, m, K)),
    common.map((r) => val(bs.get(r.spec.seed)!, set, m, K)),
  );
}

function beats(t: PairedTest): string {
  if (t.n < 2) return 'not enough seeds';
  if (t.lo > 0) return `**holds** (${diff(t)} points, p = ${pval(t.p)})`;
  if (t.hi < 0) return `**reversed** (${diff(t)} points, p = ${pval(t.p)})`;
  return `**not shown**: ${diff(t)} points, p = ${pval(t.p)} (the interval includes 0)`;
}

function table(head: string[], rows: string[][], align?: string[]): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${(align ?? head.map((_, i) => (i === 0 ? '---' : '---:'))).join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** Writes OUT/report/report.md (+ plots); returns its path. */
export async function writeExperimentReport(out: string, d: ExperimentData): Promise<string> {
  const K = d.sizing.k;
  const R = new Runs(d.runs);
  const sections: { heading: string; body: string }[] = [];
  const plots: ReportPlot[] = [];
  const base = (set: string) => R.of('base', 'base', '', set);
  const methods = MAIN_METHODS.map((m) => m.name);
  const main = (m: string) => R.of('main', m);
  const upd = (m: string) =>
    R.of('updates', m).length ? R.of('updates', m) : main(m).filter((r) => r.updates === d.updateBudget);
  const verdicts: string[][] = [];

  // ---- learning rates -------------------------------------------------------------------------------------------
  const grid = d.runs.filter((r) => r.spec.part === 'grid' && !r.skipped);
  if (grid.length) {
    const rows = methods.map((m) => {
      const rs = grid
        .filter((r) => r.spec.method.name === m)
        .sort((a, b) => a.spec.lr - b.spec.lr || (a.spec.dpoBeta ?? 0) - (b.spec.dpoBeta ?? 0));
      const c = d.chosen[m];
      const cells = rs.map((r) => {
        const v = `${r.spec.variant}: ${pct(r.evals.val.meanAtK)}${r.diverged ? ' (diverged)' : ''}`;
        return r.spec.lr === c?.lr && r.spec.dpoBeta === c?.dpoBeta ? `**${v}**` : v;
      });
      return [m, cells.join('; ') || '–'];
    });
    sections.push({
      heading: 'Learning rates (validation split)',
      body:
        `Each method's learning rate (DPO: and β) is the one with the best validation Mean@${K} (ties: Pass@${K}, then the smaller learning rate) after the epoch-matched budget, seed ${d.sizing.gridSeed} (not a test seed). The test split is never used to choose.\n\n` +
        table(['method', `validation Mean@${K} per setting (chosen in bold)`], rows, ['---', '---']),
    });
  }
  const untuned = Object.entries(d.chosen)
    .filter(([, c]) => !c.tuned)
    .map(([m]) => m);
  const enough = (xs: PairedTest[]) => xs.every((x) => x.n >= 2);

  // ---- main tables ------------------------------------------------------------------------------------------------
  const baseTest = base('test'),
    baseOod = base('ood');
  const lrOf = (m: string) =>
    d.chosen[m] ? `${d.chosen[m].lr}${d.chosen[m].dpoBeta !== undefined ? `, β ${d.chosen[m].dpoBeta}` : ''}` : '–';
  const row = (name: string, rs: RunRecord[], ood: boolean) => {
    const div = rs.filter((r) => r.diverged).length;
    const u = rs.length ? rs[0].updates : NaN;
    return [
      name,
      name === 'base' ? '–' : lrOf(name),
      rs.length && name !== 'base' ? String(u) : '–',
      rs.length && name !== 'base' ? rs[0].epochs.toFixed(2) : '–',
      ci(interval(rs, 'test', 'mean', K)),
      ci(interval(rs, 'test', 'pass', K)),
      ...(ood
        ? [
            ci(
              interval(
                rs.filter((r) => r.evals.ood),
                'ood',
                'mean',
                K,
              ),
            ),
            ci(
              interval(
                rs.filter((r) => r.evals.ood),
                'ood',
                'pass',
                K,
              ),
            ),
          ]
        : []),
      String(rs.length),
      div ? `${div} of ${rs.length}` : '0',
    ];
  };
  const mainRows = [
    row(
      'base',
      baseTest.map((r) => ({
        ...r,
        evals: { ...r.evals, ood: baseOod.find((o) => o.spec.seed === r.spec.seed)?.evals.ood ?? r.evals.test },
      })),
      true,
    ),
    ...methods.filter((m) => main(m).length).map((m) => row(m, main(m), true)),
  ];
  const mainTable = table(
    [
      'method',
      'lr',
      'updates',
      'epochs',
      `Mean@${K}`,
      `Pass@${K}`,
      `OOD Mean@${K}`,
      `OOD Pass@${K}`,
      'seeds',
      'diverged',
    ],
    mainRows,
  );
  const updRows = methods.filter((m) => upd(m).length).map((m) => row(m, upd(m), false));
  const updTable = table(['method', 'lr', 'updates', 'epochs', `Mean@${K}`, `Pass@${K}`, 'seeds', 'diverged'], updRows);

  // ---- paired comparisons -------------------------------------------------------------------------------------------
  const cmpRows: string[][] = [];
  const cmp = (a: string, b: string, budget: 'epoch-matched' | 'update-matched') => {
    const ra = budget === 'epoch-matched' ? main(a) : upd(a),
      rb = budget === 'epoch-matched' ? main(b) : upd(b);
    const tm = paired(ra, rb, 'test', 'mean', K),
      tp = paired(ra, rb, 'test', 'pass', K);
    if (tm.n) cmpRows.push([`${a} − ${b}`, budget, diff(tm), pval(tm.p), diff(tp), pval(tp.p), String(tm.n)]);
    return tm;
  };
  const t: Record<string, PairedTest> = {};
  for (const budget of ['epoch-matched', 'update-matched'] as const)
    for (const b of ['RFT', 'DPO', 'naive', 'DFT', 'SFT', 'RIFT-sequence'])
      t[`${b}/${budget}`] = cmp('RIFT-token', b, budget);
  t['seq-RFT/epoch-matched'] = cmp('RIFT-sequence', 'RFT', 'epoch-matched');
  t['seq-RFT/update-matched'] = cmp('RIFT-sequence', 'RFT', 'update-matched');
  const cmpTable = table(
    ['comparison (a − b)', 'budget', `Δ Mean@${K} [95% CI], points`, 'p', `Δ Pass@${K} [95% CI]`, 'p', 'seeds'],
    cmpRows,
  );

  // ---- ablations ----------------------------------------------------------------------------------------------------
  const abl = (m: string, v: string) => R.of('ablations', m, v);
  const ablRows: string[][] = [];
  const variants = [...new Set(d.runs.filter((r) => r.spec.part === 'ablations').map((r) => r.spec.variant))];
  const ablT: Record<string, PairedTest> = {};
  for (const v of variants) {
    for (const m of ['RIFT-token', 'RFT']) {
      const rs = abl(m, v);
      if (!rs.length) continue;
      const vsMain = paired(rs, main(m), 'test', 'mean', K);
      ablT[`${m}/${v}`] = vsMain;
      const rft = m === 'RIFT-token' && abl('RFT', v).length ? paired(rs, abl('RFT', v), 'test', 'mean', K) : undefined;
      ablRows.push([
        v,
        m,
        ci(interval(rs, 'test', 'mean', K)),
        ci(interval(rs, 'test', 'pass', K)),
        `${diff(vsMain)} (p ${pval(vsMain.p)})`,
        rft ? `${diff(rft)} (p ${pval(rft.p)})` : '',
        String(rs.length),
      ]);
    }
  }
  const mainRef = (m: string) => {
    const seeds = new Set(d.sizing.ablationSeeds);
    const rs = main(m).filter((r) => seeds.has(r.spec.seed));
    return rs;
  };
  if (ablRows.length) {
    const rr = mainRef('RIFT-token'),
      rf = mainRef('RFT');
    const t8 = paired(rr, rf, 'test', 'mean', K);
    ablRows.unshift([
      `main setting (K=${K}, r_neg −0.2, token-mean)`,
      'RIFT-token',
      ci(interval(rr, 'test', 'mean', K)),
      ci(interval(rr, 'test', 'pass', K)),
      '0',
      `${diff(t8)} (p ${pval(t8.p)})`,
      String(rr.length),
    ]);
  }
  const ablTable = table(
    [
      'variant',
      'method',
      `Mean@${K}`,
      `Pass@${K}`,
      `Δ vs the method's main setting [CI]`,
      'Δ RIFT-token − RFT (same variant)',
      'seeds',
    ],
    ablRows,
  );

  // ---- difficulty -----------------------------------------------------------------------------------------------
  const diffRows: string[][] = [];
  const gain: LinePoint[] = [];
  const sets: [string, string, RunRecord[], RunRecord[], RunRecord[]][] = [
    [
      'main',
      'test',
      mainRef('RIFT-token'),
      mainRef('RFT'),
      base('test').filter((r) => d.sizing.ablationSeeds.includes(r.spec.seed)),
    ],
  ];
  for (const s of ['d1', 'd2long'])
    sets.push([s, s, R.of('difficulty', 'RIFT-token', s), R.of('difficulty', 'RFT', s), base(s)]);
  const gains: { mixed: number; t: PairedTest }[] = [];
  for (const [name, set, rr, rf, b] of sets) {
    if (!rr.length || !d.rollouts[name]) continue;
    const mixed = d.rollouts[name].atK.mixedRate;
    const tg = paired(rr, rf, set, 'mean', K);
    gains.push({ mixed, t: tg });
    if (Number.isFinite(tg.mean)) gain.push({ method: 'RIFT-token − RFT', x: mixed, y: tg.mean });
    diffRows.push([
      `${name}: ${d.problemSets[name === 'main' ? 'main' : name] ?? name}`,
      pct(mixed),
      ci(interval(b, set, 'mean', K)),
      ci(interval(rf, set, 'mean', K)),
      ci(interval(rr, set, 'mean', K)),
      `${diff(tg)} (p ${pval(tg.p)})`,
      String(tg.n),
    ]);
  }
  const diffTable = table(
    [
      'training set',
      `mixed problems (K=${K})`,
      `base Mean@${K}`,
      'RFT',
      'RIFT-token',
      'Δ RIFT-token − RFT [CI]',
      'seeds',
    ],
    diffRows,
  );

  // ---- collapse -------------------------------------------------------------------------------------------------
  const col = (m: string) => R.of('collapse', m)[0];
  const cn = col('naive'),
    cr = col('RIFT-token');
  let collapseText = '';
  if (cn && cr) {
    const bv = base('val')[0];
    const epochs = [...new Set(cn.epochEvals.map((e) => e.epoch))];
    const firstNeg = cn.steps.find((s) => s.loss < 0);
    const perEpoch = (r: RunRecord, e: number) => {
      const per = r.steps.length / Math.max(1, r.epochs);
      const ss = r.steps.filter((s) => s.step > (e - 1) * per && s.step <= e * per);
      return ss.length ? mean(ss.map((s) => s.loss)) : NaN;
    };
    const probeAt = (r: RunRecord, step: number) => r.probes.filter((p) => p.step <= step).pop();
    const rows = [
      [
        '0 (base)',
        bv ? pct(bv.evals.val.meanAtK) : '–',
        bv ? pct(bv.evals.val.meanAtK) : '–',
        '–',
        '–',
        (cn.probes[0]?.negative ?? NaN).toFixed(2),
        (cr.probes[0]?.negative ?? NaN).toFixed(2),
        (cn.probes[0]?.positive ?? NaN).toFixed(3),
        (cr.probes[0]?.positive ?? NaN).toFixed(3),
      ],
    ];
    for (const e of epochs) {
      const en = cn.epochEvals.find((x) => x.epoch === e),
        er = cr.epochEvals.find((x) => x.epoch === e);
      const pn = probeAt(cn, en?.step ?? 0),
        pr = probeAt(cr, er?.step ?? 0);
      rows.push([
        String(e),
        pct(en?.meanAtK ?? NaN),
        pct(er?.meanAtK ?? NaN),
        perEpoch(cn, e).toFixed(4),
        perEpoch(cr, e).toFixed(4),
        (pn?.negative ?? NaN).toFixed(2),
        (pr?.negative ?? NaN).toFixed(2),
        (pn?.positive ?? NaN).toFixed(3),
        (pr?.positive ?? NaN).toFixed(3),
      ]);
    }
    const last = cn.epochEvals[cn.epochEvals.length - 1];
    collapseText =
      `Both at RIFT-token's chosen learning rate ${cr.spec.lr}, constant after ${Math.max(1, Math.round(d.sizing.warmupFraction * cn.plannedUpdates))} warm-up updates, ${cn.epochs} epochs, seed ${cn.spec.seed}; validation Mean@${K} after each epoch; ` +
      `log-probs are the mean token log-prob of ${d.sizing.probeSamples} fixed negative and positive training samples.\n\n` +
      table(
        [
          'epoch',
          `naive val Mean@${K}`,
          `RIFT-token val Mean@${K}`,
          'naive loss (epoch mean)',
          'RIFT-token loss',
          'naive: negatives ℓ',
          'RIFT: negatives ℓ',
          'naive: positives ℓ',
          'RIFT: positives ℓ',
        ],
        rows,
      ) +
      `\n\n${cn.diverged ? `The naive run diverged at update ${cn.diverged.step}: ${cn.diverged.reason} (${cn.diverged.detail}).` : 'The naive run stayed finite (no NaN/Inf: gradient clipping bounds each update; the loss itself is what runs away).'} ` +
      (firstNeg
        ? `Its loss first went below 0 at update ${firstNeg.step} and was ${cn.steps[cn.steps.length - 1].loss.toFixed(4)} at the end (RIFT-token's: ${cr.steps[cr.steps.length - 1].loss.toFixed(4)}, bounded below by 0). `
        : `Its loss never went below 0 here. `) +
      `Validation Mean@${K} went ${bv ? pct(bv.evals.val.meanAtK) : '?'} (base) → ${last ? pct(last.meanAtK) : '?'} after ${last?.epoch ?? '?'} epochs for naive, → ${pct(cr.epochEvals[cr.epochEvals.length - 1]?.meanAtK ?? NaN)} for RIFT-token.`;
    plots.push({
      name: 'collapse-logprobs',
      title: 'Collapse run: mean token log-prob of fixed negative samples',
      spec: linePlot(
        [
          ...cn.probes.map((p) => ({ method: 'naive', x: p.step, y: p.negative })),
          ...cr.probes.map((p) => ({ method: 'RIFT-token', x: p.step, y: p.negative })),
        ].filter((p) => Number.isFinite(p.y)),
        {
          title: "Collapse run: negatives' mean token log-prob",
          xTitle: 'update',
          yTitle: 'mean token log-prob of negatives',
        },
      ),
    });
    plots.push({
      name: 'collapse-accuracy',
      title: `Collapse run: validation Mean@${K} after each epoch`,
      spec: linePlot(
        [
          ...(bv
            ? [
                { method: 'naive', x: 0, y: bv.evals.val.meanAtK },
                { method: 'RIFT-token', x: 0, y: bv.evals.val.meanAtK },
              ]
            : []),
          ...cn.epochEvals.map((e) => ({ method: 'naive', x: e.epoch, y: e.meanAtK })),
          ...cr.epochEvals.map((e) => ({ method: 'RIFT-token', x: e.epoch, y: e.meanAtK })),
        ],
        {
          title: `Collapse run: validation Mean@${K}`,
          xTitle: 'epoch',
          yTitle: `validation Mean@${K}`,
          yFormat: '.0%',
        },
      ),
    });
  }

  // ---- memory -----------------------------------------------------------------------------------------------------
  let memoryText = '';
  if (d.memory.length) {
    const rows = d.memory.map((m) => [
      m.model,
      m.source,
      WEIGHT_SETTINGS[m.setting].label,
      m.basis,
      `${m.riftB} × ${m.T}`,
      `${m.dpoB} × ${m.T} (${m.dpoB / 2} pairs)`,
      formatBytes(m.rift.total),
      formatBytes(m.dpo.total),
      m.ratio.toFixed(2),
      m.matchesPrediction === undefined ? '' : m.matchesPrediction ? 'yes' : '**no**',
    ]);
    memoryText =
      `One training step, RIFT (B samples) vs DPO with a held reference model; params + grads + AdamW + activations + logits chunk + reference (lib/profile/memory.ts). "Equal sequences": DPO gets B sequences (B/2 pairs); "equal examples": B pairs (2B sequences).\n\n` +
      table(
        [
          'model',
          'source',
          'weights',
          'basis',
          'RIFT B × T',
          'DPO B × T',
          'RIFT',
          'DPO',
          'RIFT / DPO',
          'measured = predicted',
        ],
        rows,
      );
    const one = d.memory.filter((m) => m.model === 'Qwen2.5-Math-1.5B' && m.setting === 'bf16');
    if (one.length === 2) {
      const cat = (b: MemoryComparison['rift']) => Object.entries(b).filter(([k, v]) => k !== 'total' && v > 0);
      const mrows: MemoryRow[] = [
        ...cat(one[0].rift).map(([category, bytes]) => ({ method: `RIFT ${one[0].riftB} seq`, category, bytes })),
        ...one.flatMap((m) =>
          cat(m.dpo).map(([category, bytes]) => ({ method: `DPO ${m.dpoB} seq`, category, bytes })),
        ),
      ];
      plots.push({
        name: 'memory',
        title: 'Predicted memory, Qwen2.5-Math-1.5B, CUDA bf16, T = 1024',
        spec: memoryPlot(mrows, { title: 'Qwen2.5-Math-1.5B, bf16 weights, one step' }),
      });
    }
    const eq = d.memory.filter((m) => m.source === 'predicted' && m.basis === 'equal examples').map((m) => m.ratio);
    const es = d.memory.filter((m) => m.source === 'predicted' && m.basis === 'equal sequences').map((m) => m.ratio);
    verdicts.push([
      "RIFT uses about half of DPO's memory",
      eq.length
        ? `at equal examples RIFT / DPO = ${Math.min(...eq).toFixed(2)}–${Math.max(...eq).toFixed(2)} (predicted, 1.5B/7B, both weight settings): **roughly holds** (about 60%, not 50%); at equal sequences ${Math.min(...es).toFixed(2)}–${Math.max(...es).toFixed(2)}: **does not hold**`
        : 'not run',
    ]);
  }

  // ---- verdicts -----------------------------------------------------------------------------------------------------
  const nai = t['naive/epoch-matched'];
  if (nai?.n) {
    const cnLast = cn?.epochEvals[cn.epochEvals.length - 1]?.meanAtK,
      cnFirst = cn?.epochEvals[0]?.meanAtK;
    const bvMean = base('val')[0]?.evals.val.meanAtK;
    verdicts.push([
      '(a) the naive loss −r·log π collapses on negatives',
      `RIFT-token − naive (epoch-matched): ${beats(nai).replace('**holds**', '**RIFT better**')}` +
        (cn
          ? `; collapse run: validation Mean@${K} ${pct(bvMean ?? NaN)} → ${pct(cnFirst ?? NaN)} (epoch 1) → ${pct(cnLast ?? NaN)} (epoch ${cn.epochs}), negatives' mean token log-prob ${(cn.probes[0]?.negative ?? NaN).toFixed(2)} → ${(cn.probes[cn.probes.length - 1]?.negative ?? NaN).toFixed(2)}${cn.diverged ? ', diverged' : ', no NaN'}`
          : ''),
    ]);
  }
  for (const budget of ['epoch-matched', 'update-matched']) {
    if (t[`RFT/${budget}`]?.n) verdicts.push([`(b) RIFT-token beats RFT (${budget})`, beats(t[`RFT/${budget}`])]);
    if (t[`seq-RFT/${budget}`]?.n)
      verdicts.push([`(b) RIFT-sequence beats RFT (${budget})`, beats(t[`seq-RFT/${budget}`])]);
    if (t[`DPO/${budget}`]?.n) verdicts.push([`(b) RIFT-token beats DPO (${budget})`, beats(t[`DPO/${budget}`])]);
  }
  const rn = ['rNeg=-0.5', 'rNeg=-0.8'].map((v) => ablT[`RIFT-token/${v}`]).filter((x) => x?.n);
  if (rn.length) {
    const sig = rn.filter((x) => x.n >= 2 && (x.lo > 0 || x.hi < 0));
    const small = rn.every((x) => Math.abs(x.mean) < 0.02);
    verdicts.push([
      '(b) RIFT is insensitive to r_neg in [−0.8, −0.2]',
      `${!enough(rn) ? 'not enough seeds' : sig.length ? '**does not hold**' : small ? '**holds**' : '**not shown**'}: Δ vs r_neg −0.2: ${rn.map((x, i) => `${['−0.5', '−0.8'][i]}: ${diff(x)} (p ${pval(x.p)})`).join('; ')}`,
    ]);
  }
  const g = ablT['RIFT-token/group-normalised'];
  if (g?.n)
    verdicts.push([
      '(c) fixed asymmetric rewards beat group normalisation',
      beats({ ...g, mean: -g.mean, lo: -g.hi, hi: -g.lo }),
    ]);
  const k16 = ablT['RIFT-token/K=16'];
  if (k16?.n)
    verdicts.push([
      '(d) K = 16 gives no gain over K = 8 (RIFT-token)',
      k16.n < 2
        ? 'not enough seeds'
        : k16.lo > 0
          ? `**does not hold**: K=16 gains ${diff(k16)} (p ${pval(k16.p)})`
          : `**holds**: ${diff(k16)} (p ${pval(k16.p)})`,
    ]);
  if (gains.length >= 2) {
    const sorted = [...gains].sort((a, b) => a.mixed - b.mixed);
    const up = sorted.every((x, i) => i === 0 || x.t.mean >= sorted[i - 1].t.mean);
    verdicts.push([
      '(d) the gain grows with the share of mixed problems',
      `${!enough(gains.map((x) => x.t)) ? 'not enough seeds' : up ? '**consistent** (monotone in this small sample)' : '**not shown**'}: ${sorted.map((x) => `mixed ${pct(x.mixed)}: ${diff(x.t)}`).join('; ')}`,
    ]);
  }
  const norm = ablT['RIFT-token/sequence-mean'];
  if (norm?.n) {
    const tr = paired(abl('RIFT-token', 'sequence-mean'), abl('RFT', 'sequence-mean'), 'test', 'mean', K);
    verdicts.push([
      'normaliser: sequence-mean instead of token-mean',
      `RIFT-token ${diff(norm)} vs its token-mean runs (p ${pval(norm.p)}); RIFT-token − RFT under sequence-mean: ${diff(tr)} (p ${pval(tr.p)})`,
    ]);
  }

  // ---- plots of the main runs -----------------------------------------------------------------------------------
  const ivRows: IntervalRow[] = [];
  for (const [name, rs] of [['base', baseTest] as const, ...methods.map((m) => [m, main(m)] as const)]) {
    if (rs.length < 2) continue;
    for (const [m, label] of [
      ['mean', `Mean@${K}`],
      ['pass', `Pass@${K}`],
    ] as const) {
      const iv = interval(rs, 'test', m, K);
      ivRows.push({ method: name, metric: label, mean: iv.mean, lo: iv.lo, hi: iv.hi });
    }
  }
  if (ivRows.length)
    plots.unshift({
      name: 'accuracy',
      title: `Test accuracy, epoch-matched (mean and 95% CI over seeds)`,
      spec: intervalPlot(ivRows, { title: `Test Mean@${K} / Pass@${K}, epoch-matched` }),
    });
  const loss: LossPoint[] = [];
  const probes: LinePoint[] = [];
  for (const m of methods) {
    const rs = main(m);
    if (!rs.length) continue;
    const n = Math.min(...rs.map((r) => r.steps.length));
    for (let i = 0; i < n; i++) loss.push({ method: m, step: i + 1, loss: mean(rs.map((r) => r.steps[i].loss)) });
    if (m !== 'SFT' && m !== 'DPO') {
      const np = Math.min(...rs.map((r) => r.probes.length));
      for (let i = 0; i < np; i++) {
        const y = mean(rs.map((r) => r.probes[i].negative));
        if (Number.isFinite(y)) probes.push({ method: m, x: rs[0].probes[i].step, y });
      }
    }
  }
  if (loss.length)
    plots.push({
      name: 'loss',
      title: 'Training loss, epoch-matched (mean over seeds; each method its own loss)',
      spec: lossCurvePlot(loss),
    });
  if (probes.length)
    plots.push({
      name: 'negatives-logprob',
      title: 'Mean token log-prob of fixed negative samples during the main runs',
      spec: linePlot(probes, {
        title: "Negatives' mean token log-prob (main runs, mean over seeds)",
        xTitle: 'update',
        yTitle: 'mean token log-prob of negatives',
      }),
    });
  if (gain.length >= 2)
    plots.push({
      name: 'gain-vs-mixed',
      title: 'RIFT-token − RFT (Mean@K) against the share of mixed problems',
      spec: linePlot(gain, {
        title: 'RIFT-token − RFT against the share of mixed problems',
        xTitle: 'share of mixed problems',
        yTitle: `Δ Mean@${K}`,
        yFormat: '.1%',
      }),
    });

  // ---- the document -------------------------------------------------------------------------------------------------
  const s = d.sizing;
  const ro = d.rollouts.main;
  const intro = [
    `A fair small-scale reproduction of the RIFT paper's comparisons (setting '${d.setting}': ${d.settingLabel}; size '${d.size}') on the base model ${d.modelDir} (CPU). ` +
      `Training problems: ${d.splits.train} (${d.problemSets.main}); validation ${d.splits.val}; test ${d.splits.test}; out-of-distribution test ${d.splits.ood} (${d.problemSets.ood}). ` +
      `None of them was in the base model's SFT data. Rollouts: K = ${ro ? ro.k : '?'} samples per training problem from the base model (temperature 1); the main setting uses the first K = ${K}` +
      (ro
        ? ` (${ro.atK.positives} positive / ${ro.atK.negatives} negative, ${pct(ro.atK.mixedRate)} of problems mixed)`
        : '') +
      '; rewards +1 correct / −0.2 wrong.',
    `**Protocol (declared before the runs):** ${s.sequencesPerUpdate} sequences per update for every method (DPO: ${s.sequencesPerUpdate / 2} pairs), AdamW (weight decay 0.01, clipping 1), cosine schedule with linear warm-up over ${100 * s.warmupFraction}% of the updates. ` +
      `**Epoch-matched**: every method makes ${s.epochs} pass${s.epochs > 1 ? 'es' : ''} over its own data (SFT: the reference solutions; RFT/DFT: the positives; DPO: its pairs; RIFT/naive: every sample). ` +
      `**Update-matched**: every method makes ${d.updateBudget} updates (RIFT-token's epoch-matched count). ` +
      `Learning rates from {${s.lrGrid.join(', ')}} (DPO: {${s.dpoLrGrid.join(', ')}} × β {${s.dpoBetaGrid.join(', ')}}) on the validation split; then seeds ${s.seeds.join(', ')} (data order and evaluation sampling; the rollouts are shared). ` +
      `Mean@${K} and Pass@${K} from ${K} samples per test problem; ± is the half-width of the 95% Student-t interval over seeds; Δ are paired over seeds (paired t-test, two-sided p). Ablations use seeds ${s.ablationSeeds.join(', ')}.`,
    untuned.length ? `**Not tuned** (no finished grid run): ${untuned.join(', ')} used the middle of the grid.` : '',
  ]
    .filter(Boolean)
    .join('\n\n');
  const tableMd = [
    ...(verdicts.length
      ? ["### The paper's claims at this scale\n", table(['claim', 'result'], verdicts, ['---', '---']), '']
      : []),
    `### Epoch-matched\n`,
    mainTable,
    `\n### Update-matched (${d.updateBudget} updates each)\n`,
    updRows.length ? updTable : '(not run)',
    `\n### Paired comparisons (test, same seeds)\n`,
    cmpRows.length ? cmpTable : '(not run)',
  ].join('\n');
  if (ablRows.length)
    sections.push({
      heading: 'Ablations (test split)',
      body: `Each variant changes one thing of the main setting; Δ are paired over the ablation seeds.\n\n${ablTable}`,
    });
  if (diffRows.length)
    sections.push({
      heading: 'Gain against the share of mixed problems',
      body: `Training on easier or harder problem sets (their own rollouts and test sets); the main set's row uses the main runs on the ablation seeds.\n\n${diffTable}`,
    });
  if (collapseText) sections.push({ heading: 'The naive loss: when and how it collapses', body: collapseText });
  if (memoryText) sections.push({ heading: 'Memory: RIFT vs DPO (held reference)', body: memoryText });
  const skipped = d.runs.filter((r) => r.skipped);
  const counts = Object.entries(
    d.runs.reduce<Record<string, number>>((a, r) => ((a[r.spec.part] = (a[r.spec.part] ?? 0) + 1), a), {}),
  )
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  sections.push({
    heading: 'What ran',
    body:
      `Parts run this time: ${d.parts.join(', ')}. Runs in the report: ${d.runs.length} (${counts}). ${skipped.length ? `Skipped for lack of data: ${[...new Set(skipped.map((r) => r.skipped))].join('; ')}. ` : ''}Wall time of this call: ${d.wallSeconds.toFixed(0)} s (${Object.entries(
        d.timings,
      )
        .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
        .join(', ')}).\n\n` +
      callsLine(d.calls ?? []) +
      `Every run is in ${path.join(d.out, 'runs.jsonl')} (per-update loss, log-prob probes, per-problem correct counts) and ${path.join(d.out, 'results.json')}. ` +
      (d.size === 'tiny'
        ? 'Calling runExperiment again with the same options resumes: finished runs are reused, missing ones run.'
        : `\`rift experiment --setting ${d.setting} --out ${d.out}${d.size === 'quick' ? ' --quick' : ''}\` resumes: finished runs are reused, missing ones run.`),
  });
  const r = await writeReport(path.join(out, 'report'), {
    title: `RIFT experiment (${d.setting} setting, ${d.size})`,
    intro,
    table: tableMd,
    plots,
    sections,
  });
  return r.markdown;
}
