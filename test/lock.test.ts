// Output locks (lib/data/lock.ts): one writer at a time, the holder named, stale locks (dead pid, unreadable file)
// taken over, other hosts' locks never taken, release only removes our own lock.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { acquireLock, lockFileFor, OutputLockedError, pidAlive, type LockInfo } from '../lib/data/lock';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-lock-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  expect(pidAlive(r.pid!)).toBe(false);
  return r.pid!;
}

const write = (file: string, info: Partial<LockInfo>) =>
  fs.writeFileSync(
    file,
    JSON.stringify({
      pid: 1,
      host: os.hostname(),
      started: '2026-01-01T00:00:00Z',
      command: 'rift train',
      token: 'other',
      ...info,
    }),
  );

test('lock file names: beside a file, inside a directory', () => {
  expect(lockFileFor('/a/r.jsonl', 'file')).toBe('/a/r.jsonl.lock');
  expect(lockFileFor('/a/out', 'dir')).toBe(path.join('/a/out', '.rift.lock'));
});

test('a second writer is refused with the holder named; release lets the next one in', () => {
  const f = path.join(dir, 'a.lock');
  const lock = acquireLock(f, '--out: a', 'rift rollout');
  const info = JSON.parse(fs.readFileSync(f, 'utf8')) as LockInfo;
  expect(info).toMatchObject({ pid: process.pid, host: os.hostname(), command: 'rift rollout' });
  let err: unknown;
  try {
    acquireLock(f, '--out: a', 'rift rollout');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(OutputLockedError);
  expect((err as Error).message).toMatch(
    new RegExp(`^--out: a: in use by rift rollout \\(pid ${process.pid} on host `),
  );
  lock.release();
  lock.release(); // idempotent
  expect(fs.existsSync(f)).toBe(false);
  acquireLock(f, '--out: a').release();
  expect(fs.readdirSync(dir).filter((n) => n.startsWith('a.lock'))).toEqual([]); // no temp files left
});

test('stale locks are taken over: a dead pid on this host, an unreadable lock file', () => {
  const f = path.join(dir, 'b.lock');
  write(f, { pid: deadPid() });
  const lock = acquireLock(f, 'b');
  expect(JSON.parse(fs.readFileSync(f, 'utf8')).pid).toBe(process.pid);
  lock.release();
  fs.writeFileSync(f, '{"pid": 12'); // not JSON: not ours, not a live holder
  acquireLock(f, 'b').release();
  expect(fs.readdirSync(dir).filter((n) => n.startsWith('b.lock'))).toEqual([]);
});

test('a live holder on this host and any holder on another host are respected', () => {
  const f = path.join(dir, 'c.lock');
  write(f, { pid: 1 }); // init: always alive
  expect(() => acquireLock(f, 'c')).toThrow(/^c: in use by rift train \(pid 1 on host /);
  write(f, { pid: deadPid(), host: 'elsewhere.example' });
  expect(() => acquireLock(f, 'c')).toThrow(
    /locked by rift train \(pid \d+ on host elsewhere\.example.*delete .*c\.lock/,
  );
  expect(fs.existsSync(f)).toBe(true);
});

test("release never removes another process's lock", () => {
  const f = path.join(dir, 'd.lock');
  const lock = acquireLock(f, 'd');
  write(f, { pid: 1, token: 'someone-else' }); // our lock was taken over (e.g. deleted by hand, retaken)
  lock.release();
  expect(JSON.parse(fs.readFileSync(f, 'utf8')).token).toBe('someone-else');
});
