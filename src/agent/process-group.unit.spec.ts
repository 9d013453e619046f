import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupAlive, parseProcStat, processGone as gone, processGoneIn, terminateGroup } from './process-group';

/** Starts `sh -c script` in a group of its own; resolves with its pid once it printed its first line. */
function startGroup(script: string): Promise<{ pid: number; firstLine: string; child: ChildProcess }> {
  const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve({ pid: child.pid!, firstLine: out.split('\n')[0], child });
    });
  });
}

describe('parseProcStat', () => {
  it('reads state and group after a command name with spaces and parentheses', () => {
    expect(parseProcStat('1234 (my (odd) name) S 1 4321 4321 0 -1 4194560')).toEqual({ state: 'S', pgrp: 4321 });
    expect(parseProcStat('99 (sleep) Z 1 77 77 0')).toEqual({ state: 'Z', pgrp: 77 });
    expect(parseProcStat('garbage')).toBeNull();
  });
});

describe('terminateGroup (real processes)', () => {
  it('ends the leader and everything it forked with SIGTERM', async () => {
    const { pid, firstLine } = await startGroup('sleep 300 & sleep 300 & echo $!; wait');
    const grandchild = Number(firstLine);
    expect(groupAlive(pid)).toBe(true);
    expect(await terminateGroup(pid, { graceMs: 5_000 })).toBe('terminated');
    expect(groupAlive(pid)).toBe(false);
    expect(gone(grandchild)).toBe(true);
  });

  it('sends SIGKILL after the grace when SIGTERM is ignored, and resolves only once all are gone', async () => {
    const { pid } = await startGroup('trap "" TERM; sleep 300 & echo started; wait');
    let killed = false;
    const began = Date.now();
    expect(await terminateGroup(pid, { graceMs: 300, onKill: () => (killed = true) })).toBe('killed');
    expect(Date.now() - began).toBeGreaterThanOrEqual(300);
    expect(killed).toBe(true);
    expect(groupAlive(pid)).toBe(false);
  });

  it('says gone for a group that no longer exists', async () => {
    const { pid, child } = await startGroup('echo bye');
    // Reaped by Node before 'exit' is emitted; nobody else was in its group.
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    expect(groupAlive(pid)).toBe(false);
    expect(await terminateGroup(pid, { graceMs: 100 })).toBe('gone');
  });
});


describe('processGone', () => {
  let fakeProc: string;
  beforeAll(() => {
    fakeProc = mkdtempSync(join(tmpdir(), 'runway-proc-'));
  });
  afterAll(() => rmSync(fakeProc, { recursive: true, force: true }));

  /** A /proc of our own making, with this process's stat saying `state`. */
  function fakeStat(state: string | null): void {
    rmSync(join(fakeProc, String(process.pid)), { recursive: true, force: true });
    if (state === null) return;
    mkdirSync(join(fakeProc, String(process.pid)));
    writeFileSync(join(fakeProc, String(process.pid), 'stat'), state === 'garbage' ? 'garbage' : `${process.pid} (node) ${state} 1 2 2 0 -1`);
  }

  it('says a live process is not gone, and a killed and reaped one is (ESRCH)', async () => {
    const { pid, child } = await startGroup('echo up; exec sleep 300');
    expect(gone(pid)).toBe(false);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(pid, 'SIGKILL');
    await exited;
    expect(gone(pid)).toBe(true);
  });

  it('reads a zombie as gone and a sleeping process as not, from its stat', () => {
    fakeStat('Z');
    expect(processGoneIn(fakeProc, process.pid)).toBe(true);
    fakeStat('S');
    expect(processGoneIn(fakeProc, process.pid)).toBe(false);
  });

  it('throws instead of saying gone when it cannot tell: no /proc, or a stat it cannot read', () => {
    fakeStat(null); // the process exists (it is this one), but this /proc has no entry for it: not mounted
    expect(() => processGoneIn(fakeProc, process.pid)).toThrow(/cannot tell whether process/);
    expect(() => processGoneIn(join(fakeProc, 'missing'), process.pid)).toThrow(/cannot tell whether process/);
    fakeStat('garbage');
    expect(() => processGoneIn(fakeProc, process.pid)).toThrow(/cannot tell whether process/);
  });
});
