// rift rollout --server URL --served-model NAME: the rollouts come from an OpenAI-compatible server
// (lib/rollout/remote*.ts). --model then only gives the tokenizer, the chat template, prompt_format.json and the
// context (config.json's max_position_embeddings; no weights are loaded). Everything that can be checked is
// checked before --out is written: prompts built, the server reached, the served model listed, prompt lengths
// against the served context (max_model_len, when the server gives it).
import * as fs from 'fs';
import * as path from 'path';
import { Command, Option } from 'commander';
import { readJsonFile } from '../../data/files';
import { Tokenizer } from '../../engine/tokenizer';
import { buildPrompts, makeScorer } from '../../loop';
import { loadRewardModule } from '../../reward/rewards';
import { runRemoteRollouts } from '../../rollout/remote';
import { checkServedModel, openAIClient, openAISampler, type RemoteApi } from '../../rollout/remote-openai';
import { CliError, type Output } from '../io';
import { int, num } from '../parse';
import { loadProblems, loadPromptFormat, PROMPT_BUILD_NAMES, type SamplingFlags } from './common';
import type { PromptFlags } from './prompt';

export interface RemoteFlags extends SamplingFlags, PromptFlags {
  model: string;
  problems: string;
  k: number;
  out: string;
  rewardModule?: string;
  rPos: number;
  rNeg: number;
  server?: string;
  servedModel?: string;
  serverApi: RemoteApi;
  serverN?: number;
  concurrency: number;
  maxRetries: number;
  requestTimeout: number;
  serverLogprobs?: boolean;
}

const REMOTE_ONLY = [
  'servedModel',
  'serverApi',
  'serverN',
  'concurrency',
  'maxRetries',
  'requestTimeout',
  'serverLogprobs',
] as const;
const flagName = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

export function remoteOptions(cmd: Command): Command {
  return cmd
    .option(
      '--server <url>',
      "sample from an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, rift serve) at this base URL, e.g. http://127.0.0.1:8000/v1; --model then gives only the tokenizer, chat template and context",
    )
    .option('--served-model <name>', 'with --server: the model name the server serves')
    .addOption(
      new Option(
        '--server-api <api>',
        'with --server: completions (the prompt sent as token ids) or chat (the messages; the server renders its template)',
      )
        .choices(['completions', 'chat'])
        .default('completions'),
    )
    .option('--server-n <n>', 'with --server: samples per request (default --k; 1 for servers that ignore n)', int(1))
    .option('--concurrency <n>', 'with --server: requests in flight', int(1), 8)
    .option(
      '--max-retries <n>',
      'with --server: retries per request on 429, 5xx, timeouts and dropped connections (exponential backoff)',
      int(0),
      5,
    )
    .option('--request-timeout <seconds>', 'with --server: time limit of one request attempt', num(0.001), 600)
    .option('--server-logprobs', "with --server: record the server's per-token log-probs");
}

/** Refuses remote options without --server, --server without --served-model, and local-only options with it. */
export function checkRemoteFlags(cmd: Command, f: RemoteFlags): void {
  const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  if (f.server === undefined) {
    const k = REMOTE_ONLY.find(given);
    if (k) throw new CliError(`${flagName(k)}: only with --server`);
    return;
  }
  if (f.servedModel === undefined)
    throw new CliError('--server: needs --served-model NAME (the model name the server serves)');
  for (const k of ['device', 'precision'])
    if (given(k)) throw new CliError(`${flagName(k)}: not used with --server (the server runs the model)`);
}

/** The tokenizer and context of --model without its weights. */
function loadTokenizerDir(dir: string): { tokenizer: Tokenizer; contextLength?: number } {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CliError(`--model: ${dir}: no such directory`);
  if (!fs.existsSync(path.join(dir, 'tokenizer.json')))
    throw new CliError(`--model: ${dir}: no tokenizer.json (with --server, --model gives the local tokenizer)`);
  const cfgFile = path.join(dir, 'config.json');
  let contextLength: number | undefined;
  if (fs.existsSync(cfgFile)) {
    const cfg = readJsonFile(cfgFile, 1 << 20) as { max_position_embeddings?: unknown };
    const n = cfg?.max_position_embeddings;
    if (n !== undefined && !(Number.isSafeInteger(n) && (n as number) > 0))
      throw new CliError(`--model: ${cfgFile}: max_position_embeddings must be a positive integer`);
    contextLength = n as number | undefined;
  }
  return { tokenizer: Tokenizer.load(dir), contextLength };
}

