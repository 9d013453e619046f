import { type EventEnvelope, type Job, RunwayApiError } from './api';
import type { ClientContext } from './context';
import { EventFeed } from './feed';
import { truncate } from './format';
import {
  type Change,
  SPINNER,
  type WatchState,
  applyEvent,
  applyJob,
  formatChange,
  formatStatusLine,
  formatSummary,
  initialWatchState,
  isTerminal,
  watchExitCode,
} from './watch-state';

/** How often the job is read while pending (queue position, eta), and otherwise (a check on the feed). */
const POLL_PENDING_MS = 2_000;
const POLL_OTHER_MS = 5_000;
const SPIN_MS = 100;
/** Erase the terminal's line and go back to its start. */
const CLEAR_LINE = '\r\x1b[2K';

/**
 * `runway jobs watch JOB`: the job's history, then its events live until it ends.
 *
 * History comes from `GET /v1/jobs/{job}/events` and the live part from `GET /v1/events?job=&after=`
 * with the global position of the last event of that history: the feed resumes exactly there, so
 * nothing is missed or repeated, and the server does not scan the log from its start for it. A
 * dropped feed reconnects with `after=<last position seen>`. `GET /v1/jobs/{job}` is read every
 * 2 s while the job is pending (its queue place and eta) and every 5 s otherwise; if it shows a
 * state the feed has not brought yet, the missing events are read over REST, so a stalled feed
 * cannot hold the watch (and a server without the feed is followed by polling alone).
 *
 * Resolves with the exit status: 0 completed, 1 failed or canceled.
 */
export async function watchJob(ctx: ClientContext, ref: string): Promise<number> {
  const first = await ctx.client.getJob(ref);
  return new JobWatch(ctx, first.data.id).run(first.data, first.text);
}

type Mode = 'json' | 'tty' | 'lines';

class JobWatch {
  private readonly mode: Mode;
  private state: WatchState = initialWatchState();
  private feed: EventFeed | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private spinTimer: NodeJS.Timeout | null = null;
  private frame = 0;
  private reconnecting: string | null = null;
  private lastJobText: string | null = null;
  /** The server has no events feed: every change comes from polling. */
  private pollingOnly = false;
  private finishing = false;
  private settle: { resolve: (code: number) => void; reject: (error: unknown) => void } | null = null;
  private readonly onInterrupt = () => {
    this.stop();
    this.ctx.write(CLEAR_LINE);
    this.ctx.warn(`runway: stopped watching; job ${this.jobId} is ${this.state.status ?? 'unknown'} and goes on`);
    process.exit(130);
  };

  constructor(
    private readonly ctx: ClientContext,
    private readonly jobId: string,
  ) {
    this.mode = ctx.json ? 'json' : ctx.tty ? 'tty' : 'lines';
  }

  async run(job: Job, jobText: string): Promise<number> {
    const history = await this.ctx.client.jobEvents(this.jobId);
    for (const envelope of history.data.items) this.onEvent(envelope, JSON.stringify(envelope));
    this.onJob(job, jobText);
    if (this.state.status !== null && isTerminal(this.state.status)) return this.finish();

    if (this.mode === 'tty') {
      process.once('SIGINT', this.onInterrupt);
      this.spinTimer = setInterval(() => this.render(), SPIN_MS);
      this.render();
    }
    const done = new Promise<number>((resolve, reject) => (this.settle = { resolve, reject }));
    this.feed = new EventFeed({
      url: this.ctx.client.eventsUrl({ job: this.jobId }),
      headers: this.ctx.client.authorization(),
      after: this.state.lastPosition,
      serverUrl: this.ctx.client.baseUrl,
      onEvent: (envelope, text) => this.onEvent(envelope, text),
      onConnection: (problem) => {
        if (this.mode === 'lines' && problem !== null && this.reconnecting === null) this.ctx.warn(`runway: lost the events feed (${problem}); reconnecting`);
        this.reconnecting = problem;
        if (this.mode === 'tty') this.render();
      },
    });
    this.feed.done.catch((error: unknown) => {
      // The job exists (it was just read), so a 404 means a server without the feed: follow by polling.
      if (error instanceof RunwayApiError && error.status === 404) {
        this.pollingOnly = true;
        if (this.mode !== 'json') this.ctx.warn(`runway: the server has no events feed (${error.detail}); following the job by polling`);
        return;
      }
      this.fail(error);
    });
    this.feed.start();
    this.schedulePoll();
    try {
      return await done;
    } finally {
      this.stop();
      process.removeListener('SIGINT', this.onInterrupt);
    }
  }

