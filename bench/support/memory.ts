import { readFileSync } from 'node:fs';

/**
 * Resident memory of a process (VmRSS in /proc/<pid>/status), in bytes: every page of it in
 * RAM now, its heap, its code, thread stacks and the shared libraries' pages it touched. null
 * when the process is gone or there is no /proc.
 */
export function processRssBytes(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/** `12.3 MiB` */
export function mebibytes(bytes: number, digits = 1): string {
  return `${(bytes / 2 ** 20).toFixed(digits)} MiB`;
}
