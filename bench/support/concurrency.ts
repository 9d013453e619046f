/**
 * Runs `task(0)` .. `task(count - 1)` with at most `concurrency` of them at once, and resolves to
 * their results in index order. The first failure rejects at once (with it) and the other loops
 * stop taking new indexes; tasks already started run to their end unobserved.
 */
export async function mapConcurrently<T>(count: number, concurrency: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.max(0, Math.min(concurrency, count)) }, async () => {
      while (next < count && !failed) {
        const index = next++;
        try {
          results[index] = await task(index);
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    }),
  );
  return results;
}
