// The engine queue of `rift serve`: one job on the engine at a time (the model and its KV caches take one call at
// a time), at most `maxWaiting` more waiting in arrival order. A job submitted to a full queue is refused at once
// (the server answers 429), a job whose signal aborts while it waits leaves the queue, and a closed queue takes no
// more jobs but lets the running and waiting ones finish (graceful shutdown).

export class QueueFullError extends Error {
  constructor(readonly maxWaiting: number) {
    super(`the server is busy: ${maxWaiting} request${maxWaiting === 1 ? '' : 's'} already waiting; retry later`);
    this.name = 'QueueFullError';
  }
}

export class QueueClosedError extends Error {
  constructor() {
    super('the server is shutting down');
    this.name = 'QueueClosedError';
  }
}

interface Job {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class EngineQueue {
  private readonly waiting: Job[] = [];
  private active = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly maxWaiting: number) {
    if (!Number.isSafeInteger(maxWaiting) || maxWaiting < 0)
      throw new RangeError(`maxQueue: must be an integer ≥ 0, got ${maxWaiting}`);
  }

  /** Jobs waiting (not counting the running one). */
  get size(): number {
    return this.waiting.length;
  }

  get running(): boolean {
    return this.active;
  }

  /**
   * Runs `run` when the engine is free. Throws QueueFullError (queue full) or QueueClosedError (shut down) at once;
   * rejects with `signal.reason` when the signal aborts before the job started.
   */
  submit<T>(run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new QueueClosedError();
    if (this.active && this.waiting.length >= this.maxWaiting) throw new QueueFullError(this.maxWaiting);
    return new Promise<T>((resolve, reject) => {
      const job: Job = { run, resolve: resolve as (v: unknown) => void, reject, signal };
      if (signal) {
        if (signal.aborted) return reject(signal.reason);
        job.onAbort = () => {
          const i = this.waiting.indexOf(job);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            reject(signal.reason);
            this.notifyIdle();
          }
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.waiting.push(job);
      this.pump();
    });
  }

  private pump(): void {
    if (this.active) return;
    const job = this.waiting.shift();
    if (!job) return this.notifyIdle();
    this.active = true;
    if (job.onAbort) job.signal!.removeEventListener('abort', job.onAbort);
    let p: Promise<unknown>;
    try {
      p = job.run();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(job.resolve, job.reject).finally(() => {
      this.active = false;
      this.pump();
    });
  }

  private notifyIdle(): void {
    if (this.active || this.waiting.length) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Takes no more jobs (submit throws QueueClosedError); running and waiting jobs go on. */
  close(): void {
    this.closed = true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves when no job runs or waits. */
  idle(): Promise<void> {
    if (!this.active && !this.waiting.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Rejects every waiting job with `reason` (the running one is stopped through its own signal). */
  dropWaiting(reason: unknown): void {
    for (const job of this.waiting.splice(0)) {
      if (job.onAbort) job.signal!.removeEventListener('abort', job.onAbort);
      job.reject(reason);
    }
    this.notifyIdle();
  }
}
