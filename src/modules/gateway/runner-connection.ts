import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { WebSocket } from 'ws';
import type { EventMetadata } from '../../events/envelope';
import type { JobState } from '../../machines/job.machine';
import type { ServerMessage } from './protocol';
import { TokenBucket } from '../../common/rate-limit';
import { jobPayload } from './runner-jobs';

const logger = new Logger('RunnerConnection');

/** The specs of a runner that has not said hello. */
const NO_SPECS: ReadonlySet<string> = new Set();

/** A job this connection's runner holds, as last read, for checking heartbeats without a write. */
interface HeldJob {
  state: JobState;
  readAt: number;
}

/**
 * One runner's socket and what the gateway knows of it. Its frames are handled one after the
 * other, in the order they came (RunwayWsAdapter calls the gateway's handler so), so `running` is
 * always decided before a later `completed`, and its disconnect after the last of them.
 */
export class RunnerConnection {
  readonly id = randomUUID();
  /** When this connection was opened, by this gateway's clock: newer ones replace older ones. */
  readonly openedAt: number;
  hello: { version: string; capacity: number; fingerprint: Record<string, unknown> } | null = null;
  /** Slugs of the specs the runner serves, read at `hello` (none before). */
  specs: ReadonlySet<string> = NO_SPECS;
  claiming = false;
  claimAgain = false;
  /** A claim for this runner failed with the database unreachable: it may have committed unseen. */
  unsure = false;
  alive = true;
  /** The jobs it holds, by id; made with the first (an idle runner's connection holds no map). */
  private held: Map<string, HeldJob> | null = null;
  /** The handling of the close, once it has begun (see `close`). */
  private closing: Promise<void> | null = null;
  /** Called once the close has been handled: `handled()` asked before the close began. */
  private onClosed: (() => void) | null = null;
  private deferred: NodeJS.Timeout | null = null;

  constructor(
    readonly socket: WebSocket,
    readonly runnerId: string,
    readonly messages: TokenBucket,
    openedAt: number,
  ) {
    this.openedAt = openedAt;
  }

  /** Whether the socket is open: frames sent now reach the runner. */
  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  send(message: ServerMessage): void {
    if (this.open) this.socket.send(JSON.stringify(message));
  }

  /** Sends the runner a job claimed for it, held so its heartbeats are checked without a read. */
  push(job: JobState, now: number): void {
    this.hold(job, now);
    this.send({ type: 'job', job: jobPayload(job) });
  }

  /** The metadata of the events this connection's messages cause. */
  get metadata(): EventMetadata {
    return { correlationId: this.id, causationId: null, actor: `runner:${this.runnerId}` };
  }

  /** Runs `claim` after `ms`, unless a deferred claim is pending already or the socket closes first. */
  deferClaim(ms: number, claim: () => void): void {
    if (this.deferred !== null) return;
    this.deferred = setTimeout(() => {
      this.deferred = null;
      claim();
    }, ms);
    this.deferred.unref();
  }

  cancelDeferredClaim(): void {
    if (this.deferred !== null) clearTimeout(this.deferred);
    this.deferred = null;
  }

  /**
   * Handles the close, after the last frame's handling: `leave` (recording the runner gone) runs,
   * and `handled()` settles when it has. `leave` handles its own errors; one it lets through is
   * logged.
   */
  close(leave: () => Promise<void>): void {
    this.closing = leave()
      .catch((error: unknown) => logger.error(`runner ${this.runnerId}: ${(error as Error).stack ?? String(error)}`))
      .then(() => this.onClosed?.());
  }

  /**
   * Settles once the close has been handled (see `close`), whether or not it has begun. (Made
   * when asked, at shutdown, rather than with every connection: thousands of runners each hold one.)
   */
  handled(): Promise<void> {
    if (this.closing !== null) return this.closing;
    return new Promise<void>((resolve) => {
      const before = this.onClosed;
      this.onClosed = () => {
        before?.();
        resolve();
      };
    });
  }

  hold(state: JobState, now: number): void {
    this.held ??= new Map();
    this.held.set(state.jobId, { state, readAt: now });
  }

  /** Whether the runner holds `jobId`, as this connection last knew. */
  holds(jobId: string): boolean {
    return this.held?.has(jobId) ?? false;
  }

  /** The held job's state as last read, however long ago. */
  heldState(jobId: string): JobState | undefined {
    return this.held?.get(jobId)?.state;
  }

  /** The runner no longer holds `jobId` (it reported it, or it was canceled). */
  release(jobId: string): void {
    this.held?.delete(jobId);
  }

  /** The held job if it was read less than `maxAgeMs` ago. */
  fresh(jobId: string, now: number, maxAgeMs: number): JobState | null {
    const held = this.held?.get(jobId);
    return held !== undefined && now - held.readAt < maxAgeMs ? held.state : null;
  }
}
