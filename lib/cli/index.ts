// The `rift` command (commander). Every subcommand gets an Output (lib/cli/io.ts): progress bars on a TTY stderr,
// JSON lines with --json. Errors become one line on stderr and exit code 1 (process.exitCode; nothing calls
// process.exit()).
import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError } from 'commander';
import { packageRoot } from '../loop/paths';
import { CliError, Output, processIo, type CliIo } from './io';
import { rolloutCommand } from './commands/rollout';
import { trainCommand } from './commands/train';
import { evalCommand } from './commands/eval';
import { profileCommand } from './commands/profile';
import { benchCommand } from './commands/bench';
import { demoCommand } from './commands/demo';
import { experimentCommand } from './commands/experiment';
import { serveCommand } from './commands/serve';

export function buildProgram(io: CliIo): { program: Command; output: () => Output | undefined } {
  let current: Output | undefined;
  const program = new Command('rift')
    .description(
      'RIFT (Reward-Informed Fine-Tuning): rollouts, training (sft/rft/dft/dpo/rift/naive), evaluation, memory profile, an OpenAI-compatible server',
    )
    .version(
      (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version,
    )
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s), outputError: () => undefined })
    .showSuggestionAfterError(true);
  const out = (cmd?: Command) => () => {
    const json = !!(cmd?.opts().json ?? false);
    current = new Output(io, json);
    return current;
  };
  // each command's Output is made when its action runs (it needs the parsed --json)
  const register = (make: (o: () => Output) => Command) => {
    const self: { c?: Command } = {};
    const c = make(() => out(self.c)());
    self.c = c;
    program.addCommand(
      c.exitOverride().configureOutput({
        writeOut: (s) => io.stdout(s),
        writeErr: (s) => io.stderr(s),
        outputError: () => undefined,
      }),
    );
  };
  register(rolloutCommand);
  register(trainCommand);
  register(evalCommand);
  register(profileCommand);
  register(demoCommand);
  register(experimentCommand);
  register(serveCommand);
  program.addCommand(benchCommand());
  return { program, output: () => current };
}

/** Strips commander's "error: " prefix and trailing newline. */
function commanderMessage(e: CommanderError): string {
  return e.message.replace(/^error:\s*/, '').trim();
}

/** Runs the CLI on argv (without node and the script); returns the exit code (also set on process.exitCode by run()). */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const { program, output } = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    output()?.stopBar();
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help' ||
        e.exitCode === 0
      )
        return 0;
      io.stderr(`rift: ${commanderMessage(e)}\n`);
      return 1;
    }
    const msg = e instanceof Error ? e.message : String(e);
    const o = output();
    if (o?.json) o.emit({ event: 'error', message: msg });
    io.stderr(`rift: ${msg.split('\n')[0]}\n`);
    if (process.env.RIFT_DEBUG && e instanceof Error && !(e instanceof CliError)) io.stderr(`${e.stack}\n`);
    return 1;
  }
}

/** The bin entry: runs main on process.argv and sets process.exitCode. */
export function run(): Promise<void> {
  return main(process.argv.slice(2)).then((code) => {
    if (code !== 0) process.exitCode = code;
  });
}
