// Plots for the report: vega-lite specs → SVG (vega, renderer 'none', no browser, no canvas) → PNG (@resvg/resvg-js,
// system fonts).
//
// vega and vega-lite 6 are ESM-only and vega's graph has a top-level await (vega-canvas probes for the optional
// `canvas` package), so neither require() (even Node's require(esm)) nor an import() in jest's vm sandbox can load
// them from this CommonJS package. renderSvgs() therefore runs them in a worker thread — a plain Node context
// where import() works — on module paths resolved here; the SVG strings come back as messages. One worker renders
// every plot of a call (vega loads in ≈ 0.5 s).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { Worker } from 'worker_threads';

/** A vega-lite spec (a plain JSON object; see https://vega.github.io/vega-lite/docs/). */
export type VegaLiteSpec = Record<string, unknown>;

// ---- fonts ----------------------------------------------------------------------------------------------------

/** Families tried in order, with the file names that identify their regular face. */
const FONT_CANDIDATES: readonly { family: string; file: RegExp }[] = [
  { family: 'DejaVu Sans', file: /^DejaVuSans\.ttf$/i },
  { family: 'Liberation Sans', file: /^LiberationSans-Regular\.ttf$/i },
  { family: 'Noto Sans', file: /^NotoSans-Regular\.(ttf|otf)$/i },
  { family: 'Arial', file: /^arial\.ttf$/i },
  { family: 'Helvetica', file: /^Helvetica\.ttc$/i },
  { family: 'FreeSans', file: /^FreeSans\.(ttf|otf)$/i },
];

function fontDirs(): string[] {
  const home = os.homedir();
  return [
    '/usr/share/fonts',
    '/usr/local/share/fonts',
    path.join(home, '.fonts'),
    path.join(home, '.local/share/fonts'),
    '/Library/Fonts',
    '/System/Library/Fonts',
    path.join(home, 'Library/Fonts'),
    ...(process.env.WINDIR ? [path.join(process.env.WINDIR, 'Fonts')] : []),
  ];
}

export interface PlotFont {
  /** The family name plots are drawn with ('sans-serif' when none of the known families was found). */
  family: string;
  /** Its regular face, when found. */
  file?: string;
}

let cachedFont: PlotFont | undefined;

/**
 * The first of DejaVu Sans, Liberation Sans, Noto Sans, Arial, Helvetica, FreeSans found in the usual font folders
 * (searched 5 levels deep). Cached.
 */
export function plotFont(): PlotFont {
  if (cachedFont) return cachedFont;
  const found = new Map<string, string>();
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < 5) walk(p, depth + 1);
      } else {
        const c = FONT_CANDIDATES.find((f) => f.file.test(e.name));
        if (c && !found.has(c.family)) found.set(c.family, p);
      }
    }
  };
  for (const d of fontDirs()) walk(d, 0);
  const best = FONT_CANDIDATES.find((c) => found.has(c.family));
  cachedFont = best ? { family: best.family, file: found.get(best.family) } : { family: 'sans-serif' };
  return cachedFont;
}

// ---- shared look ----------------------------------------------------------------------------------------------

/** A categorical palette that stays distinguishable in print (Tableau 10). */
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];

function baseConfig(font: string): Record<string, unknown> {
  return {
    font,
    background: 'white',
    padding: 12,
    view: { stroke: '#dddddd' },
    title: { fontSize: 15, fontWeight: 'bold', anchor: 'start', offset: 12 },
    axis: { labelFontSize: 12, titleFontSize: 13, titlePadding: 8, gridColor: '#eeeeee', labelLimit: 240 },
    legend: { labelFontSize: 12, titleFontSize: 13, labelLimit: 240, symbolSize: 120 },
    range: { category: PALETTE },
  };
}

function spec(title: string, body: Record<string, unknown>, font = plotFont().family): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    config: baseConfig(font),
    ...body,
  };
}

