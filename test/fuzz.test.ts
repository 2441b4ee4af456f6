// A short slice of the TS parser fuzzer (test/helpers/fuzz-parsers.ts): every mutated JSONL file, tokenizer.json,
// latest.json and trainer-state.json either parses or throws an Error naming the input; the JSONL reader gives the
// same result however its input is chunked. RIFT_FUZZ_TS_N / RIFT_FUZZ_SEED run another slice; the long campaign
// is scripts/fuzz-parsers.js.
import { runParserFuzz, TARGETS } from './helpers/fuzz-parsers';

const N = Number(process.env.RIFT_FUZZ_TS_N ?? 8000);
const SEED = Number(process.env.RIFT_FUZZ_SEED ?? 20261204);

test(`fuzz: ${N} mutated inputs over ${TARGETS.join(', ')} (seed ${SEED}): parse or throw a named Error, never crash`, () => {
  const r = runParserFuzz({ n: N, seed: SEED });
  console.log(
    `TS parser fuzz (seed ${SEED}): ${r.inputs} inputs, ${r.crashes.length} crashes, ${r.ms} ms; ${JSON.stringify(r.byTarget)}`,
  );
  expect(r.crashes).toEqual([]);
  expect(r.inputs).toBe(N);
  for (const t of TARGETS) {
    // the mutations reach both sides of every parser
    expect(r.byTarget[t].parsed).toBeGreaterThan(0);
    expect(r.byTarget[t].rejected).toBeGreaterThan(r.byTarget[t].inputs / 10);
  }
});
