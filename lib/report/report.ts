// The report: a Markdown file with the results table and the plots, each plot as SVG and PNG next to it.
// Every file is written atomically (temporary file + rename); report.md goes last, so a report.md on disk always
// refers to plot files that exist.
import * as fs from 'fs';
import * as path from 'path';
import { writeBytesAtomic } from '../util/atomic';
import { plotFont, renderSvgs, svgToPng, type VegaLiteSpec, type PngOptions } from './plots';

export interface ReportPlot {
  /** File stem: `${name}.svg` and `${name}.png` (letters, digits, '-', '_'). */
  name: string;
  /** Heading and alt text in report.md (default: the name). */
  title?: string;
  spec: VegaLiteSpec;
}

export interface ReportContent {
  /** Document title (default 'RIFT report'). */
  title?: string;
  /** Markdown put under the title (setup, model, data …). */
  intro?: string;
  /** The results table (Markdown, e.g. from evalTable()). */
  table?: string;
  /** Further Markdown sections, appended in order after the plots. */
  sections?: readonly { heading: string; body: string }[];
  plots: readonly ReportPlot[];
  png?: PngOptions;
}

export interface WrittenReport {
  /** Path of report.md. */
  markdown: string;
  /** Paths of every file written (plots first, report.md last). */
  files: string[];
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** Writes `dir`/report.md plus `name`.svg and `name`.png for every plot (creates `dir`). */
let warnedNoFont = false;

export async function writeReport(dir: string, content: ReportContent): Promise<WrittenReport> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir: must be a non-empty path');
  if (typeof content !== 'object' || content === null || !Array.isArray(content.plots))
    throw new TypeError('content: must be an object with a plots array');
  const seen = new Set<string>();
  content.plots.forEach((p, i) => {
    if (typeof p?.name !== 'string' || !NAME.test(p.name))
      throw new RangeError(`plots: plots[${i}].name must match ${NAME}, got ${JSON.stringify(p?.name)}`);
    if (seen.has(p.name)) throw new RangeError(`plots: two plots named ${JSON.stringify(p.name)}`);
    if (p.name === 'report') throw new RangeError('plots: "report" is reserved for report.md');
    seen.add(p.name);
    if (typeof p.spec !== 'object' || p.spec === null)
      throw new TypeError(`plots: plots[${i}].spec must be a vega-lite spec object`);
  });

  if (!plotFont().file && !warnedNoFont) {
    warnedNoFont = true;
    console.warn(
      'rift report: no TrueType font found (e.g. DejaVu Sans: apt install fonts-dejavu-core); the PNG charts will have no text, the SVGs are complete',
    );
  }
  const svgs = await renderSvgs(Object.fromEntries(content.plots.map((p) => [p.name, p.spec])));
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const p of content.plots) {
    const svg = svgs[p.name];
    const svgFile = path.join(dir, `${p.name}.svg`);
    const pngFile = path.join(dir, `${p.name}.png`);
    writeBytesAtomic(svgFile, svg);
    writeBytesAtomic(pngFile, svgToPng(svg, content.png));
    files.push(svgFile, pngFile);
  }

  const md: string[] = [`# ${content.title ?? 'RIFT report'}`, ''];
  if (content.intro) md.push(content.intro.trim(), '');
  if (content.table) md.push('## Results', '', content.table.trim(), '');
  if (content.plots.length) {
    md.push('## Plots', '');
    for (const p of content.plots) {
      const title = p.title ?? p.name;
      md.push(`### ${title}`, '', `![${title.replace(/[[\]]/g, '')}](${p.name}.png)`, '', `[SVG](${p.name}.svg)`, '');
    }
  }
  for (const s of content.sections ?? []) md.push(`## ${s.heading}`, '', s.body.trim(), '');
  const markdown = path.join(dir, 'report.md');
  writeBytesAtomic(markdown, md.join('\n'));
  files.push(markdown);
  return { markdown, files };
}
