import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerKill, containerName, containerRemove, containerRun, findOnPath } from './container';

const IMAGE = `ghcr.io/acme/bench@sha256:${'a'.repeat(64)}`;
const JOB = { id: '01a22bb5-283f-78f9-bd87-3b6a2b5ba06c', attempt: 2, image: IMAGE, cmd: ['cargo', 'bench', '--', '--save-baseline', 'main'], entrypoint: null, env: {} };

describe('container command lines', () => {
  it('runs the image with the work directory mounted, no network, and the cmd after the image', () => {
    expect(containerRun(JOB, '/usr/bin/podman', '/tmp/runway-runner/job-1', 'none')).toEqual({
      name: `runway-${JOB.id}-2`,
      argv: [
        '/usr/bin/podman', 'run', '--rm', '--name', `runway-${JOB.id}-2`, '--network', 'none',
        '-w', '/work', '-v', '/tmp/runway-runner/job-1:/work',
        IMAGE, 'cargo', 'bench', '--', '--save-baseline', 'main',
      ],
    });
  });

  it('passes the env with -e, and the entrypoint as --entrypoint plus its arguments after the image', () => {
    const { argv } = containerRun({ ...JOB, entrypoint: ['/bin/sh', '-c'], cmd: ['echo "$A" > out'], env: { A: 'x y', EMPTY: '' } }, '/usr/bin/docker', '/w', 'none');
    expect(argv.slice(argv.indexOf('/w:/work') + 1)).toEqual(['-e', 'A=x y', '-e', 'EMPTY=', '--entrypoint', '/bin/sh', IMAGE, '-c', 'echo "$A" > out']);
  });

  it('uses the network it is given', () => {
    const { argv } = containerRun(JOB, 'docker', '/w', 'bench-net');
    expect(argv[argv.indexOf('--network') + 1]).toBe('bench-net');
  });

  it('refuses what would be read as an option or break the mount', () => {
    expect(() => containerRun({ ...JOB, image: '--privileged' }, 'docker', '/w', 'none')).toThrow(/refusing image/);
    expect(() => containerRun({ ...JOB, image: null }, 'docker', '/w', 'none')).toThrow(/no image/);
    expect(() => containerRun(JOB, 'docker', '/w:ro', 'none')).toThrow(/cannot be mounted/);
    expect(() => containerRun({ ...JOB, env: { 'A=B': 'x' } }, 'docker', '/w', 'none')).toThrow(/invalid environment/);
  });

  it('kills and removes by name', () => {
    expect(containerName(JOB)).toBe(`runway-${JOB.id}-2`);
    expect(containerKill('docker', 'n')).toEqual(['docker', 'kill', 'n']);
    expect(containerKill('docker', 'n', 'TERM')).toEqual(['docker', 'kill', '--signal', 'TERM', 'n']);
    expect(containerRemove('podman', 'n')).toEqual(['podman', 'rm', '-f', 'n']);
  });
});

describe('findOnPath', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'runway-path-'));
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    await writeFile(join(dir, 'a', 'podman'), 'not executable');
    await writeFile(join(dir, 'b', 'podman'), '#!/bin/sh\n');
    await chmod(join(dir, 'b', 'podman'), 0o755);
    await mkdir(join(dir, 'a', 'docker')); // a directory is not a tool
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the first executable file, skipping non-executables, directories and relative entries', () => {
    expect(findOnPath('podman', ['relative', join(dir, 'a'), join(dir, 'b')].join(':'))).toBe(join(dir, 'b', 'podman'));
    expect(findOnPath('docker', join(dir, 'a'))).toBeNull();
    expect(findOnPath('podman', undefined)).toBeNull();
  });
});
