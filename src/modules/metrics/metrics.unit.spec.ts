import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Db } from '../database/db';
import { Metrics } from './metrics';

/** The alert rules of docs/operations.md ("Alert rules"), as the operator copies them. */
function alertRules(): string {
  const doc = readFileSync(join(__dirname, '../../../docs/operations.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### Alert rules'));
  const rules = /```yaml\n([\s\S]*?)```/.exec(section);
  if (rules === null) throw new Error('docs/operations.md has no yaml block under "Alert rules"');
  return rules[1];
}

describe('the alert rules of docs/operations.md', () => {
  it('name only metrics that Runway exports, and the ones the operator is told to watch', () => {
    // Nothing is collected here: the gauges that read the database are only looked up by name.
    const metrics = new Metrics({} as Db);
    const expressions = [...alertRules().matchAll(/^\s*expr: (.+)$/gm)].map((m) => m[1]);
    expect(expressions.length).toBeGreaterThanOrEqual(3);
    const named = new Set(expressions.flatMap((expr) => [...expr.matchAll(/\b((?:runway|runner|job)_[a-z_]+)\b/g)].map((m) => m[1])));
    expect([...named].filter((name) => metrics.registry.getSingleMetric(name) === undefined)).toEqual([]);
    for (const watched of ['runway_log_gate_age_seconds', 'runway_log_follower_lag_seconds']) expect(named).toContain(watched);
  });
});
