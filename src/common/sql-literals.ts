/**
 * Values fixed in code (statuses, plans; never input) as a list of SQL string literals,
 * `'a', 'b'`, for `IN (...)`. Inlined rather than bound, so the planner sees the constants and
 * matches the partial indexes written with the same list (`WHERE status IN ('claimed', 'running')`).
 */
export function sqlLiterals(values: readonly string[]): string {
  if (values.length === 0) throw new Error('an SQL list needs at least one value');
  return values.map((value) => `'${value.replaceAll("'", "''")}'`).join(', ');
}
