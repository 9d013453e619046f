import { Coalescer } from './coalescer';

/** A computation the test ends by hand, recording when it started. */
function controlled() {
  const started: { key: string; finish: (value: number) => void; fail: (error: Error) => void }[] = [];
  let counter = 0;
  const coalescer = new Coalescer<string, number>(
    (key) =>
      new Promise<number>((resolve, reject) => {
        counter += 1;
        const n = counter;
        started.push({ key, finish: (v) => resolve(v ?? n), fail: reject });
      }),
  );
  return { coalescer, started };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('Coalescer', () => {
  it('starts a computation at once when none runs for the key', async () => {
    const { coalescer, started } = controlled();
    const first = coalescer.get('a');
    await turn();
    expect(started.map((s) => s.key)).toEqual(['a']);
    started[0].finish(1);
    await expect(first).resolves.toBe(1);
  });

  it('makes callers who ask while one runs share the next one, started after it ends', async () => {
    const { coalescer, started } = controlled();
    const first = coalescer.get('a');
    await turn();
    const second = coalescer.get('a');
    const third = coalescer.get('a');
    await turn();
    // The running computation may have read before the second and third asked: they wait.
    expect(started).toHaveLength(1);
    started[0].finish(1);
    await expect(first).resolves.toBe(1);
    await turn();
    expect(started).toHaveLength(2);
    started[1].finish(2);
    await expect(second).resolves.toBe(2);
    await expect(third).resolves.toBe(2);
    // Nothing left waiting: the next caller starts a computation of its own at once.
    const fourth = coalescer.get('a');
    await turn();
    expect(started).toHaveLength(3);
    started[2].finish(3);
    await expect(fourth).resolves.toBe(3);
  });

  it('keeps keys apart', async () => {
    const { coalescer, started } = controlled();
    const a = coalescer.get('a');
    const b = coalescer.get('b');
    await turn();
    expect(started.map((s) => s.key)).toEqual(['a', 'b']);
    started[1].finish(20);
    started[0].finish(10);
    await expect(a).resolves.toBe(10);
    await expect(b).resolves.toBe(20);
  });

  it('passes a failure to the callers of that computation only, and still runs the next one', async () => {
    const { coalescer, started } = controlled();
    const first = coalescer.get('a');
    await turn();
    const second = coalescer.get('a');
    started[0].fail(new Error('database down'));
    await expect(first).rejects.toThrow('database down');
    await turn();
    expect(started).toHaveLength(2);
    started[1].fail(new Error('still down'));
    await expect(second).rejects.toThrow('still down');
    const third = coalescer.get('a');
    await turn();
    started[2].finish(7);
    await expect(third).resolves.toBe(7);
  });

  it('passes a synchronous throw of the computation to its caller', async () => {
    const coalescer = new Coalescer<string, number>(() => {
      throw new Error('bad key');
    });
    await expect(coalescer.get('a')).rejects.toThrow('bad key');
    await expect(coalescer.get('a')).rejects.toThrow('bad key');
  });
});
