import { type Command, Option } from 'commander';
import type { Org, Plan, Runner, Spec } from './api';
import { type ClientContext, CommandError, type GlobalOptions, clientCommand, group, parser, run } from './context';
import { formatBytes, formatFields, formatTable, formatTime, formatTimeAgo } from './format';
import { collect, parseBytes, parseInteger, parseLimit } from './parse';

const PLANS: Plan[] = ['enterprise', 'team', 'free', 'unclaimed'];
const ARCHITECTURES = ['x86_64', 'aarch64', 'riscv64'];

/** `runway admin ...`: what the operator token is for. */
export function registerAdminCommands(program: Command): void {
  const admin = group(program, 'admin', 'operator commands (RUNWAY_TOKEN = the operator token): organizations, keys, specs, runners').addHelpText(
    'after',
    '\nProjects are created with an organization key, not the operator token: see `runway projects`.',
  );
  registerOrgCommands(group(admin, 'orgs', 'organizations: their plan and in-flight limit'));
  registerKeyCommands(group(admin, 'keys', "an organization's API keys"));
  registerSpecCommands(group(admin, 'specs', 'hardware specs: classes of identical machines that jobs ask for and runners serve'));
  registerRunnerCommands(group(admin, 'runners', 'runners: register them, rotate their tokens, archive them'));
}

const limitOf = (value: number | 'none'): number | null => (value === 'none' ? null : value);

const maxConcurrencyOption = () =>
  new Option('--max-concurrency <n|none>', 'in-flight limit (claimed + running) for team and enterprise; none: no limit').argParser(parser(parseLimit));

function registerOrgCommands(orgs: Command): void {
  clientCommand(orgs, 'create', 'create an organization')
    .argument('<slug>', 'lower-case letters, digits and dashes')
    .option('--name <name>', 'display name (default: the slug)')
    .addOption(new Option('--plan <plan>', 'fixes the priority of its jobs and its limits').choices(PLANS).makeOptionMandatory())
    .addOption(maxConcurrencyOption())
    .action(
      run<GlobalOptions & { name?: string; plan: Plan; maxConcurrency?: number | 'none' }>(async (ctx, [slug], options) => {
        const result = await ctx.client.createOrg({
          slug,
          name: options.name ?? slug,
          plan: options.plan,
          ...(options.maxConcurrency !== undefined ? { maxConcurrency: limitOf(options.maxConcurrency) } : {}),
        });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`created organization ${result.data.slug}`);
        ctx.print(formatOrg(result.data));
        ctx.print(`\nnext: runway admin keys create --org ${result.data.slug}`);
      }),
    );

  clientCommand(orgs, 'list', 'every organization').action(
    run(async (ctx) => {
      const result = await ctx.client.listOrgs();
      if (ctx.json) return ctx.printJson(result);
      ctx.print(
        formatTable(
          ['slug', 'plan', 'max concurrency', 'name', 'created', 'id'],
          result.data.items.map((org) => [org.slug, org.plan, org.maxConcurrency ?? 'none', org.name, formatTime(org.createdAt), org.id]),
        ),
      );
    }),
  );

  clientCommand(orgs, 'show', 'an organization (an organization key may read its own)')
    .argument('<org>', 'slug or id')
    .action(
      run(async (ctx, [org]) => {
        const result = await ctx.client.getOrg(org);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(formatOrg(result.data));
      }),
    );

  clientCommand(orgs, 'update', "change an organization's plan or in-flight limit")
    .argument('<org>', 'slug or id')
    .addOption(new Option('--plan <plan>', 'new plan').choices(PLANS))
    .addOption(maxConcurrencyOption())
    .action(
      run<GlobalOptions & { plan?: Plan; maxConcurrency?: number | 'none' }>(async (ctx, [org], options) => {
        if (options.plan === undefined && options.maxConcurrency === undefined) {
          throw new CommandError('usage', 'nothing to change: give --plan or --max-concurrency', 2);
        }
        const result = await ctx.client.updateOrg(org, {
          ...(options.plan !== undefined ? { plan: options.plan } : {}),
          ...(options.maxConcurrency !== undefined ? { maxConcurrency: limitOf(options.maxConcurrency) } : {}),
        });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`updated organization ${result.data.slug}`);
        ctx.print(formatOrg(result.data));
      }),
    );
}

function formatOrg(org: Org): string {
  return formatFields([
    ['slug', org.slug],
    ['name', org.name],
    ['plan', org.plan],
    ['max concurrency', org.maxConcurrency ?? 'none'],
    ['id', org.id],
    ['created', formatTime(org.createdAt)],
    ['updated', formatTime(org.updatedAt)],
  ]);
}

