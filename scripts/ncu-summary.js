#!/usr/bin/env node
// Sums an Nsight Compute CSV (ncu --csv --metrics gpu__time_duration.sum --log-file F) by kernel name:
//
//   node scripts/ncu-summary.js F.csv [--top 25] [--json]
//
// Prints one row per kernel name (template arguments kept, parameters dropped): launches, total ms, share of all
// kernel time, mean µs per launch; sorted by total. --json prints the same as JSON.
'use strict';
const fs = require('fs');

function parseCsvLine(line) {
  const out = [];
  let cur = '',
    quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function summarize(text) {
  const lines = text.split('\n').filter((l) => l.startsWith('"'));
  if (lines.length === 0) throw new Error('no CSV rows (was ncu run with --csv, and did it profile any kernel?)');
  const header = parseCsvLine(lines[0]);
  const col = (n) => {
    const i = header.indexOf(n);
    if (i < 0) throw new Error(`CSV has no "${n}" column`);
    return i;
  };
  const iName = col('Kernel Name'),
    iMetric = col('Metric Name'),
    iValue = col('Metric Value'),
    iUnit = col('Metric Unit');
  const by = new Map();
  let total = 0;
  for (const l of lines.slice(1)) {
    const r = parseCsvLine(l);
    if (r[iMetric] !== 'gpu__time_duration.sum') continue;
    const scale = { ns: 1e-6, us: 1e-3, usecond: 1e-3, ms: 1, msecond: 1, nsecond: 1e-6 }[r[iUnit]] ?? 1e-6;
    const ms = Number(r[iValue].replace(/,/g, '')) * scale;
    const name = r[iName].replace(/\(.*$/, '').replace(/^void /, '');
    const e = by.get(name) ?? { name, launches: 0, ms: 0 };
    e.launches++;
    e.ms += ms;
    by.set(name, e);
    total += ms;
  }
  const rows = [...by.values()]
    .sort((a, b) => b.ms - a.ms)
    .map((e) => ({
      ...e,
      ms: Math.round(e.ms * 1000) / 1000,
      share: Math.round((1000 * e.ms) / total) / 10,
      meanUs: Math.round((1000 * e.ms) / e.launches),
    }));
  return { totalMs: Math.round(total * 1000) / 1000, launches: rows.reduce((s, r) => s + r.launches, 0), rows };
}

function main() {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) throw new Error('usage: node scripts/ncu-summary.js F.csv [--top N] [--json]');
  const ti = args.indexOf('--top');
  const top = ti >= 0 ? Number(args[ti + 1]) : 25;
  const s = summarize(fs.readFileSync(file, 'utf8'));
  if (args.includes('--json')) return console.log(JSON.stringify(s, null, 2));
  console.log(`${file}: ${s.launches} kernel launches, ${s.totalMs} ms of kernel time`);
  console.log('| kernel | launches | ms | % | µs/launch |\n|---|---:|---:|---:|---:|');
  for (const r of s.rows.slice(0, top))
    console.log(`| ${r.name.slice(0, 90)} | ${r.launches} | ${r.ms} | ${r.share} | ${r.meanUs} |`);
  if (s.rows.length > top) console.log(`| … ${s.rows.length - top} more | | | | |`);
}

if (require.main === module) {
  try {
    main();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
module.exports = { summarize };
