// The CLI's terminal side: where text goes, progress bars (cli-progress, stderr, TTY only, never with --json) and
// JSON-lines output (--json: one object per event or result on stdout).
import { SingleBar } from 'cli-progress';

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Whether stderr is a terminal (progress bars). */
  isTTY: boolean;
  /** The stream the bars draw on (default process.stderr). */
  barStream?: NodeJS.WritableStream;
}

export function processIo(): CliIo {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    isTTY: !!process.stderr.isTTY,
    barStream: process.stderr,
  };
}

/** An error the user caused (bad argument, bad file): printed as one line, exit code 1. */
export class CliError extends Error {}

export interface BarUpdate {
  tokens?: number;
  loss?: number;
}

/** Output of one command: logs, events, results and at most one progress bar at a time. */
export class Output {
  private bar?: SingleBar;
  private barStart = 0;
  constructor(
    readonly io: CliIo,
    readonly json: boolean,
  ) {}

  get bars(): boolean {
    return this.io.isTTY && !this.json;
  }

  /** A human-readable line (stderr), or {event: 'log'} in JSON mode. */
  log(line: string): void {
    if (this.json) this.emit({ event: 'log', message: line });
    else if (this.bar) {
      this.bar.update({});
      this.io.stderr(`\r\x1b[K${line}\n`);
    } else this.io.stderr(line + '\n');
  }

  /** One JSON line on stdout (JSON mode only). */
  emit(obj: Record<string, unknown>): void {
    if (this.json) this.io.stdout(JSON.stringify(obj) + '\n');
  }

  /** A command's result: a JSON line in JSON mode, else `text` on stdout. */
  result(obj: Record<string, unknown>, text?: string): void {
    if (this.json) this.emit({ event: 'result', ...obj });
    else if (text !== undefined) this.io.stdout(text.endsWith('\n') ? text : text + '\n');
  }

  startBar(label: string, total: number): void {
    this.stopBar();
    this.emit({ event: 'start', label, total });
    if (!this.bars) return;
    this.barStart = Date.now();
    this.bar = new SingleBar({
      format: `${label.padEnd(22)} [{bar}] {value}/{total} | {tps} tok/s | loss {loss} | ETA {eta_formatted}`,
      stream: this.io.barStream ?? process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
      fps: 5,
      barsize: 24,
    });
    this.bar.start(total, 0, { tps: '–', loss: '–' });
  }

  updateBar(label: string, done: number, total: number, u: BarUpdate = {}): void {
    this.emit({ event: 'progress', label, done, total, ...u });
    if (!this.bar) return;
    const secs = (Date.now() - this.barStart) / 1000;
    const tps = u.tokens !== undefined && secs > 0 ? Math.round(u.tokens / secs).toString() : '–';
    this.bar.update(done, { tps, loss: u.loss !== undefined ? u.loss.toFixed(4) : '–' });
  }

  endBar(label: string, extra: Record<string, unknown> = {}): void {
    this.emit({ event: 'end', label, ...extra });
    this.stopBar();
  }

  stopBar(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
  }
}
