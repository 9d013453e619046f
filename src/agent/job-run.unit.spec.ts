import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobPayload } from '../modules/gateway/protocol';
import { JobRun, type JobRunSettings, NO_EXECUTOR_ERROR, type RunEnd } from './job-run';
import { silentLog } from './log';
import { processGone as gone } from './process-group';

let root: string;
let pidDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'runway-jobrun-'));
  pidDir = await mkdtemp(join(tmpdir(), 'runway-jobrun-pids-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(pidDir, { recursive: true, force: true });
});

const settings = (extra: Partial<JobRunSettings> = {}): JobRunSettings => ({
  workRoot: root,
  keepWorkDirs: false,
  maxOutputBytes: 1024 * 1024,
  maxFileBytes: 1024 * 1024,
  maxFiles: 255,
  killGraceMs: 2_000,
  baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C' },
  container: null,
  ...extra,
});

let counter = 0;
const job = (extra: Partial<JobPayload> = {}): JobPayload => ({
  id: `00000000-0000-7000-8000-${String(++counter).padStart(12, '0')}`,
  attempt: 1,
  spec: 'x86',
  image: null,
  cmd: ['sh', '-c', 'true'],
  entrypoint: null,
  env: {},
  timeout: 60,
  filePaths: [],
  ...extra,
});

function run(payload: JobPayload, extra: Partial<JobRunSettings> = {}, frameLimit = 25 * 1024 * 1024): { run: JobRun; started: Promise<void> } {
  let started!: () => void;
  const startedPromise = new Promise<void>((resolve) => (started = resolve));
  return { run: new JobRun(payload, settings(extra), silentLog, () => frameLimit, () => started()), started: startedPromise };
}

const ended = (end: RunEnd) => {
  if (end.kind !== 'ended') throw new Error(`expected the job to run, got ${JSON.stringify(end)}`);
  return end;
};

