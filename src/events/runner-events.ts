/** A runner was registered (operator); only the SHA-256 of its token is kept. */
export interface RunnerRegistered {
  type: 'RunnerRegistered';
  schemaVersion: 1;
  data: { runnerId: string; slug: string; name: string; specIds: string[]; tokenHash: string };
}

/** The runner's token was replaced; the old one stops working at once. */
export interface RunnerTokenRotated {
  type: 'RunnerTokenRotated';
  schemaVersion: 1;
  data: { tokenHash: string };
}

/** The runner's name or specs changed (operator). */
export interface RunnerUpdated {
  type: 'RunnerUpdated';
  schemaVersion: 1;
  data: { name?: string; specIds?: string[] };
}

/** The runner was archived: it can no longer connect or claim. */
export interface RunnerArchived {
  type: 'RunnerArchived';
  schemaVersion: 1;
  data: Record<string, never>;
}

/** An archived runner was brought back. */
export interface RunnerUnarchived {
  type: 'RunnerUnarchived';
  schemaVersion: 1;
  data: Record<string, never>;
}


/** The runner connected to a gateway and said hello. */
export interface RunnerConnected {
  type: 'RunnerConnected';
  schemaVersion: 1;
  data: {
    connectionId: string;
    /** The gateway instance holding the socket. */
    gateway: string;
    agentVersion: string;
    capacity: number;
    /** What the runner said of its machine in `hello`. */
    fingerprint: Record<string, unknown>;
  };
}

/** The runner's connection ended: it closed, was replaced, or its gateway was lost. */
export interface RunnerDisconnected {
  type: 'RunnerDisconnected';
  schemaVersion: 1;
  data: { connectionId: string; reason: 'closed' | 'gateway_lost' };
}

export type RunnerEvent =
  | RunnerRegistered
  | RunnerTokenRotated
  | RunnerUpdated
  | RunnerArchived
  | RunnerUnarchived
  | RunnerConnected
  | RunnerDisconnected;
