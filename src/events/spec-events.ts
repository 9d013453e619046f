/** Architectures a hardware spec can name. */
export const ARCHITECTURES = ['x86_64', 'aarch64', 'riscv64'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** A hardware spec (a class of identical machines) was registered (operator). */
export interface SpecCreated {
  type: 'SpecCreated';
  schemaVersion: 1;
  data: {
    specId: string;
    slug: string;
    name: string;
    architecture: Architecture;
    cpu: number;
    /** bytes */
    memory: number;
    /** bytes */
    disk: number;
    network: boolean;
  };
}

export type SpecEvent = SpecCreated;
