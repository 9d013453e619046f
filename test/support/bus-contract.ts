/// <reference types="jest" />
import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { type Bus, BusClosedError, type BusMessage } from '../../src/modules/messaging/bus';
import { SubjectError } from '../../src/modules/messaging/subjects';

/** Two ends of a bus: for NATS two connections (two processes), for the local bus the same one twice. */
export interface BusPair {
  a: Bus;
  b: Bus;
  close(): Promise<void>;
}

/** Messages a subscriber got, and a way to wait until it has got some number of them. */
class Inbox {
  readonly messages: BusMessage[] = [];
  private waiters: { count: number; resolve: () => void }[] = [];

  readonly handler = (message: BusMessage): void => {
    this.messages.push(message);
    this.waiters = this.waiters.filter((w) => (this.messages.length >= w.count ? (w.resolve(), false) : true));
  };

  get data(): unknown[] {
    return this.messages.map((m) => m.data);
  }

  /** Resolves once `count` messages have arrived; fails after a while rather than hanging the suite. */
  async received(count: number, within = 5_000): Promise<void> {
    if (this.messages.length >= count) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiters.push({ count, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`expected ${count} messages, got ${this.messages.length}`)), within);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/**
 * The one behaviour every Bus must have, run against LocalBus and NatsBus alike. A check that
 * something is NOT delivered publishes a sentinel after it and waits for the sentinel: delivery
 * from one publisher keeps its order, so by then anything earlier would have arrived.
 */
export function busContract(name: string, makeBus: () => Promise<BusPair>): void {
  describe(`${name} (Bus contract)`, () => {
    let pair: BusPair;
    let a: Bus;
    let b: Bus;
    let root: string;
    let warn: jest.SpyInstance;
    let error: jest.SpyInstance;

    beforeEach(async () => {
      jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
      warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      pair = await makeBus();
      ({ a, b } = pair);
      // Subjects of their own, so runs and tests in parallel on one server never meet.
      root = `contract.${randomBytes(6).toString('hex')}`;
    });

    afterEach(async () => {
      await pair.close();
      jest.restoreAllMocks();
    });

    /** Waits until everything `publisher` sent before reached every bus in `listeners`. */
    async function settle(publisher: Bus, listeners: Bus[]): Promise<void> {
      const subject = `${root}.sentinel.${randomBytes(4).toString('hex')}`;
      const inboxes = listeners.map(() => new Inbox());
      const subscriptions = listeners.map((bus, i) => bus.subscribe(subject, inboxes[i].handler));
      await Promise.all(listeners.map((bus) => bus.flush()));
      await publisher.publish(subject, { sentinel: true });
      await Promise.all(inboxes.map((inbox) => inbox.received(1)));
      await Promise.all(subscriptions.map((s) => s.unsubscribe()));
    }

    it('delivers a message to subscribers of its exact subject only', async () => {
      const x = new Inbox();
      const y = new Inbox();
      b.subscribe(`${root}.x`, x.handler);
      b.subscribe(`${root}.y`, y.handler);
      await b.flush();
      await a.publish(`${root}.x`, { n: 1 });
      await x.received(1);
      await settle(a, [b]);
      expect(x.messages).toEqual([{ subject: `${root}.x`, data: { n: 1 } }]);
      expect(y.messages).toEqual([]);
    });

    it('matches * to exactly one token', async () => {
      const inbox = new Inbox();
      b.subscribe(`${root}.*.end`, inbox.handler);
      await b.flush();
      await a.publish(`${root}.one.two.end`, { n: 1 });
      await a.publish(`${root}.end`, { n: 2 });
      await a.publish(`${root}.one.end`, { n: 3 });
      await a.publish(`${root}.one.end.more`, { n: 4 });
      await inbox.received(1);
      await settle(a, [b]);
      expect(inbox.messages).toEqual([{ subject: `${root}.one.end`, data: { n: 3 } }]);
    });

    it('matches > to one or more trailing tokens', async () => {
      const inbox = new Inbox();
      b.subscribe(`${root}.jobs.>`, inbox.handler);
      await b.flush();
      await a.publish(`${root}.jobs`, { n: 1 });
      await a.publish(`${root}.jobs.a`, { n: 2 });
      await a.publish(`${root}.other.a`, { n: 3 });
      await a.publish(`${root}.jobs.a.b.c`, { n: 4 });
      await inbox.received(2);
      await settle(a, [b]);
      expect(inbox.messages).toEqual([
        { subject: `${root}.jobs.a`, data: { n: 2 } },
        { subject: `${root}.jobs.a.b.c`, data: { n: 4 } },
      ]);
    });

    it('gives each message to exactly one member of a queue group, and to every plain subscriber', async () => {
      const members = [new Inbox(), new Inbox()];
      const plain = new Inbox();
      a.subscribe(`${root}.work.*`, members[0].handler, { queue: 'workers' });
      b.subscribe(`${root}.work.*`, members[1].handler, { queue: 'workers' });
      b.subscribe(`${root}.work.*`, plain.handler);
      await Promise.all([a.flush(), b.flush()]);
      const count = 40;
      for (let n = 0; n < count; n++) await a.publish(`${root}.work.spec`, { n });
      await plain.received(count);
      await settle(a, [a, b]);
      const handled = [...members[0].data, ...members[1].data].map((d) => (d as { n: number }).n).sort((x, y) => x - y);
      expect(handled).toEqual(Array.from({ length: count }, (_, n) => n));
      // Both members took a share (NATS picks at random: all 40 to one member is a 1 in 2^39 event).
      expect(members[0].messages.length).toBeGreaterThan(0);
      expect(members[1].messages.length).toBeGreaterThan(0);
      expect(plain.data).toEqual(Array.from({ length: count }, (_, n) => ({ n })));
    });

    it('stops delivering once unsubscribed', async () => {
      const inbox = new Inbox();
      const subscription = b.subscribe(`${root}.x`, inbox.handler);
      await b.flush();
      await a.publish(`${root}.x`, { n: 1 });
      await inbox.received(1);
      await subscription.unsubscribe();
      await b.flush();
      await a.publish(`${root}.x`, { n: 2 });
      await settle(a, [b]);
      expect(inbox.data).toEqual([{ n: 1 }]);
      await subscription.unsubscribe(); // twice is harmless
    });

    it('round-trips JSON, and takes bytes that are JSON as they are', async () => {
      const inbox = new Inbox();
      b.subscribe(`${root}.json`, inbox.handler);
      await b.flush();
      const value = {
        text: 'zürich ✓ "quoted" \n line',
        integer: 9_007_199_254_740_991,
        float: -1.5e-7,
        flags: [true, false, null],
        nested: { empty: {}, list: [{ a: 1 }, []] },
      };
      await a.publish(`${root}.json`, value);
      await a.publish(`${root}.json`, [1, 'two']);
      await a.publish(`${root}.json`, new TextEncoder().encode('{"raw":true}'));
      await inbox.received(3);
      expect(inbox.data).toEqual([value, [1, 'two'], { raw: true }]);
    });

    it('goes on delivering after a handler throws or rejects, and logs it', async () => {
      const seen: unknown[] = [];
      const other = new Inbox();
      b.subscribe(`${root}.x`, (message) => {
        seen.push(message.data);
        const { n } = message.data as { n: number };
        if (n === 1) throw new Error('handler failed synchronously');
        if (n === 2) return Promise.reject(new Error('handler failed asynchronously'));
      });
      b.subscribe(`${root}.x`, other.handler);
      await b.flush();
      for (const n of [1, 2, 3]) await a.publish(`${root}.x`, { n });
      await other.received(3);
      await settle(a, [b]);
      expect(seen).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      expect(other.data).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      await b.flush(); // lets the rejection's log line happen
      expect(error).toHaveBeenCalledTimes(2);
      expect(String(error.mock.calls[0][0])).toContain('handler failed synchronously');
    });

    it('drops a malformed payload with a warning and goes on', async () => {
      const inbox = new Inbox();
      b.subscribe(`${root}.x`, inbox.handler);
      await b.flush();
      await a.publish(`${root}.x`, new TextEncoder().encode('{"not": json'));
      await a.publish(`${root}.x`, Uint8Array.from([0xff, 0xfe, 0x7b]));
      await a.publish(`${root}.x`, new Uint8Array(0));
      await a.publish(`${root}.x`, { ok: true });
      await inbox.received(1);
      await settle(a, [b]);
      expect(inbox.data).toEqual([{ ok: true }]);
      expect(warn).toHaveBeenCalledTimes(3);
      expect(String(warn.mock.calls[0][0])).toContain('malformed');
    });

    it('refuses subjects NATS would misread', async () => {
      for (const subject of [`${root}.*`, `${root}.>`, `${root}..x`, `${root}.a b`, '']) {
        await expect(a.publish(subject, {})).rejects.toBeInstanceOf(SubjectError);
      }
      for (const subject of [`${root}.>.x`, `${root}..x`, `${root}.a b`, '']) {
        expect(() => b.subscribe(subject, () => undefined)).toThrow(SubjectError);
      }
      expect(() => b.subscribe(`${root}.x`, () => undefined, { queue: 'two words' })).toThrow(SubjectError);
    });

    it('refuses to publish, subscribe or flush once closed', async () => {
      await a.close();
      await expect(a.publish(`${root}.x`, {})).rejects.toBeInstanceOf(BusClosedError);
      expect(() => a.subscribe(`${root}.x`, () => undefined)).toThrow(BusClosedError);
      await expect(a.flush()).rejects.toBeInstanceOf(BusClosedError);
      await a.close(); // twice is harmless
    });
  });
}