/** Methods in first-appearance order (keeps colours and bar order as the caller listed them). */
const methodsOf = (rows: readonly { method: string }[]) => [...new Set(rows.map((r) => r.method))];

function checkRows<T extends object>(name: string, rows: readonly T[], check: (r: T, i: number) => void): void {
  if (!Array.isArray(rows)) throw new TypeError(`${name}: must be an array`);
  if (rows.length === 0) throw new RangeError(`${name}: no rows to plot`);
  rows.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) throw new TypeError(`${name}: ${name}[${i}] must be an object`);
    if (typeof (r as { method?: unknown }).method !== 'string')
      throw new TypeError(`${name}: ${name}[${i}].method must be a string`);
    check(r, i);
  });
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

// ---- the plots ------------------------------------------------------------------------------------------------

export interface LossPoint {
  method: string;
  step: number;
  loss: number;
}

export interface PlotOptions {
  title?: string;
  width?: number;
  height?: number;
}

/** Training loss against step, one line per method. `logScale` puts loss on a log axis (all losses must be > 0). */
// One colour per method name in every plot (a plot that lacks 'base' must not shift the others' colours):
// the project's method names take fixed slots of PALETTE; other names are hashed into it.
const METHOD_SLOTS = ['base', 'sft', 'rft', 'dft', 'dpo', 'rift-token', 'rift-sequence', 'naive'];
export function methodColor(method: string): string {
  const slot = METHOD_SLOTS.indexOf(method.toLowerCase());
  if (slot >= 0) return PALETTE[slot];
  let h = 0;
  for (const ch of method) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}
function methodScale(methods: readonly string[]): { domain: string[]; range: string[] } {
  return { domain: [...methods], range: methods.map(methodColor) };
}

export function lossCurvePlot(
  series: readonly LossPoint[],
  opts: PlotOptions & { logScale?: boolean } = {},
): VegaLiteSpec {
  checkRows('series', series, (r, i) => {
    if (!finite(r.step)) throw new RangeError(`series: series[${i}].step must be a finite number`);
    if (!finite(r.loss)) throw new RangeError(`series: series[${i}].loss must be a finite number, got ${r.loss}`);
    if (opts.logScale && !(r.loss > 0)) throw new RangeError(`series: series[${i}].loss = ${r.loss} on a log scale`);
  });
  const methods = methodsOf(series);
  const steps = new Set(series.map((r) => r.step)).size;
  return spec(opts.title ?? 'Training loss', {
    width: opts.width ?? 520,
    height: opts.height ?? 300,
    data: { values: series.map((r) => ({ method: r.method, step: r.step, loss: r.loss })) },
    mark: { type: 'line', point: steps <= 40, strokeWidth: 2 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', axis: { tickMinStep: 1, format: 'd' } },
      y: {
        field: 'loss',
        type: 'quantitative',
        title: 'loss',
        scale: opts.logScale ? { type: 'log' } : { zero: false },
      },
      color: { field: 'method', type: 'nominal', title: 'method', scale: methodScale(methods) },
      tooltip: [{ field: 'method' }, { field: 'step' }, { field: 'loss', format: '.4f' }],
    },
  });
}

export interface AccuracyRow {
  method: string;
  meanAtK: number;
  /** Pass@k by k (keys are k: 1, 4, 8 …), values in [0, 1]. */
  passAtK: Readonly<Record<string, number>>;
  /** K of Mean@K (default: the largest k of passAtK). */
  k?: number;
}