export async function remoteRollout(f: RemoteFlags, o: Output): Promise<void> {
  const server = f.server!,
    servedModel = f.servedModel!;
  const problems = loadProblems(f.problems);
  const { tokenizer, contextLength } = loadTokenizerDir(f.model);
  const rewardFn = f.rewardModule ? await loadRewardModule(path.resolve(f.rewardModule)) : undefined;
  const score = makeScorer({ rPos: f.rPos, rNeg: f.rNeg, rewardFn });
  const format = loadPromptFormat(f, f.model, tokenizer);
  if (f.serverApi === 'chat' && format.spec.format !== 'chat')
    throw new CliError(
      '--server-api chat: needs the chat prompt format (the server renders chat messages); use --prompt-format chat or --server-api completions',
    );
  const prompts = buildPrompts(format, problems, {
    maxNewTokens: f.maxNewTokens,
    contextLength,
    names: PROMPT_BUILD_NAMES,
  });
  const ropts = {
    server,
    model: servedModel,
    api: f.serverApi,
    maxRetries: f.maxRetries,
    timeoutMs: Math.ceil(f.requestTimeout * 1000),
    logprobs: !!f.serverLogprobs,
  };
  let client;
  try {
    client = openAIClient(ropts);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const served = await checkServedModel(client.client, ropts);
  if (served.maxModelLen !== undefined)
    buildPrompts(format, problems, {
      maxNewTokens: f.maxNewTokens,
      contextLength: served.maxModelLen,
      names: { problems: `--server ${server} (max_model_len ${served.maxModelLen})`, maxNewTokens: '--max-new-tokens' },
    });
  const t0 = Date.now();
  let tokens = 0;
  o.startBar('rollout', problems.length);
  const r = await runRemoteRollouts({
    sampler: openAISampler(client.client, ropts),
    servedModel,
    tokenizer,
    problems,
    k: f.k,
    file: f.out,
    score,
    onWarning: (m) => o.log(m),
    promptFor: (p) => ({
      ids: prompts.get(p.id)!,
      ...(format.spec.format === 'chat' ? { messages: format.messages(p) } : {}),
    }),
    promptFormat: format.spec,
    perRequest: f.serverN,
    concurrency: f.concurrency,
    params: { temperature: f.temperature, topP: f.topP, topK: f.topK, maxNewTokens: f.maxNewTokens, seed: f.seed },
    onProgress: (p) => {
      tokens += p.records.reduce((a, x) => a + x.tokens, 0);
      o.updateBar('rollout', p.index + 1, p.total, { tokens });
    },
  });
  o.endBar('rollout', { generated: r.generated, reused: r.reused });
  const s = r.stats,
    c = client.counters;
  const seconds = (Date.now() - t0) / 1000;
  o.result(
    {
      command: 'rollout',
      file: f.out,
      server: client.baseURL,
      servedModel,
      generated: r.generated,
      reused: r.reused,
      droppedBytes: r.droppedBytes,
      duplicates: r.duplicates,
      seconds,
      tokens,
      stats: s,
      promptFormat: format.spec,
      requests: c,
    },
    `${f.out}: ${s.samples} samples for ${s.problems} problems from ${servedModel} at ${client.baseURL} (${r.generated} generated, ${r.reused} already there` +
      `${r.droppedBytes ? `, ${r.droppedBytes} torn bytes cut` : ''}) in ${seconds.toFixed(1)} s; ${c.attempts} HTTP requests` +
      `${c.rateLimited + c.serverErrors + c.connectionErrors ? ` (${c.rateLimited} × 429, ${c.serverErrors} × 5xx, ${c.connectionErrors} failed connections, retried)` : ''}\n` +
      `positives ${s.positives}, negatives ${s.negatives} (by the reward's sign), correct ${s.correct}, mixed problems ${(100 * s.mixedRate).toFixed(1)}%, ` +
      `all-correct ${s.allCorrect}, all-wrong ${s.allWrong}, mean reward ${s.meanReward.toFixed(4)}`,
  );
}