/** A secret the server keeps only the hash of, printed with a warning that it cannot be shown again. */
function printSecret(ctx: ClientContext, what: string, line: string): void {
  ctx.print(`\n${what} is shown only now; keep it somewhere safe (Runway stores only its SHA-256):\n\n  ${line}\n`);
}

function registerKeyCommands(keys: Command): void {
  clientCommand(keys, 'create', 'issue an API key for an organization (the key is shown once)')
    .requiredOption('--org <org>', 'organization slug or id')
    .option('--name <name>', 'what the key is for, e.g. ci')
    .action(
      run<GlobalOptions & { org: string; name?: string }>(async (ctx, _args, options) => {
        const result = await ctx.client.createKey(options.org, options.name === undefined ? {} : { name: options.name });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`created key ${result.data.id}${options.name !== undefined ? ` (${options.name})` : ''} for organization ${options.org}`);
        printSecret(ctx, 'The key', `RUNWAY_TOKEN=${result.data.key}`);
      }),
    );

  clientCommand(keys, 'list', "an organization's keys, revoked ones included (never the secrets)")
    .requiredOption('--org <org>', 'organization slug or id')
    .action(
      run<GlobalOptions & { org: string }>(async (ctx, _args, options) => {
        const result = await ctx.client.listKeys(options.org);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(
          formatTable(
            ['id', 'name', 'created', 'revoked'],
            result.data.items.map((key) => [key.id, key.name, formatTime(key.createdAt), key.revokedAt === null ? null : formatTime(key.revokedAt)]),
          ),
        );
      }),
    );

  clientCommand(keys, 'revoke', 'revoke a key: it stops working at once', { json: 'print the revoked key as the key list shows it' })
    .argument('<key-id>', 'the id of the key (not the secret)')
    .requiredOption('--org <org>', 'organization slug or id')
    .action(
      run<GlobalOptions & { org: string }>(async (ctx, [id], options) => {
        await ctx.client.revokeKey(options.org, id);
        // The revocation answers 204; the list says when and which key.
        const key = (await ctx.client.listKeys(options.org)).data.items.find((k) => k.id === id);
        if (ctx.json) return ctx.printJson({ text: JSON.stringify(key ?? { id }) });
        ctx.print(`revoked key ${id}${key?.name ? ` (${key.name})` : ''}${key?.revokedAt ? ` at ${formatTime(key.revokedAt)}` : ''}`);
      }),
    );
}

function registerSpecCommands(specs: Command): void {
  clientCommand(specs, 'create', 'create a hardware spec')
    .argument('<slug>', 'lower-case letters, digits and dashes, e.g. x86-8c-32g')
    .option('--name <name>', 'display name (default: the slug)')
    .addOption(new Option('--arch <architecture>', 'CPU architecture').choices(ARCHITECTURES).makeOptionMandatory())
    .requiredOption('--cpu <cores>', 'CPU cores', parser((text) => parseInteger(text, 1, 65_536)))
    .requiredOption('--memory <size>', 'memory: bytes, or 32GiB, 32Gi (2^30), 32GB, 32G (10^9)', parser(parseBytes))
    .requiredOption('--disk <size>', 'disk: bytes, or 512GiB, 1TB, ...', parser(parseBytes))
    .option('--network', 'jobs on it get network access (default: none)')
    .action(
      run<GlobalOptions & { name?: string; arch: Spec['architecture']; cpu: number; memory: number; disk: number; network?: boolean }>(async (ctx, [slug], options) => {
        const result = await ctx.client.createSpec({
          slug,
          name: options.name ?? slug,
          architecture: options.arch,
          cpu: options.cpu,
          memory: options.memory,
          disk: options.disk,
          network: options.network === true,
        });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`created spec ${result.data.slug}`);
        ctx.print(formatSpecs([result.data]));
      }),
    );

  clientCommand(specs, 'list', 'every hardware spec (an organization key may list them too)').action(
    run(async (ctx) => {
      const result = await ctx.client.listSpecs();
      if (ctx.json) return ctx.printJson(result);
      ctx.print(formatSpecs(result.data.items));
    }),
  );
}

function formatSpecs(specs: readonly Spec[]): string {
  return formatTable(
    ['slug', 'arch', 'cpu', 'memory', 'disk', 'network', 'name', 'id'],
    specs.map((s) => [s.slug, s.architecture, s.cpu, formatBytes(s.memory), formatBytes(s.disk), s.network, s.name, s.id]),
  );
}

