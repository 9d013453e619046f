import { collectFingerprint, type HostFacts, parseCpuInfo, parseOsRelease, parseSmt, parseTurbo, physicalCoresFromTopology, SYS } from './fingerprint';

const X86_HT = [0, 1, 2, 3]
  .map(
    (cpu) => `processor\t: ${cpu}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
microcode\t: 0xd0003a5
physical id\t: 0
siblings\t: 4
core id\t\t: ${cpu % 2}
cpu cores\t: 2
`,
  )
  .join('\n');

const ARM = `processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU part\t: 0xd0c

processor\t: 1
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU part\t: 0xd0c
`;

const FACTS: HostFacts = {
  cpuModels: ['Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz'],
  cores: 4,
  memory: 34_359_738_368,
  kernel: '6.8.0-45-generic',
  arch: 'x64',
  platform: 'linux',
  hostname: 'bench-01',
};

describe('fingerprint parsing', () => {
  it('reads model, vendor, microcode and physical cores (distinct physical id + core id) from x86 cpuinfo', () => {
    expect(parseCpuInfo(X86_HT)).toEqual({
      model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
      vendor: 'GenuineIntel',
      microcode: '0xd0003a5',
      physicalCores: 2,
      sockets: 1,
    });
  });

  it('leaves physical cores out when cpuinfo has no core ids (ARM)', () => {
    expect(parseCpuInfo(ARM)).toEqual({});
  });

  it('derives physical cores from sysfs topology where cpuinfo cannot', () => {
    const files: Record<string, string> = {};
    for (let cpu = 0; cpu < 4; cpu++) {
      files[`${SYS.topology(cpu)}/physical_package_id`] = '0\n';
      files[`${SYS.topology(cpu)}/core_id`] = `${cpu}\n`;
    }
    expect(physicalCoresFromTopology((path) => files[path], 4)).toEqual({ physicalCores: 4, sockets: 1 });
    expect(physicalCoresFromTopology(() => undefined, 4)).toBeUndefined();
  });

  it('reads SMT from smt/active, else from smt/control', () => {
    expect(parseSmt('1\n', 'on\n')).toEqual({ smt: true, smtControl: 'on' });
    expect(parseSmt('0\n', 'notsupported\n')).toEqual({ smt: false, smtControl: 'notsupported' });
    expect(parseSmt(undefined, 'off')).toEqual({ smt: false, smtControl: 'off' });
    expect(parseSmt(undefined, undefined)).toEqual({});
    expect(parseSmt('garbage', undefined)).toEqual({});
  });

  it('reads turbo from intel_pstate/no_turbo (inverted), else cpufreq/boost', () => {
    expect(parseTurbo('1\n', undefined)).toBe(false);
    expect(parseTurbo('0\n', '0')).toBe(true);
    expect(parseTurbo(undefined, '1\n')).toBe(true);
    expect(parseTurbo(undefined, '0\n')).toBe(false);
    expect(parseTurbo(undefined, undefined)).toBeUndefined();
  });

  it('reads the distribution name from os-release', () => {
    expect(parseOsRelease('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')).toBe('Ubuntu 24.04.1 LTS');
    expect(parseOsRelease("PRETTY_NAME='Debian'")).toBe('Debian');
    expect(parseOsRelease('NAME=x')).toBeUndefined();
    expect(parseOsRelease(undefined)).toBeUndefined();
  });
});

describe('collectFingerprint', () => {
  it('puts together what can be read', () => {
    const files: Record<string, string> = {
      [SYS.cpuinfo]: X86_HT,
      [SYS.governor]: 'performance\n',
      [SYS.smtActive]: '1\n',
      [SYS.smtControl]: 'on\n',
      [SYS.intelNoTurbo]: '1\n',
      [SYS.osRelease]: 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
    };
    expect(collectFingerprint((path) => files[path], FACTS)).toEqual({
      cpuModel: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
      cpuVendor: 'GenuineIntel',
      microcode: '0xd0003a5',
      cores: 4,
      physicalCores: 2,
      sockets: 1,
      memory: 34_359_738_368,
      kernel: '6.8.0-45-generic',
      arch: 'x64',
      os: 'linux',
      distribution: 'Ubuntu 24.04.1 LTS',
      hostname: 'bench-01',
      governor: 'performance',
      smt: true,
      smtControl: 'on',
      turbo: false,
    });
  });

  it('omits what cannot be read: no nulls, no guesses', () => {
    const fingerprint = collectFingerprint(() => undefined, { ...FACTS, cpuModels: [''] });
    expect(fingerprint).toEqual({ cores: 4, memory: 34_359_738_368, kernel: '6.8.0-45-generic', arch: 'x64', os: 'linux', hostname: 'bench-01' });
    expect(Object.values(fingerprint)).not.toContain(null);
  });

  it('reads this machine for real', () => {
    const fingerprint = collectFingerprint();
    expect(fingerprint).toMatchObject({ cores: expect.any(Number), memory: expect.any(Number), kernel: expect.any(String), arch: process.arch, os: process.platform });
    expect(typeof fingerprint.cpuModel).toBe('string');
    expect(JSON.stringify(fingerprint).length).toBeLessThan(16_384); // the server's limit
  });
});
