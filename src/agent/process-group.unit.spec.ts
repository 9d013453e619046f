import { spawn } from 'node:child_process';
import { groupAlive, parseProcStat, processGone as gone, terminateGroup } from './process-group';

/** Starts `sh -c script` in a group of its own; resolves with its pid once it printed its first line. */
function startGroup(script: string): Promise<{ pid: number; firstLine: string }> {
  const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve({ pid: child.pid!, firstLine: out.split('\n')[0] });
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
    const { pid } = await startGroup('echo bye');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await terminateGroup(pid, { graceMs: 100 })).toBe('gone');
  });
});