function registerRunnerCommands(runners: Command): void {
  clientCommand(runners, 'create', 'register a runner (its token is shown once)')
    .argument('<slug>', 'lower-case letters, digits and dashes, e.g. bench-01')
    .option('--name <name>', 'display name, e.g. where it is (default: the slug)')
    .requiredOption('--spec <spec>', 'a spec it serves, slug or id (repeatable)', collect)
    .action(
      run<GlobalOptions & { name?: string; spec: string[] }>(async (ctx, [slug], options) => {
        const result = await ctx.client.createRunner({ slug, name: options.name ?? slug, specs: options.spec });
        if (ctx.json) return ctx.printJson(result);
        const { token, ...runner } = result.data;
        ctx.print(`registered runner ${runner.slug}`);
        ctx.print(formatRunner(runner, ctx.now()));
        printSecret(ctx, 'The runner token', token);
        ctx.print(`give it to the runner agent on the machine: runway runner --url ${ctx.settings.url} --token <token>`);
      }),
    );

  clientCommand(runners, 'list', 'every runner: connected or not, idle or busy').action(
    run(async (ctx) => {
      const result = await ctx.client.listRunners();
      if (ctx.json) return ctx.printJson(result);
      const now = ctx.now();
      ctx.print(
        formatTable(
          ['slug', 'state', 'specs', 'last seen', 'current job', 'archived', 'id'],
          result.data.items.map((r) => [
            r.slug,
            r.state,
            r.specs.join(','),
            r.lastSeenAt === null ? 'never' : formatTimeAgo(r.lastSeenAt, now),
            r.currentJob,
            r.archived,
            r.id,
          ]),
        ),
      );
    }),
  );

  clientCommand(runners, 'show', 'a runner, with the machine it reported (fingerprint)')
    .argument('<runner>', 'slug or id')
    .action(
      run(async (ctx, [runner]) => {
        const result = await ctx.client.getRunner(runner);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(formatRunner(result.data, ctx.now()));
      }),
    );

  clientCommand(runners, 'update', "change a runner's name or specs")
    .argument('<runner>', 'slug or id')
    .option('--name <name>', 'new display name')
    .option('--spec <spec>', 'the specs it serves, replacing the current ones (repeatable)', collect)
    .action(
      run<GlobalOptions & { name?: string; spec?: string[] }>(async (ctx, [runner], options) => {
        if (options.name === undefined && options.spec === undefined) throw new CommandError('usage', 'nothing to change: give --name or --spec', 2);
        const result = await ctx.client.updateRunner(runner, {
          ...(options.name !== undefined ? { name: options.name } : {}),
          ...(options.spec !== undefined ? { specs: options.spec } : {}),
        });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`updated runner ${result.data.slug}`);
        ctx.print(formatRunner(result.data, ctx.now()));
      }),
    );

  clientCommand(runners, 'rotate', "give a runner a new token: the old one stops working and its connection is closed")
    .argument('<runner>', 'slug or id')
    .action(
      run(async (ctx, [runner]) => {
        const result = await ctx.client.rotateRunnerToken(runner);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`rotated the token of runner ${runner}; the old token no longer works`);
        printSecret(ctx, 'The new token', result.data.token);
      }),
    );

  for (const archived of [true, false]) {
    clientCommand(
      runners,
      archived ? 'archive' : 'unarchive',
      archived ? 'archive a runner: it is disconnected and cannot connect or claim' : 'let an archived runner connect again',
    )
      .argument('<runner>', 'slug or id')
      .action(
        run(async (ctx, [runner]) => {
          const result = await ctx.client.updateRunner(runner, { archived });
          if (ctx.json) return ctx.printJson(result);
          ctx.print(`${archived ? 'archived' : 'unarchived'} runner ${result.data.slug}`);
        }),
      );
  }
}

function formatRunner(runner: Runner, now: Date): string {
  const fingerprint = runner.fingerprint === null ? null : Object.entries(runner.fingerprint).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
  return formatFields([
    ['slug', runner.slug],
    ['name', runner.name],
    ['id', runner.id],
    ['specs', runner.specs.join(', ')],
    ['state', runner.state],
    ['archived', runner.archived],
    ['last seen', runner.lastSeenAt === null ? 'never' : formatTimeAgo(runner.lastSeenAt, now)],
    ['current job', runner.currentJob],
    ['fingerprint', fingerprint],
    ['created', formatTime(runner.createdAt)],
    ['updated', formatTime(runner.updatedAt)],
  ]);
}