  private onEvent(envelope: EventEnvelope, text: string): void {
    const { state, change } = applyEvent(this.state, envelope);
    if (change === null) return;
    this.state = state;
    if (this.mode === 'json') this.ctx.print(text);
    else this.show(change);
    if (this.settle !== null && this.state.status !== null && isTerminal(this.state.status)) void this.complete();
  }

  private onJob(job: Job, text: string): void {
    const { state, change } = applyJob(this.state, job, this.ctx.now());
    this.state = state;
    if (this.mode === 'json') {
      // A new state of the job: its status, or its place in the queue.
      const key = JSON.stringify([job.status, job.queue === undefined ? null : [job.queue.position, job.queue.waitingFor, job.queue.eta === null]]);
      if (key !== this.lastJobText) this.ctx.print(text.trim());
      this.lastJobText = key;
    } else if (change !== null) this.show(change);
  }

  private show(change: Change): void {
    if (this.mode === 'lines') this.ctx.print(formatChange(change));
    else if (this.mode === 'tty' && this.spinTimer !== null) this.render();
  }

  private render(): void {
    this.frame = (this.frame + 1) % SPINNER.length;
    const line = `${SPINNER[this.frame]} ${formatStatusLine(this.state, this.ctx.now(), this.reconnecting)}`;
    // One character short of the width: a full line would wrap and `\r` could not take it back.
    this.ctx.write(`${CLEAR_LINE}${truncate(line, Math.max(this.ctx.columns - 1, 10))}`);
  }

  private schedulePoll(): void {
    if (this.finishing) return;
    const interval = this.state.status === 'pending' || this.pollingOnly ? POLL_PENDING_MS : POLL_OTHER_MS;
    this.pollTimer = setTimeout(() => void this.poll(), interval);
  }

  private async poll(): Promise<void> {
    this.pollTimer = null;
    try {
      const result = await this.ctx.client.getJob(this.jobId);
      if (this.finishing) return;
      if (result.data.status !== this.state.status) await this.catchUp();
      if (this.finishing) return;
      this.onJob(result.data, result.text);
    } catch (error) {
      // The server refusing now (a revoked key, say) ends the watch; being unreachable is the feed's to judge.
      if (error instanceof RunwayApiError) return this.fail(error);
    }
    this.schedulePoll();
  }

  /** The job's events the feed has not brought yet, over REST. */
  private async catchUp(): Promise<void> {
    const { data } = await this.ctx.client.jobEvents(this.jobId);
    for (const envelope of data.items) {
      if (this.finishing) return;
      this.onEvent(envelope, JSON.stringify(envelope));
    }
  }

  /** The job ended: its final state, the outcome line, the exit status. */
  private async complete(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    this.stop();
    try {
      const code = await this.finish();
      this.settle?.resolve(code);
    } catch (error) {
      this.settle?.reject(error);
    }
  }

  private async finish(): Promise<number> {
    this.finishing = true;
    const result = await this.ctx.client.getJob(this.jobId);
    const job = result.data;
    if (this.mode === 'json') this.onJob(job, result.text);
    else if (this.mode === 'tty') this.ctx.write(`${CLEAR_LINE}${formatSummary(job, true)}\n`);
    else this.ctx.print(formatSummary(job, false));
    return watchExitCode(job.status);
  }

  private fail(error: unknown): void {
    if (this.finishing) return;
    this.finishing = true;
    this.stop();
    if (this.mode === 'tty') this.ctx.write(CLEAR_LINE);
    this.settle?.reject(error);
  }

  private stop(): void {
    if (this.spinTimer !== null) clearInterval(this.spinTimer);
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.spinTimer = null;
    this.pollTimer = null;
    this.feed?.close();
  }
}
