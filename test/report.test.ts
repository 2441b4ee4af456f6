// Report: vega-lite specs → SVG (vega in a worker thread) → PNG (resvg), report.md with the table; spec checks.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lossCurvePlot, accuracyPlot, memoryPlot, plotFont, svgToPng } from '../lib/report/plots';
import { writeReport } from '../lib/report/report';
import { evalTable } from '../lib/eval/evaluate';

const METHODS = ['sft', 'rft', 'dft', 'rift', 'dpo'];
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const loss = METHODS.flatMap((method, m) =>
  Array.from({ length: 30 }, (_, step) => ({
    method,
    step,
    loss: 2.5 * Math.exp(-step / (8 + 3 * m)) + 0.3 + 0.05 * m,
  })),
);
const accuracy = METHODS.map((method, m) => ({
  method,
  meanAtK: 0.2 + 0.08 * m,
  passAtK: { '1': 0.2 + 0.08 * m, '4': 0.45 + 0.07 * m, '8': 0.6 + 0.06 * m },
  peakMemoryBytes: (40 + 12 * m) * 2 ** 20,
  trainSeconds: 12.5 + m,
}));
const memory = METHODS.flatMap((method, m) => [
  { method, category: 'weights', bytes: 16 * 2 ** 20 },
  { method, category: 'gradients', bytes: 16 * 2 ** 20 },
  { method, category: 'optimizer', bytes: 32 * 2 ** 20 },
  { method, category: 'activations', bytes: (10 + 6 * m) * 2 ** 20 },
  ...(method === 'dpo' ? [{ method, category: 'reference model', bytes: 16 * 2 ** 20 }] : []),
]);

const outDir = process.env.RIFT_REPORT_TEST_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'rift-report-'));
afterAll(() => {
  if (!process.env.RIFT_REPORT_TEST_DIR) fs.rmSync(outDir, { recursive: true, force: true });
});

test('writeReport writes report.md, SVGs and PNGs', async () => {
  const table = evalTable(accuracy);
  const { markdown, files } = await writeReport(outDir, {
    title: 'RIFT vs baselines',
    intro: 'Synthetic arithmetic, tiny model.',
    table,
    plots: [
      { name: 'loss', title: 'Training loss', spec: lossCurvePlot(loss) },
      { name: 'accuracy', title: 'Accuracy', spec: accuracyPlot(accuracy) },
      { name: 'memory', title: 'Memory', spec: memoryPlot(memory) },
    ],
  });
  expect(files.map((f) => path.basename(f))).toEqual([
    'loss.svg',
    'loss.png',
    'accuracy.svg',
    'accuracy.png',
    'memory.svg',
    'memory.png',
    'report.md',
  ]);
  for (const name of ['loss', 'accuracy', 'memory']) {
    const svg = fs.readFileSync(path.join(outDir, `${name}.svg`), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const m of METHODS) expect(svg).toContain(`>${m}<`);
    expect(svg).toContain(plotFont().family);
    const png = fs.readFileSync(path.join(outDir, `${name}.png`));
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    // IHDR: width and height at bytes 16..23; rendered at 2× the SVG size
    const w = png.readUInt32BE(16),
      h = png.readUInt32BE(20);
    const sw = Number(/width="(\d+(?:\.\d+)?)"/.exec(svg)![1]),
      sh = Number(/height="(\d+(?:\.\d+)?)"/.exec(svg)![1]);
    expect(w).toBe(Math.ceil(2 * sw));
    expect(h).toBe(Math.ceil(2 * sh));
    expect(w).toBeGreaterThan(600);
    // Text makes up most of the pixels that differ from the background; without any font resvg draws no text.
    if (plotFont().file) expect(png.length).toBeGreaterThan(20_000);
    expect(png.length).toBeLessThan(2_000_000);
  }
  const md = fs.readFileSync(markdown, 'utf8');
  expect(md).toContain('# RIFT vs baselines');
  expect(md).toContain(table.trim());
  expect(md).toContain('![Accuracy](accuracy.png)');
  expect(md).toContain('[SVG](memory.svg)');
  // nothing left behind by the atomic writes
  expect(fs.readdirSync(outDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  const svg = fs.readFileSync(path.join(outDir, 'memory.svg'), 'utf8');
  expect(svg).toContain('memory (MiB)');
  expect(svg).toContain('reference model');
});

// Needs a TrueType font on the machine (writeReport warns where there is none: the PNGs then have no text).
(plotFont().file ? test : test.skip)('svgToPng draws text with the chosen font (text changes pixels)', () => {
  const svg = (t: string) =>
    `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="30"><rect width="120" height="30" fill="white"/><text x="5" y="20" font-family="${plotFont().family}" font-size="14">${t}</text></svg>`;
  const a = svgToPng(svg(''), { scale: 1 }),
    b = svgToPng(svg('rift 42%'), { scale: 1 });
  expect(a.equals(b)).toBe(false);
});

test('svgToPng refuses a bad scale', () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>';
  expect(() => svgToPng(svg, { scale: 0 })).toThrow(RangeError);
  expect(() => svgToPng(svg, { scale: 17 })).toThrow(/^scale: /);
});

test('specs and table', () => {
  expect(plotFont().family).not.toBe('');
  const acc = accuracyPlot(accuracy) as { data: { values: { metric: string }[] } };
  expect([...new Set(acc.data.values.map((v) => v.metric))]).toEqual(['Mean@8', 'Pass@1', 'Pass@4', 'Pass@8']);
  expect(() => lossCurvePlot([])).toThrow(/^series: no rows/);
  expect(() => lossCurvePlot([{ method: 'a', step: 0, loss: NaN }])).toThrow(/^series: series\[0\]\.loss/);
  expect(() => lossCurvePlot([{ method: 'a', step: 0, loss: 0 }], { logScale: true })).toThrow(RangeError);
  expect(() => memoryPlot([{ method: 'a', category: 'w', bytes: -1 }])).toThrow(/^rows: rows\[0\]\.bytes/);
  expect(() => accuracyPlot([{ method: 'a', meanAtK: 0.1, passAtK: { x: 1 } }])).toThrow(RangeError);

  const t = evalTable(accuracy.slice(0, 2));
  expect(t.split('\n')[0]).toBe('| method | Mean@8 | Pass@1 | Pass@4 | Pass@8 | peak memory | trainSeconds |');
  expect(t.split('\n')[1]).toBe('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  expect(t.split('\n')[2]).toBe('| sft | 20.0% | 20.0% | 45.0% | 60.0% | 40.0 MiB | 12.50 |');
  expect(evalTable([{ method: 'a|b', meanAtK: 0.5, passAtK: {} }])).toContain('a\\|b');
});

test('writeReport rejects bad plot names', async () => {
  const spec = lossCurvePlot(loss);
  await expect(writeReport(outDir, { plots: [{ name: '../x', spec }] })).rejects.toThrow(/^plots: plots\[0\]\.name/);
  await expect(
    writeReport(outDir, {
      plots: [
        { name: 'a', spec },
        { name: 'a', spec },
      ],
    }),
  ).rejects.toThrow(/two plots named/);
});
