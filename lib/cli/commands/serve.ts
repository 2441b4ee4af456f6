// rift serve: an OpenAI-compatible HTTP server on a model directory (lib/serve). Runs until SIGINT/SIGTERM, then
// shuts down gracefully: no new requests, the open ones get --grace seconds to finish (a second signal: none).
import * as path from 'path';
import { Command } from 'commander';
import { startServer } from '../../serve';
import { CliError, type Output } from '../io';
import { int, num } from '../parse';
import { DEFAULT_MODEL, deviceOptions, loadModelDir, type DeviceFlags } from './common';

interface Flags extends DeviceFlags {
  model: string;
  servedModelName?: string;
  host: string;
  port: number;
  maxQueue: number;
  maxN: number;
  maxModelLen?: number;
  grace: number;
  json?: boolean;
}

export function serveCommand(out: () => Output): Command {
  const cmd = new Command('serve')
    .description('serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions)')
    .option('--model <dir>', 'model directory (config.json, model.safetensors, tokenizer.json)', DEFAULT_MODEL)
    .option('--served-model-name <name>', "the name clients pass as model (default: the model directory's name)")
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', int(0, 65535), 8000)
    .option('--max-queue <n>', 'requests that may wait while one runs; more are answered 429', int(0), 16)
    .option('--max-n <n>', 'most choices (n) per prompt', int(1), 64)
    .option(
      '--max-model-len <n>',
      "the context a request may use (prompt + max_tokens; default and at most the model's max_position_embeddings)",
      int(1),
    )
    .option('--grace <seconds>', 'on SIGINT/SIGTERM, how long open requests may take to finish', num(0), 30);
  deviceOptions(cmd)
    .option('--json', 'JSON lines on stdout')
    .action(async (f: Flags) => {
      const o = out();
      const { model, tokenizer } = loadModelDir(f.model, '--model', f);
      const name = f.servedModelName ?? path.basename(path.resolve(f.model));
      const ctx = model.config.max_position_embeddings;
      if (f.maxModelLen !== undefined && f.maxModelLen > ctx)
        throw new CliError(
          `--max-model-len: ${f.maxModelLen} is more than the model's max_position_embeddings (${ctx})`,
        );
      const server = await startServer({
        model,
        tokenizer,
        servedModelName: name,
        host: f.host,
        port: f.port,
        maxQueue: f.maxQueue,
        maxN: f.maxN,
        contextLength: f.maxModelLen ?? ctx,
        log: (m) => o.log(m),
      });
      o.emit({ event: 'listening', url: server.url, baseURL: `${server.url}/v1`, model: name });
      if (!o.json)
        o.io.stdout(
          `rift serve: ${name} on ${server.url}/v1 (context ${f.maxModelLen ?? ctx}, queue ${f.maxQueue}); Ctrl-C stops\n`,
        );
      let signals = 0;
      await new Promise<void>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          signals++;
          if (signals === 1) {
            o.log(`rift serve: ${sig}: finishing open requests (at most ${f.grace} s)`);
            server.close({ graceMs: f.grace * 1000 }).then(() => {
              process.off('SIGINT', onSignal);
              process.off('SIGTERM', onSignal);
              resolve();
            });
          } else {
            o.log(`rift serve: ${sig} again: aborting open requests`);
            void server.close({ graceMs: 0 });
          }
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      const s = server.stats();
      o.result(
        { command: 'serve', url: server.url, model: name, ...s },
        `rift serve: stopped after ${s.requests} requests (${s.completed} completed, ${s.rejected429} answered 429, ${s.aborted} aborted, ${s.failed} failed)`,
      );
    });
  return cmd;
}