/** Mean@K and Pass@k per method as grouped bars (percent), the value printed above each bar. */
export function accuracyPlot(rows: readonly AccuracyRow[], opts: PlotOptions = {}): VegaLiteSpec {
  checkRows('rows', rows, (r, i) => {
    if (!finite(r.meanAtK)) throw new RangeError(`rows: rows[${i}].meanAtK must be a finite number`);
    if (typeof r.passAtK !== 'object' || r.passAtK === null)
      throw new TypeError(`rows: rows[${i}].passAtK must be an object`);
    for (const [k, v] of Object.entries(r.passAtK)) {
      if (!/^[1-9]\d*$/.test(k))
        throw new RangeError(`rows: rows[${i}].passAtK has key ${JSON.stringify(k)}, want an integer k`);
      if (!finite(v)) throw new RangeError(`rows: rows[${i}].passAtK[${k}] must be a finite number`);
    }
  });
  const methods = methodsOf(rows);
  const ks = [...new Set(rows.flatMap((r) => Object.keys(r.passAtK).map(Number)))].sort((a, b) => a - b);
  const K = rows.find((r) => r.k !== undefined)?.k ?? (ks.length ? ks[ks.length - 1] : undefined);
  const meanName = K !== undefined ? `Mean@${K}` : 'Mean@K';
  const metrics = [meanName, ...ks.map((k) => `Pass@${k}`)];
  const values = rows.flatMap((r) => [
    { method: r.method, metric: meanName, value: r.meanAtK },
    ...Object.entries(r.passAtK).map(([k, v]) => ({ method: r.method, metric: `Pass@${k}`, value: v })),
  ]);
  const barWidth = Math.max(14, Math.min(40, Math.floor(480 / (metrics.length * methods.length))));
  const offset = { field: 'method', type: 'nominal', scale: { domain: methods } };
  return spec(opts.title ?? 'Held-out accuracy', {
    width: opts.width ?? Math.max(360, metrics.length * (methods.length * barWidth + 24)),
    height: opts.height ?? 300,
    data: { values },
    encoding: {
      x: { field: 'metric', type: 'nominal', title: null, sort: metrics, axis: { labelAngle: 0, labelFontSize: 13 } },
      xOffset: offset,
      y: {
        field: 'value',
        type: 'quantitative',
        title: 'accuracy',
        scale: { domain: [0, 1] },
        axis: { format: '.0%' },
      },
    },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          color: { field: 'method', type: 'nominal', title: 'method', scale: methodScale(methods) },
          tooltip: [{ field: 'method' }, { field: 'metric' }, { field: 'value', format: '.1%' }],
        },
      },
      {
        mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 10, color: '#333333' },
        encoding: { text: { field: 'value', type: 'quantitative', format: '.0%' } },
      },
    ],
  });
}

export interface MemoryRow {
  method: string;
  /** What the bytes hold (weights, gradients, optimizer state, activations, logits, KV cache …). */
  category: string;
  bytes: number;
}

const UNITS = [
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['KiB', 2 ** 10],
  ['bytes', 1],
] as const;

/** Memory per method as stacked bars by category, in the unit that fits the largest total (KiB, MiB, GiB). */
export function memoryPlot(rows: readonly MemoryRow[], opts: PlotOptions = {}): VegaLiteSpec {
  checkRows('rows', rows, (r, i) => {
    if (typeof r.category !== 'string') throw new TypeError(`rows: rows[${i}].category must be a string`);
    if (!finite(r.bytes) || r.bytes < 0) throw new RangeError(`rows: rows[${i}].bytes must be a finite number ≥ 0`);
  });
  const methods = methodsOf(rows);
  const categories = [...new Set(rows.map((r) => r.category))];
  const totals = new Map<string, number>();
  for (const r of rows) totals.set(r.method, (totals.get(r.method) ?? 0) + r.bytes);
  const max = Math.max(...totals.values());
  const [unit, scale] = UNITS.find(([, s]) => max >= s) ?? UNITS[UNITS.length - 1];
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const longNames = methods.some((m) => m.length > 8);
  return spec(opts.title ?? 'Peak memory by method', {
    width: opts.width ?? Math.max(320, methods.length * 70),
    height: opts.height ?? 300,
    // rank: stack position (the first category at the bottom, as listed)
    data: {
      values: rows.map((r) => ({
        method: r.method,
        category: r.category,
        rank: categories.indexOf(r.category),
        amount: round(r.bytes / scale),
      })),
    },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: {
            field: 'method',
            type: 'nominal',
            title: 'method',
            sort: methods,
            axis: { labelAngle: longNames ? -30 : 0 },
          },
          y: { field: 'amount', type: 'quantitative', aggregate: 'sum', title: `memory (${unit})`, stack: 'zero' },
          color: {
            field: 'category',
            type: 'nominal',
            title: 'category',
            scale: { domain: categories },
            sort: categories,
          },
          order: { field: 'rank', type: 'quantitative', sort: 'ascending' },
          tooltip: [{ field: 'method' }, { field: 'category' }, { field: 'amount', title: unit, format: '.3~f' }],
        },
      },
      {
        // total on top of each stack
        transform: [{ aggregate: [{ op: 'sum', field: 'amount', as: 'total' }], groupby: ['method'] }],
        mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 11, color: '#333333' },
        encoding: {
          x: { field: 'method', type: 'nominal', sort: methods },
          y: { field: 'total', type: 'quantitative' },
          text: { field: 'total', type: 'quantitative', format: '.4~r' },
        },
      },
    ],
  });
}

