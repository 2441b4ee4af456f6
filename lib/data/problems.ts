// Problems: one JSON object per line, {id, problem, answer, solution?}. Every field is checked, ids must be unique
// within the file, and each failure names `file:line`. Other fields are ignored (not carried over).
import { readJsonl, writeJsonlAtomic } from './jsonl';

export interface Problem {
  id: string;
  problem: string;
  /** The reference final answer, as text ("18", "\\frac{3}{4}"). */
  answer: string;
  /** A worked solution ending in \boxed{answer} (used by SFT / as a demonstration). */
  solution?: string;
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** Checks one record's shape (not id uniqueness); throws TypeError/RangeError naming the field. */
export function checkProblem(v: unknown): Problem {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TypeError(`expected a JSON object, got ${kind(v)}`);
  const o = v as Record<string, unknown>;
  if (!('id' in o)) throw new TypeError('missing field "id"');
  if (typeof o.id !== 'string') throw new TypeError(`field "id" must be a string, got ${kind(o.id)}`);
  if (o.id.trim() === '') throw new RangeError('field "id" must be a non-empty string');
  for (const f of ['problem', 'answer'] as const) {
    if (!(f in o)) throw new TypeError(`missing field "${f}" (id "${o.id}")`);
    if (typeof o[f] !== 'string')
      throw new TypeError(
        `field "${f}" must be a string, got ${kind(o[f])} (id "${o.id}"; write numbers as strings, e.g. "18")`,
      );
    if ((o[f] as string).trim() === '') throw new RangeError(`field "${f}" must not be empty (id "${o.id}")`);
  }
  if (o.solution !== undefined && typeof o.solution !== 'string')
    throw new TypeError(`field "solution" must be a string when present, got ${kind(o.solution)} (id "${o.id}")`);
  const p: Problem = { id: o.id, problem: o.problem as string, answer: o.answer as string };
  if (typeof o.solution === 'string') p.solution = o.solution;
  return p;
}

/** Reads and validates a problems file; errors are `file:line: ...` TypeErrors/RangeErrors/SyntaxErrors. */
export function readProblems(file: string): Problem[] {
  const seen = new Map<string, number>();
  return readJsonl<Problem>(file, (v, line) => {
    const p = checkProblem(v);
    const first = seen.get(p.id);
    if (first !== undefined) throw new RangeError(`duplicate id "${p.id}" (first on line ${first})`);
    seen.set(p.id, line);
    return p;
  }).records;
}

/** Writes problems atomically as JSONL (after the same checks readProblems applies). */
export function writeProblems(file: string, problems: readonly Problem[]): void {
  if (!Array.isArray(problems)) throw new TypeError('problems: must be an array');
  const seen = new Set<string>();
  const out = problems.map((p, i) => {
    let q: Problem;
    try {
      q = checkProblem(p);
    } catch (e) {
      const E = e instanceof RangeError ? RangeError : TypeError;
      throw new E(`problems[${i}]: ${(e as Error).message}`);
    }
    if (seen.has(q.id)) throw new RangeError(`problems[${i}]: duplicate id "${q.id}"`);
    seen.add(q.id);
    return q;
  });
  writeJsonlAtomic(file, out);
}
