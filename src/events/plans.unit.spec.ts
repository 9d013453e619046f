import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PLANS, PLAN_NAMES, type PlanRules, hasInFlightLimit, orgInFlightLimit, planOfPriority, plansWith } from './plans';

/** The rows of docs/protocol.md's "Plans, tiers and limits" table, as rules. */
function contractPlans(): Record<string, PlanRules> {
  const protocol = readFileSync(join(__dirname, '../../docs/protocol.md'), 'utf8');
  const section = protocol.split('\n## Plans, tiers and limits\n')[1]?.split('\n## ')[0];
  if (section === undefined) throw new Error('docs/protocol.md has no "Plans, tiers and limits" section');
  const seconds = (text: string) => (text === 'none' ? null : Number(/^(\d+) s$/.exec(text)?.[1] ?? NaN));
  const rows = section.split('\n').filter((line) => /^\| `/.test(line));
  return Object.fromEntries(
    rows.map((line) => {
      const [plan, priority, limit, timeouts] = line.split('|').slice(1, -1).map((cell) => cell.trim());
      const [defaultTimeout, maxTimeout] = timeouts.split(' / ').map(seconds);
      const count = /^(\d+) per (organization|source IP)/.exec(limit);
      if (limit !== 'none' && count === null) throw new Error(`unread in-flight limit "${limit}"`);
      return [
        plan.replaceAll('`', ''),
        {
          priority: Number(priority),
          orgInFlightLimit: count?.[2] === 'organization' ? Number(count[1]) : null,
          ipInFlightLimit: count?.[2] === 'source IP' ? Number(count[1]) : null,
          defaultTimeout: defaultTimeout as number,
          maxTimeout,
        },
      ];
    }),
  );
}

describe('plans', () => {
  it('are the contract\'s plans, with its priorities, in-flight limits and timeouts', () => {
    const contract = contractPlans();
    expect(Object.keys(contract)).toHaveLength(4);
    expect(PLANS).toEqual(contract);
  });

  it('are the plans an organization may be on, highest priority first', () => {
    const protocol = readFileSync(join(__dirname, '../../docs/protocol.md'), 'utf8');
    const listed = /`plan` is one of ([^;]+);/.exec(protocol)?.[1].match(/`(\w+)`/g)?.map((name) => name.replaceAll('`', ''));
    expect(PLAN_NAMES).toEqual(listed);
    expect([...PLAN_NAMES].sort((a, b) => PLANS[b].priority - PLANS[a].priority)).toEqual(PLAN_NAMES);
  });

  it('never default to a timeout they do not allow', () => {
    for (const plan of PLAN_NAMES) {
      const { defaultTimeout, maxTimeout } = PLANS[plan];
      expect(defaultTimeout).toBeLessThanOrEqual(maxTimeout ?? Infinity);
    }
  });

  it('name the plans with each limit', () => {
    expect(plansWith('orgInFlightLimit')).toEqual(['free']);
    expect(plansWith('ipInFlightLimit')).toEqual(['unclaimed']);
  });

  it('limit an organization by its plan and its own maxConcurrency, the lower', () => {
    expect(orgInFlightLimit('free', null)).toBe(1);
    expect(orgInFlightLimit('free', 3)).toBe(1);
    expect(orgInFlightLimit('team', null)).toBeNull();
    expect(orgInFlightLimit('enterprise', 2)).toBe(2);
    expect(orgInFlightLimit('unclaimed', null)).toBeNull();
    expect(hasInFlightLimit('team', null)).toBe(false);
    expect(hasInFlightLimit('team', 4)).toBe(true);
    expect(hasInFlightLimit('free', null)).toBe(true);
    expect(hasInFlightLimit('unclaimed', null)).toBe(true);
  });

  it('place a priority in the highest tier it reaches', () => {
    expect([1000, 300, 299, 200, 199, 100, 99, 0, -5].map(planOfPriority)).toEqual(
      ['enterprise', 'enterprise', 'team', 'team', 'free', 'free', 'unclaimed', 'unclaimed', 'unclaimed'],
    );
  });
});