export interface LinePoint {
  /** The line (colour). */
  method: string;
  x: number;
  y: number;
}

/** Any y against x, one line per method (the experiment's log-prob probes, accuracy against mixed share …). */
export function linePlot(
  points: readonly LinePoint[],
  opts: PlotOptions & { xTitle: string; yTitle: string; yFormat?: string },
): VegaLiteSpec {
  checkRows('points', points, (r, i) => {
    if (!finite(r.x) || !finite(r.y))
      throw new RangeError(`points: points[${i}] needs finite x and y, got (${r.x}, ${r.y})`);
  });
  const methods = methodsOf(points);
  const xs = new Set(points.map((r) => r.x)).size;
  return spec(opts.title ?? `${opts.yTitle} against ${opts.xTitle}`, {
    width: opts.width ?? 520,
    height: opts.height ?? 300,
    data: { values: points.map((r) => ({ method: r.method, x: r.x, y: r.y })) },
    mark: { type: 'line', point: xs <= 40, strokeWidth: 2 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: opts.xTitle, scale: { zero: false } },
      y: {
        field: 'y',
        type: 'quantitative',
        title: opts.yTitle,
        scale: { zero: false },
        ...(opts.yFormat ? { axis: { format: opts.yFormat } } : {}),
      },
      color: { field: 'method', type: 'nominal', title: 'method', scale: methodScale(methods) },
      tooltip: [
        { field: 'method' },
        { field: 'x', title: opts.xTitle },
        { field: 'y', title: opts.yTitle, format: '.4~f' },
      ],
    },
  });
}

export interface IntervalRow {
  method: string;
  /** The panel (e.g. 'Mean@8', 'Pass@8'). */
  metric: string;
  mean: number;
  lo: number;
  hi: number;
}

/** Means with their intervals (dots and whiskers), one row per method, one column per metric (percent axis). */
export function intervalPlot(rows: readonly IntervalRow[], opts: PlotOptions = {}): VegaLiteSpec {
  checkRows('rows', rows, (r, i) => {
    if (typeof r.metric !== 'string') throw new TypeError(`rows: rows[${i}].metric must be a string`);
    if (![r.mean, r.lo, r.hi].every(finite)) throw new RangeError(`rows: rows[${i}] needs finite mean, lo and hi`);
  });
  const methods = methodsOf(rows);
  const metrics = [...new Set(rows.map((r) => r.metric))];
  const y = { field: 'method', type: 'nominal', title: null, sort: methods };
  return spec(opts.title ?? 'Means with 95% intervals', {
    data: { values: rows.map((r) => ({ ...r })) },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: metrics, header: { labelFontSize: 13 } } },
    spec: {
      width: opts.width ?? 260,
      height: opts.height ?? Math.max(120, methods.length * 26),
      layer: [
        {
          mark: { type: 'rule', strokeWidth: 2 },
          encoding: {
            y,
            x: {
              field: 'lo',
              type: 'quantitative',
              title: 'accuracy',
              axis: { format: '.0%' },
              scale: { zero: false },
            },
            x2: { field: 'hi' },
            color: { field: 'method', type: 'nominal', legend: null, scale: methodScale(methods) },
          },
        },
        {
          mark: { type: 'point', filled: true, size: 70 },
          encoding: {
            y,
            x: { field: 'mean', type: 'quantitative' },
            color: { field: 'method', type: 'nominal', legend: null, scale: methodScale(methods) },
            tooltip: [
              { field: 'method' },
              { field: 'metric' },
              { field: 'mean', format: '.1%' },
              { field: 'lo', format: '.1%' },
              { field: 'hi', format: '.1%' },
            ],
          },
        },
      ],
    },
    resolve: { scale: { x: 'independent' } },
  });
}

