/**
 * Values fixed in code (statuses, plans; never input) as a list of SQL string literals,
 * `'a', 'b'`, for `IN (...)`. Inlined rather than bound, so the planner sees the constants and
 * matches the partial indexes written with the same list (`WHERE status IN ('claimed', 'running')`).
 */
export function sqlLiterals(values: readonly string[]): string {
  if (values.length === 0) throw new Error('an SQL list needs at least one value');
  return values.map((value) => `'${value.replaceAll("'", "''")}'`).join(', ');
}

/** SQL: `column` is one of `values` (`= 'a'` for one, as a query written by hand says it; `false` for none). */
export function sqlIn(column: string, values: readonly string[]): string {
  if (values.length === 0) return 'false';
  return values.length === 1 ? `${column} = ${sqlLiterals(values)}` : `${column} IN (${sqlLiterals(values)})`;
}

/** SQL: `column` is none of `values` (`true` for none). */
export function sqlNotIn(column: string, values: readonly string[]): string {
  return values.length === 0 ? 'true' : `${column} NOT IN (${sqlLiterals(values)})`;
}
