// Rollout records and reference solutions as training Examples (prompt ids + response ids + reward).
// A rollout's text has special tokens stripped, so a sample that ended on the eos token gets it back.
import type { Problem } from '../data/problems';
import type { Tokenizer } from '../engine/tokenizer';
import type { RolloutRecord } from '../rollout/store';
import type { Example } from '../train/examples';
import { promptFor, responseFor } from './prompt';

function eosId(tok: Tokenizer): number | undefined {
  return tok.eosTokenIds.length ? tok.eosTokenIds[0] : undefined;
}

/** One rollout record as a training example (prompt re-encoded; eos appended when the sample stopped on it). */
export function exampleFromRecord(rec: RolloutRecord, problem: Problem, tok: Tokenizer): Example | null {
  const resp = tok.encode(rec.text, { addSpecialTokens: false });
  const eos = eosId(tok);
  const ids = rec.finishReason === 'stop' && eos !== undefined ? Int32Array.from([...resp, eos]) : resp;
  if (ids.length === 0) return null;
  return { problemId: rec.problemId, sampleIndex: rec.sampleIndex, promptIds: tok.encode(promptFor(problem)), responseIds: ids, reward: rec.reward };
}

/** Training examples of the records whose problem is in `problems` (others are skipped and counted). */
export function rolloutExamples(records: readonly RolloutRecord[], problems: readonly Problem[], tok: Tokenizer): { examples: Example[]; skipped: number } {
  const byId = new Map(problems.map((p) => [p.id, p]));
  const examples: Example[] = [];
  let skipped = 0;
  for (const r of records) {
    const p = byId.get(r.problemId);
    const e = p ? exampleFromRecord(r, p, tok) : null;
    if (e) examples.push(e);
    else skipped++;
  }
  return { examples, skipped };
}

/** The problems' worked solutions as examples with reward 1 (SFT's data); problems without a solution are skipped. */
export function referenceExamples(problems: readonly Problem[], tok: Tokenizer): Example[] {
  return problems
    .filter((p) => typeof p.solution === 'string')
    .map((p) => ({ problemId: p.id, sampleIndex: 0, promptIds: tok.encode(promptFor(p)), responseIds: tok.encode(responseFor(p)), reward: 1 }));
}
