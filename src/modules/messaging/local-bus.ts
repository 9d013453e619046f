import { Logger } from '@nestjs/common';
import { Bus, BusClosedError, type BusHandler, deliver, encodePayload, type SubscribeOptions, type Subscription } from './bus';
import { assertQueue, assertSubject, subjectMatches } from './subjects';

interface LocalSubscription {
  readonly subject: string;
  readonly queue: string | undefined;
  readonly handler: BusHandler;
  active: boolean;
}

/**
 * The bus inside one process, for running without NATS. It behaves as NATS does for one
 * process: payloads go through JSON (subscribers get their own copy), delivery is asynchronous
 * (never inside `publish`), wildcards match the same way, and a queue group hands each message to
 * one member (here in turn).
 */
export class LocalBus extends Bus {
  private readonly logger = new Logger(LocalBus.name);
  private readonly subscriptions = new Set<LocalSubscription>();
  /** Per queue group name: how many messages it was given, to pick members in turn. */
  private readonly turns = new Map<string, number>();
  private closed = false;

  async publish(subject: string, payload: Uint8Array | object): Promise<void> {
    if (this.closed) throw new BusClosedError();
    assertSubject(subject, { wildcards: false });
    const bytes = encodePayload(payload);
    // Routed now, as a server routes on arrival; handed over later, in publish order.
    for (const subscription of this.route(subject)) {
      setImmediate(() => {
        if (subscription.active) deliver(this.logger, subscription.handler, subject, bytes);
      });
    }
  }

  subscribe(subject: string, handler: BusHandler, options: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new BusClosedError();
    assertSubject(subject, { wildcards: true });
    if (options.queue !== undefined) assertQueue(options.queue);
    const subscription: LocalSubscription = { subject, queue: options.queue, handler, active: true };
    this.subscriptions.add(subscription);
    return {
      unsubscribe: async () => {
        subscription.active = false;
        this.subscriptions.delete(subscription);
      },
    };
  }

  /** Resolves after every delivery scheduled so far has been handed to its handler. */
  async flush(): Promise<void> {
    if (this.closed) throw new BusClosedError();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const subscription of this.subscriptions) subscription.active = false;
    this.subscriptions.clear();
  }

  private route(subject: string): LocalSubscription[] {
    const targets: LocalSubscription[] = [];
    const groups = new Map<string, LocalSubscription[]>();
    for (const subscription of this.subscriptions) {
      if (!subjectMatches(subscription.subject, subject)) continue;
      if (subscription.queue === undefined) {
        targets.push(subscription);
      } else {
        const members = groups.get(subscription.queue) ?? [];
        members.push(subscription);
        groups.set(subscription.queue, members);
      }
    }
    for (const [queue, members] of groups) {
      const turn = this.turns.get(queue) ?? 0;
      this.turns.set(queue, turn + 1);
      targets.push(members[turn % members.length]);
    }
    return targets;
  }
}