describe('JobRun (real processes)', () => {
  it('runs the command in a fresh work directory with a minimal environment, captures output and files, then removes the directory', async () => {
    const script = 'pwd > out/pwd; echo "A=$A TOKEN=${RUNWAY_RUNNER_TOKEN:-unset} HOME=$HOME"; echo oops >&2; mkdir -p out; env > out/env';
    const { run: r } = run(job({ cmd: ['-c', `mkdir out; ${script}`], entrypoint: ['sh'], env: { A: '1', HOME: '/job-home' }, filePaths: ['out/pwd', 'out/env', 'missing', '../x'] }));
    const end = ended(await r.ended);
    expect(end.exit).toEqual({ code: 0, signal: null });
    expect(end.stoppedFor).toBeNull();
    expect(end.output!.stdout).toBe('A=1 TOKEN=unset HOME=/job-home\n');
    expect(end.output!.stderr).toBe('oops\n');
    const workDir = end.output!.files['out/pwd'].trim();
    expect(workDir.startsWith(root)).toBe(true);
    expect(existsSync(workDir)).toBe(false);
    const vars = end.output!.files['out/env'].trim().split('\n').map((line) => line.split('=')[0]).filter((name) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(name));
    expect(vars.sort()).toEqual(['A', 'HOME', 'LANG', 'PATH']);
    expect(Object.keys(end.output!.files).sort()).toEqual(['out/env', 'out/pwd']);
    expect(end.output!.truncated).toBe(false);
  });

  it('reports a non-zero exit and a death by signal as they are', async () => {
    expect(ended(await run(job({ cmd: ['sh', '-c', 'exit 3'] })).run.ended).exit).toEqual({ code: 3, signal: null });
    expect(ended(await run(job({ cmd: ['sh', '-c', 'kill -SEGV $$'] })).run.ended).exit).toEqual({ code: null, signal: 'SIGSEGV' });
  });

  it('does not start a command that does not exist, and says why', async () => {
    const end = await run(job({ cmd: ['./no-such-benchmark'] })).run.ended;
    expect(end).toEqual({ kind: 'not-started', error: expect.stringMatching(/could not start "\.\/no-such-benchmark": .*ENOENT/) });
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses an image job at once without a container executor, and never runs its cmd on the host', async () => {
    const marker = join(pidDir, 'ran-on-host');
    const end = await run(job({ image: `ghcr.io/a/b@sha256:${'0'.repeat(64)}`, cmd: ['sh', '-c', `touch ${marker}`] })).run.ended;
    expect(end).toEqual({ kind: 'not-started', error: NO_EXECUTOR_ERROR });
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses an image job when the executor is not on PATH', async () => {
    const end = await run(job({ image: `ghcr.io/a/b@sha256:${'0'.repeat(64)}` }), {
      container: { tool: 'podman', network: 'none', engineEnv: {} },
      baseEnv: { PATH: '/nonexistent' },
    }).run.ended;
    expect(end).toEqual({ kind: 'not-started', error: expect.stringContaining('podman is not on') });
  });

  it('keeps the first bytes of a flood of output and says truncated, without the job blocking', async () => {
    const { run: r } = run(job({ cmd: ['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" a; echo done >&2'] }), { maxOutputBytes: 1000 });
    const end = ended(await r.ended);
    expect(end.exit.code).toBe(0);
    expect(end.output!.stdout).toBe('a'.repeat(1000));
    expect(end.output!.stderr).toBe('done\n');
    expect(end.output!.truncated).toBe(true);
  });

  it('reads files no further than the frame can carry, keeping small files whole', async () => {
    const { run: r } = run(job({ cmd: ['sh', '-c', 'head -c 500000 /dev/zero | tr "\\0" b > big; echo small > small'], filePaths: ['big', 'small'] }), {}, 12_000);
    const end = ended(await r.ended);
    expect(end.output!.files.small).toBe('small\n');
    expect(end.output!.files.big.length).toBeLessThanOrEqual(12_000 - 1024);
    expect(end.output!.files.big.length).toBeGreaterThan(10_000);
    expect(end.output!.truncated).toBe(true);
  });

  it('stops a job past its timeout: the whole group is gone and the reason is timeout', async () => {
    const pidFile = join(pidDir, 'timeout');
    const warnings: string[] = [];
    const log = { ...silentLog, warn: (message: string) => void warnings.push(message) };
    const r = new JobRun(job({ timeout: 1, cmd: ['sh', '-c', `sleep 300 & echo $! > ${pidFile}; wait`] }), settings(), log, () => 25 * 1024 * 1024, () => undefined);
    const end = ended(await r.ended);
    expect(end.stoppedFor).toBe('timeout');
    expect(end.durationMs).toBeGreaterThanOrEqual(1_000);
    // Ended by the group's SIGTERM at the timeout, not left to the SIGKILL after the grace. (How
    // soon after the timeout is a latency, not a unit test's claim.)
    expect(end.exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(warnings).toEqual(['job timed out; stopping it']);
    expect(gone(Number(readFileSync(pidFile, 'utf8')))).toBe(true);
  });

  it('stop(cancel) ends every process of the job before it resolves, and collects nothing', async () => {
    const pidFile = join(pidDir, 'cancel');
    const { run: r, started } = run(job({ cmd: ['sh', '-c', `sleep 300 & echo $! > ${pidFile}; echo $$ >> ${pidFile}; wait`], filePaths: ['x'] }));
    await started;
    await waitUntil(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim().split('\n').length === 2);
    await r.stop('cancel');
    const pids = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
    expect(pids.every(gone)).toBe(true);
    const end = ended(await r.ended);
    expect(end.stoppedFor).toBe('cancel');
    expect(end.output).toBeNull();
  });

  it('kills what a finished job left running in its group', async () => {
    const pidFile = join(pidDir, 'leftover');
    const end = ended(await run(job({ cmd: ['sh', '-c', `sleep 300 > /dev/null 2>&1 & echo $! > ${pidFile}; exit 0`] })).run.ended);
    expect(end.exit.code).toBe(0);
    expect(gone(Number(readFileSync(pidFile, 'utf8')))).toBe(true);
  });

  it('keeps the work directory when asked to', async () => {
    const keep = await mkdtemp(join(tmpdir(), 'runway-keep-'));
    try {
      ended(await run(job({ cmd: ['sh', '-c', 'echo kept > f'] }), { workRoot: keep, keepWorkDirs: true }).run.ended);
      const [dir] = await readdir(keep);
      expect(readFileSync(join(keep, dir, 'f'), 'utf8')).toBe('kept\n');
    } finally {
      await rm(keep, { recursive: true, force: true });
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
