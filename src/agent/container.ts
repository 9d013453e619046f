import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { JobPayload } from '../modules/gateway/protocol';

/** The container engines a runner can run image jobs with. */
export const CONTAINER_TOOLS = ['podman', 'docker'] as const;
export type ContainerTool = (typeof CONTAINER_TOOLS)[number];

/** Where the job's work directory is mounted, and its working directory, inside the container. */
export const CONTAINER_WORK_DIR = '/work';

/**
 * Variables the engine's client needs from the agent's environment to find its engine (the
 * container itself never sees them: it gets only the job's `env`).
 */
export const ENGINE_VARIABLES = [
  'DOCKER_HOST',
  'DOCKER_CONFIG',
  'DOCKER_CONTEXT',
  'DOCKER_CERT_PATH',
  'DOCKER_TLS_VERIFY',
  'CONTAINER_HOST',
  'CONTAINER_CONNECTION',
  'CONTAINERS_CONF',
  'CONTAINERS_REGISTRIES_CONF',
  'CONTAINERS_STORAGE_CONF',
  'REGISTRY_AUTH_FILE',
  'XDG_RUNTIME_DIR',
  'XDG_CONFIG_HOME',
  'XDG_DATA_HOME',
] as const;

/** The first executable `name` on `path` (a PATH value), or null. */
export function findOnPath(name: string, path: string | undefined): string | null {
  if (name.includes('/')) return isExecutable(name) ? name : null;
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue; // a relative PATH entry would depend on the cwd
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The container's name: one per job attempt, so a cancel can name it and a retry never collides. */
export function containerName(job: Pick<JobPayload, 'id' | 'attempt'>): string {
  return `runway-${job.id}-${job.attempt}`;
}

export interface ContainerRun {
  /** `<tool> run ...`, argv[0] being the tool's path. */
  argv: string[];
  name: string;
}

/**
 * `<tool> run --rm --name runway-<job>-<attempt> --network <network> -w /work -v <workDir>:/work
 * [-e K=V ...] [--entrypoint <entrypoint[0]>] <image> [entrypoint[1..]] <cmd...>`.
 *
 * The job's `entrypoint` replaces the image's ENTRYPOINT and `cmd` its CMD, as in OCI and
 * Kubernetes: `--entrypoint` takes one executable, so the entrypoint's arguments go after the
 * image, followed by `cmd`. Without an entrypoint the image's own ENTRYPOINT gets `cmd`.
 * Environment values go on the command line (`-e K=V`), not through the client's environment, so
 * a job cannot change how the engine client on the host behaves (DOCKER_HOST, LD_PRELOAD...).
 */
export function containerRun(job: Pick<JobPayload, 'id' | 'attempt' | 'image' | 'cmd' | 'entrypoint' | 'env'>, toolPath: string, workDir: string, network: string): ContainerRun {
  if (job.image === null || job.image === '') throw new Error('the job has no image');
  if (job.image.startsWith('-')) throw new Error(`refusing image reference ${JSON.stringify(job.image)}`);
  if (workDir.includes(':')) throw new Error(`the work directory ${workDir} cannot be mounted: it contains ':'`);
  const name = containerName(job);
  const argv = [toolPath, 'run', '--rm', '--name', name, '--network', network, '-w', CONTAINER_WORK_DIR, '-v', `${workDir}:${CONTAINER_WORK_DIR}`];
  for (const [key, value] of Object.entries(job.env)) {
    if (key === '' || key.includes('=')) throw new Error(`invalid environment variable name ${JSON.stringify(key)}`);
    argv.push('-e', `${key}=${value}`);
  }
  const entrypoint = job.entrypoint ?? [];
  if (entrypoint.length > 0) argv.push('--entrypoint', entrypoint[0]);
  argv.push(job.image, ...entrypoint.slice(1), ...job.cmd);
  return { argv, name };
}

/** `<tool> kill [--signal <signal>] <name>`. */
export function containerKill(toolPath: string, name: string, signal?: 'TERM' | 'KILL'): string[] {
  return signal === undefined ? [toolPath, 'kill', name] : [toolPath, 'kill', '--signal', signal, name];
}

/** `<tool> rm -f <name>`: makes sure nothing of the container is left after a cancel. */
export function containerRemove(toolPath: string, name: string): string[] {
  return [toolPath, 'rm', '-f', name];
}
