/**
 * Shares one computation among the callers that want a fresh result for the same key at the same
 * time: a caller gets the result of a computation that started no earlier than its call. When
 * none runs for the key, one starts at once; callers arriving while it runs wait for it to end and
 * share the next one, started then. So at most two computations per key are ever underway or
 * waiting, however many callers pile up, and no caller sees a result computed before it asked
 * (what it committed before asking is in it).
 */
export class Coalescer<K, V> {
  private readonly keys = new Map<K, { waiting: { resolve: (v: V) => void; reject: (e: unknown) => void }[] }>();

  constructor(private readonly compute: (key: K) => Promise<V>) {}

  get(key: K): Promise<V> {
    const underway = this.keys.get(key);
    if (underway !== undefined) return new Promise<V>((resolve, reject) => underway.waiting.push({ resolve, reject }));
    const entry = { waiting: [] as { resolve: (v: V) => void; reject: (e: unknown) => void }[] };
    this.keys.set(key, entry);
    return this.run(key, entry);
  }

  private run(key: K, entry: { waiting: { resolve: (v: V) => void; reject: (e: unknown) => void }[] }): Promise<V> {
    const computed = Promise.resolve().then(() => this.compute(key));
    void computed
      .catch(() => undefined)
      .then(() => {
        const waiting = entry.waiting.splice(0);
        if (waiting.length === 0) {
          this.keys.delete(key);
          return;
        }
        this.run(key, entry).then(
          (value) => waiting.forEach((w) => w.resolve(value)),
          (error: unknown) => waiting.forEach((w) => w.reject(error)),
        );
      });
    return computed;
  }
}
