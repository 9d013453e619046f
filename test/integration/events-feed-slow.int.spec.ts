import WebSocket from 'ws';
import { EventsFeed } from '../../src/modules/events-feed/events-feed';
import { appSuite } from '../support/suite';

interface Envelope {
  type: string;
  streamId: string;
  globalPosition: number;
}

/** A feed client that keeps what it got and how the server closed it. */
function openFeed(url: string, token: string, query: Record<string, string>) {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/events?${new URLSearchParams(query).toString()}`, { headers: { Authorization: `Bearer ${token}` } });
  const events: Envelope[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  socket.on('message', (data) => events.push(JSON.parse(data.toString()) as Envelope));
  const opened = new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  const until = async (done: () => boolean, what: string) => {
    for (let i = 0; i < 200 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    if (!done()) throw new Error(`no ${what}; got ${JSON.stringify(events.map((e) => e.type))}`);
  };
  return { socket, events, closed, opened, until };
}

/**
 * The events feed closes a consumer that does not keep up (more than its send buffer waiting,
 * 8 MiB) with 4008 and the position to resume after, rather than buffer without bound; resuming
 * there gives what it missed, once.
 */
describe('GET /v1/events: a slow consumer', () => {
  const s = appSuite();

  it('is closed with 4008 naming the position to resume after, and resuming there gives the rest exactly once', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const tenant = await f.tenant();
    const feed = openFeed(t.url, tenant.key, { after: '0' });
    await feed.opened;
    const first = await f.submit(tenant, spec.slug);
    await feed.until(() => feed.events.some((e) => e.streamId === first.id), 'first job');
    const lastRead = feed.events[feed.events.length - 1].globalPosition;

    // The server's view of this consumer: more than 8 MiB it has not taken yet.
    const subscribers = (t.app.get(EventsFeed) as unknown as { subscribers: Set<{ socket: WebSocket }> }).subscribers;
    expect(subscribers.size).toBe(1);
    for (const { socket } of subscribers) Object.defineProperty(socket, 'bufferedAmount', { get: () => 9 * 1024 * 1024 });

    const second = await f.submit(tenant, spec.slug);
    const closed = await feed.closed;
    expect(closed).toEqual({ code: 4008, reason: `too slow: reconnect with after=${lastRead}` });
    expect(feed.events.some((e) => e.streamId === second.id)).toBe(false);
    expect(subscribers.size).toBe(0);

    // Reconnecting after the position it was given: the event it missed, once, nothing before it.
    const again = openFeed(t.url, tenant.key, { after: String(lastRead) });
    await again.opened;
    await again.until(() => again.events.some((e) => e.streamId === second.id), 'second job');
    expect(again.events.filter((e) => e.streamId === second.id).map((e) => e.type)).toEqual(['JobSubmitted']);
    expect(again.events.every((e) => e.globalPosition > lastRead)).toBe(true);
    expect(again.events.some((e) => e.streamId === first.id)).toBe(false);
    again.socket.close();
  });
});