// ---- rendering ------------------------------------------------------------------------------------------------

// Runs in the worker (CommonJS, eval'd): compiles each vega-lite spec, renders it headless, posts the SVGs back.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
(async () => {
  const vega = await import(workerData.vegaUrl);
  const vl = await import(workerData.vegaLiteUrl);
  const out = {};
  for (const [name, spec] of Object.entries(workerData.specs)) {
    try {
      const compiled = vl.compile(spec).spec;
      const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.Error });
      out[name] = await view.toSVG();
      view.finalize();
    } catch (e) {
      throw new Error(name + ': ' + (e && e.message ? e.message : String(e)));
    }
  }
  parentPort.postMessage({ ok: true, svgs: out });
})().catch((e) => parentPort.postMessage({ ok: false, error: e && e.stack ? e.stack : String(e) }));
`;

/** Renders vega-lite specs to SVG strings (by name), all in one worker thread. */
export async function renderSvgs(specs: Readonly<Record<string, VegaLiteSpec>>): Promise<Record<string, string>> {
  if (typeof specs !== 'object' || specs === null)
    throw new TypeError('specs: must be an object of vega-lite specs by name');
  if (Object.keys(specs).length === 0) return {};
  const workerData = {
    vegaUrl: pathToFileURL(require.resolve('vega')).href,
    vegaLiteUrl: pathToFileURL(require.resolve('vega-lite')).href,
    specs: JSON.parse(JSON.stringify(specs)) as unknown,
  };
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      f();
      void w.terminate();
    };
    w.once('message', (m: { ok: boolean; svgs?: Record<string, string>; error?: string }) =>
      settle(() => (m.ok ? resolve(m.svgs!) : reject(new Error(`plot rendering failed: ${m.error}`)))),
    );
    w.once('error', (e) => settle(() => reject(e)));
    w.once('exit', (code) => settle(() => reject(new Error(`plot rendering: worker exited with code ${code}`))));
  });
}

/** Renders one vega-lite spec to SVG. */
export async function renderSvg(specObj: VegaLiteSpec): Promise<string> {
  return (await renderSvgs({ plot: specObj })).plot;
}

export interface PngOptions {
  /** Pixels per SVG unit (default 2: sharp on high-DPI screens and in print). */
  scale?: number;
  /** Font family for text whose family is missing (default: plotFont()). */
  fontFamily?: string;
}

/** Rasterises an SVG to PNG with resvg, system fonts loaded. */
export function svgToPng(svg: string, opts: PngOptions = {}): Buffer {
  const scale = opts.scale ?? 2;
  if (!(typeof scale === 'number' && scale > 0 && scale <= 16))
    throw new RangeError(`scale: must be in (0, 16], got ${opts.scale}`);
  const font = plotFont();
  const family = opts.fontFamily ?? font.family;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: {
      loadSystemFonts: true,
      ...(font.file && family === font.family ? { fontFiles: [font.file] } : {}),
      defaultFontFamily: family,
      sansSerifFamily: family,
    },
    logLevel: 'off',
  });
  return r.render().asPng();
}
