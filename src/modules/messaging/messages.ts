/**
 * Every message Runway sends between its roles over the bus, one type per subject (the subjects
 * are in subjects.ts). The modules that publish and the ones that subscribe both import them from
 * here, so none of them imports another role's module for a message's shape.
 */

/** Work that may be claimable now; sent on `<prefix>.dispatch.<spec>`. */
export interface DispatchMessage {
  spec: string;
}

/** A cancel for the runner holding a job; sent on `<prefix>.runners.<runner>.cancel`. */
export interface CancelMessage {
  runner: string;
  job: string;
  attempt: number;
  reason: string;
}

/** What a gateway tells other instances about a runner's connections; sent on `<prefix>.runners.<runner>.control`. */
export interface ControlMessage {
  runner: string;
  type: 'revoked' | 'replaced' | 'lost';
  /** For `replaced`: the connection that stays; for `lost`: the one recorded as gone. */
  connection?: string;
  /** For `replaced`: when the connection that stays was opened (ms since the epoch). */
  openedAt?: number;
}

/** A gateway instance is alive; sent on `<prefix>.gateways.<instance>.alive` every quarter of the heartbeat timeout. */
export interface GatewayAliveMessage {
  gateway: string;
  runners: number;
}

/** A heartbeat as the gateway forwards it on `<prefix>.heartbeats.<runner>`. */
export interface HeartbeatMessage {
  runner: string;
  job: string;
  attempt: number;
}
