// Rollout records and reference solutions as training Examples (prompt ids + response ids + reward), with the
// prompt built by the run's PromptFormat. A record that holds a promptHash must get back exactly the prompt tokens
// its sample was drawn after (else an error: the problem text, the format or the tokenizer changed), and no
// example may be longer than the model's context. A rollout's text has special tokens stripped, so a sample that
// ended on the eos token gets it back; a reference solution is followed by the eos token.
import type { Problem } from '../data/problems';
import { promptHash } from '../data/prompt-spec';
import type { Tokenizer } from '../engine/tokenizer';
import type { RolloutRecord } from '../rollout/store';
import type { Example } from '../train/examples';
import type { PromptFormat } from './prompt';

export interface ExampleOptions {
  /** The model's context (max_position_embeddings): a longer example is a RangeError naming it. */
  contextLength?: number;
  /** Names the rollouts in errors (default 'rollouts'). */
  source?: string;
}

function eosId(tok: Tokenizer): number | undefined {
  return tok.eosTokenIds.length ? tok.eosTokenIds[0] : undefined;
}

function checkLength(e: Example, what: string, o: ExampleOptions): void {
  const n = e.promptIds.length + e.responseIds.length;
  if (o.contextLength !== undefined && n > o.contextLength)
    throw new RangeError(
      `${what}: prompt (${e.promptIds.length} tokens) and response (${e.responseIds.length}) make ${n} tokens, ` +
        `more than the model's context of ${o.contextLength} positions (max_position_embeddings)`,
    );
}

/** One rollout record as a training example (prompt rebuilt and checked against the record; eos appended when the sample stopped on it). */
export function exampleFromRecord(
  rec: RolloutRecord,
  problem: Problem,
  format: PromptFormat,
  o: ExampleOptions = {},
): Example | null {
  const tok = format.tokenizer;
  const what = `${o.source ?? 'rollouts'}: problem ${JSON.stringify(rec.problemId)} sample ${rec.sampleIndex}`;
  const promptIds = format.ids(problem);
  if (rec.promptHash !== undefined && promptHash(promptIds) !== rec.promptHash)
    throw new RangeError(
      `${what}: the prompt built now (${promptIds.length} tokens, hash ${promptHash(promptIds)}) is not the one the sample was drawn after ` +
        `(${rec.promptTokens} tokens, hash ${rec.promptHash}): the problem text, the prompt format or the tokenizer changed since the rollout`,
    );
  const resp = tok.encode(rec.text, { addSpecialTokens: false });
  const eos = eosId(tok);
  const ids = rec.finishReason === 'stop' && eos !== undefined ? Int32Array.from([...resp, eos]) : resp;
  if (ids.length === 0) return null;
  const e = { problemId: rec.problemId, sampleIndex: rec.sampleIndex, promptIds, responseIds: ids, reward: rec.reward };
  checkLength(e, what, o);
  return e;
}

/** Training examples of the records whose problem is in `problems` (others, and empty responses, are skipped and counted). */
export function rolloutExamples(
  records: readonly RolloutRecord[],
  problems: readonly Problem[],
  format: PromptFormat,
  o: ExampleOptions = {},
): { examples: Example[]; skipped: number } {
  const byId = new Map(problems.map((p) => [p.id, p]));
  const examples: Example[] = [];
  let skipped = 0;
  for (const r of records) {
    const p = byId.get(r.problemId);
    const e = p ? exampleFromRecord(r, p, format, o) : null;
    if (e) examples.push(e);
    else skipped++;
  }
  return { examples, skipped };
}

/** The problems' worked solutions + eos as examples with reward 1 (SFT's data); problems without a solution are skipped. */
export function referenceExamples(
  problems: readonly Problem[],
  format: PromptFormat,
  o: Omit<ExampleOptions, 'source'> = {},
): Example[] {
  const tok = format.tokenizer;
  const eos = eosId(tok);
  const out: Example[] = [];
  for (const p of problems) {
    if (typeof p.solution !== 'string') continue;
    const sol = tok.encode(p.solution, { addSpecialTokens: false });
    if (sol.length === 0 && eos === undefined) continue;
    const e = {
      problemId: p.id,
      sampleIndex: 0,
      promptIds: format.ids(p),
      responseIds: eos === undefined ? sol : Int32Array.from([...sol, eos]),
      reward: 1,
    };
    checkLength(e, `problems: problem ${JSON.stringify(p.id)} (reference solution)`, o);
    out.push(e);
  }
  return out;
}
