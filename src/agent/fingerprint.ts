import { readFileSync } from 'node:fs';
import * as os from 'node:os';

/**
 * The machine a runner reports in `hello`: what a benchmark result depends on. Everything is
 * read from the machine itself; a value that cannot be read is left out, never guessed or null.
 */
export type Fingerprint = Record<string, string | number | boolean>;

/** Reads a small text file; undefined when it cannot be read. */
export type ReadText = (path: string) => string | undefined;

export interface HostFacts {
  cpuModels: readonly string[];
  /** Logical CPUs. */
  cores: number;
  memory: number;
  kernel: string;
  arch: string;
  platform: string;
  hostname: string;
}

export const SYS = {
  cpuinfo: '/proc/cpuinfo',
  governor: '/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor',
  smtActive: '/sys/devices/system/cpu/smt/active',
  smtControl: '/sys/devices/system/cpu/smt/control',
  intelNoTurbo: '/sys/devices/system/cpu/intel_pstate/no_turbo',
  cpufreqBoost: '/sys/devices/system/cpu/cpufreq/boost',
  osRelease: '/etc/os-release',
  topology: (cpu: number) => `/sys/devices/system/cpu/cpu${cpu}/topology`,
} as const;

export function readSysText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function hostFacts(): HostFacts {
  const cpus = os.cpus();
  return {
    cpuModels: cpus.map((cpu) => cpu.model),
    // os.cpus() is empty where /proc is hidden; the scheduler's count is the next best.
    cores: cpus.length > 0 ? cpus.length : os.availableParallelism(),
    memory: os.totalmem(),
    kernel: os.release(),
    arch: os.arch(),
    platform: os.platform(),
    hostname: os.hostname(),
  };
}

export interface CpuInfo {
  model?: string;
  vendor?: string;
  microcode?: string;
  physicalCores?: number;
  sockets?: number;
}

/**
 * `/proc/cpuinfo`: the model (x86 `model name`, some ARM kernels `Processor`/`cpu model`), and
 * physical cores as distinct (physical id, core id) pairs when the kernel lists them.
 */
export function parseCpuInfo(text: string): CpuInfo {
  const result: CpuInfo = {};
  const cores = new Set<string>();
  const sockets = new Set<string>();
  let complete = true;
  for (const block of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    if (fields.size === 0) continue;
    const model = fields.get('model name') ?? fields.get('cpu model') ?? fields.get('processor name');
    if (result.model === undefined && model) result.model = model;
    if (result.vendor === undefined && fields.get('vendor_id')) result.vendor = fields.get('vendor_id');
    if (result.microcode === undefined && fields.get('microcode')) result.microcode = fields.get('microcode');
    if (!fields.has('processor')) continue;
    const socket = fields.get('physical id');
    const core = fields.get('core id');
    if (socket === undefined || core === undefined) complete = false;
    else {
      cores.add(`${socket}:${core}`);
      sockets.add(socket);
    }
  }
  if (complete && cores.size > 0) {
    result.physicalCores = cores.size;
    result.sockets = sockets.size;
  }
  return result;
}

/** Physical cores from sysfs topology (ARM and others without ids in cpuinfo). */
export function physicalCoresFromTopology(read: ReadText, logicalCpus: number): { physicalCores: number; sockets: number } | undefined {
  const cores = new Set<string>();
  const sockets = new Set<string>();
  for (let cpu = 0; cpu < logicalCpus; cpu++) {
    const socket = read(`${SYS.topology(cpu)}/physical_package_id`)?.trim();
    const core = read(`${SYS.topology(cpu)}/core_id`)?.trim();
    if (!socket || !core) return undefined;
    cores.add(`${socket}:${core}`);
    sockets.add(socket);
  }
  return cores.size > 0 ? { physicalCores: cores.size, sockets: sockets.size } : undefined;
}

/** `smt/active` is 0/1; `smt/control` is on, off, forceoff, notsupported or notimplemented. */
export function parseSmt(active: string | undefined, control: string | undefined): { smt?: boolean; smtControl?: string } {
  const result: { smt?: boolean; smtControl?: string } = {};
  const a = active?.trim();
  if (a === '0' || a === '1') result.smt = a === '1';
  const c = control?.trim();
  if (c) {
    result.smtControl = c;
    if (result.smt === undefined && (c === 'on' || c === 'off' || c === 'forceoff')) result.smt = c === 'on';
  }
  return result;
}

/** intel_pstate's `no_turbo` (1: turbo off) wins over cpufreq's `boost` (1: boost on). */
export function parseTurbo(intelNoTurbo: string | undefined, cpufreqBoost: string | undefined): boolean | undefined {
  const noTurbo = intelNoTurbo?.trim();
  if (noTurbo === '0' || noTurbo === '1') return noTurbo === '0';
  const boost = cpufreqBoost?.trim();
  if (boost === '0' || boost === '1') return boost === '1';
  return undefined;
}

/** `PRETTY_NAME="Ubuntu 24.04 LTS"` from /etc/os-release. */
export function parseOsRelease(text: string | undefined): string | undefined {
  const match = text === undefined ? null : /^PRETTY_NAME=(.*)$/m.exec(text);
  if (match === null) return undefined;
  const value = match[1].trim().replace(/^(["'])(.*)\1$/, '$2');
  return value === '' ? undefined : value;
}

const word = (text: string | undefined) => {
  const value = text?.trim();
  return value ? value : undefined;
};

export function collectFingerprint(read: ReadText = readSysText, facts: HostFacts = hostFacts()): Fingerprint {
  const cpuinfo = read(SYS.cpuinfo);
  const parsed = cpuinfo === undefined ? {} : parseCpuInfo(cpuinfo);
  const osModel = facts.cpuModels.find((model) => model.trim() !== '' && model !== 'unknown')?.trim();
  const topology = parsed.physicalCores === undefined ? physicalCoresFromTopology(read, facts.cores) : undefined;
  const fingerprint: Record<string, string | number | boolean | undefined> = {
    cpuModel: osModel ?? parsed.model,
    cpuVendor: parsed.vendor,
    microcode: parsed.microcode,
    cores: facts.cores > 0 ? facts.cores : undefined,
    physicalCores: parsed.physicalCores ?? topology?.physicalCores,
    sockets: parsed.sockets ?? topology?.sockets,
    memory: facts.memory > 0 ? facts.memory : undefined,
    kernel: word(facts.kernel),
    arch: word(facts.arch),
    os: word(facts.platform),
    distribution: parseOsRelease(read(SYS.osRelease)),
    hostname: word(facts.hostname),
    governor: word(read(SYS.governor)),
    ...parseSmt(read(SYS.smtActive), read(SYS.smtControl)),
    turbo: parseTurbo(read(SYS.intelNoTurbo), read(SYS.cpufreqBoost)),
  };
  return Object.fromEntries(Object.entries(fingerprint).filter(([, value]) => value !== undefined)) as Fingerprint;
}
