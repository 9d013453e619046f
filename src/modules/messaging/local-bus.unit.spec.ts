import { busContract } from '../../../test/support/bus-contract';
import { LocalBus } from './local-bus';

busContract('LocalBus', async () => {
  const bus = new LocalBus();
  return { a: bus, b: bus, close: () => bus.close() };
});

describe('LocalBus', () => {
  it('never delivers inside publish', async () => {
    const bus = new LocalBus();
    const seen: unknown[] = [];
    bus.subscribe('t.x', (message) => void seen.push(message.data));
    const published = bus.publish('t.x', { n: 1 });
    expect(seen).toEqual([]);
    await published;
    expect(seen).toEqual([]);
    await bus.flush();
    expect(seen).toEqual([{ n: 1 }]);
    await bus.close();
  });

  it('hands each subscriber its own copy of the payload', async () => {
    const bus = new LocalBus();
    const copies: { list: number[] }[] = [];
    bus.subscribe('t.x', (message) => {
      const data = message.data as { list: number[] };
      data.list.push(99);
      copies.push(data);
    });
    bus.subscribe('t.x', (message) => void copies.push(message.data as { list: number[] }));
    const payload = { list: [1] };
    await bus.publish('t.x', payload);
    await bus.flush();
    expect(payload).toEqual({ list: [1] });
    expect(copies).toEqual([{ list: [1, 99] }, { list: [1] }]);
    await bus.close();
  });

  it('takes queue group members in turn', async () => {
    const bus = new LocalBus();
    const got: string[] = [];
    for (const member of ['m1', 'm2', 'm3']) bus.subscribe('t.*', () => void got.push(member), { queue: 'q' });
    for (let i = 0; i < 6; i++) await bus.publish('t.x', {});
    await bus.flush();
    expect(got).toEqual(['m1', 'm2', 'm3', 'm1', 'm2', 'm3']);
    await bus.close();
  });
});
