import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import type { Job, Page, SubmitJobRequest } from './api';
import { type ClientContext, CommandError, type GlobalOptions, clientCommand, group, parser, run } from './context';
import {
  NONE,
  formatDuration,
  formatFields,
  formatOutcome,
  formatQueue,
  formatRunTime,
  formatTable,
  formatTime,
  isTerminal,
} from './format';
import { collect, parseDurationSeconds, parseEnvPair, parseInteger } from './parse';
import { describeEvent } from './watch-state';
import { watchJob } from './watch';

const JOB_STATUSES = ['pending', 'claimed', 'running', 'completed', 'failed', 'canceled'];

/** `runway jobs ...`: submit jobs and follow them, with an organization key. */
export function registerJobCommands(program: Command): void {
  const jobs = group(program, 'jobs', 'submit, list, follow and cancel jobs (organization key)');

  clientCommand(jobs, 'submit', 'submit a job to a project: everything after -- is the command (or a matrix of jobs: --matrix)')
    .argument('[cmd...]', 'the command and its arguments, after -- (with --matrix: the jobs\' default command)')
    .requiredOption('--project <project>', 'project slug or id')
    .requiredOption('--spec <spec>', 'hardware spec slug or id')
    .option('--image <ref>', 'OCI image pinned by digest (registry/name@sha256:<64 hex>)')
    .option('--entrypoint <arg>', 'entrypoint, one element per use (--entrypoint /bin/sh --entrypoint -c)', collect)
    .option('--env <NAME=VALUE>', 'environment variable of the job (repeatable)', parser(parseEnvPair))
    .option('--timeout <duration>', 'seconds, or 90s, 15m, 1h30m (capped by the plan: free 15m, unclaimed 5m)', parser(parseDurationSeconds))
    .option('--file-path <path>', 'file the runner sends back when the job ends (repeatable)', collect)
    .option('--max-attempts <n>', 'attempts when a runner is lost before the job runs (1-5, default 1)', parser((text) => parseInteger(text, 1, 5)))
    .option('--idempotency-key <key>', 'the same key and body within 24 h returns the first job instead of a new one')
    .option('--watch', 'then follow the job as `runway jobs watch` does (and exit as it does)')
    .option('--matrix <file>', `submit many jobs at once, all or nothing: a JSON array or NDJSON of submissions (up to ${MAX_MATRIX_JOBS}; - for stdin), each over the defaults the other options give`)
    .addHelpText(
      'after',
      '\nExamples:\n  runway jobs submit --project compiler --spec x86-8c --env RUSTFLAGS=-Ctarget-cpu=native -- cargo bench --all' +
        '\n  runway jobs submit --project compiler --spec x86-8c --matrix commits.ndjson -- cargo bench' +
        '\n      (each line a submission such as {"env": {"COMMIT": "3f2a91c"}} or {"spec": "arm-4c", "cmd": ["make", "bench"]})',
    )
    .action(
      run<GlobalOptions & SubmitOptions>(async (ctx, cmd, options) => {
        if (options.matrix !== undefined) return submitMatrix(ctx, cmd, options);
        if (cmd.length === 0) throw new CommandError('usage', 'the command to run goes after -- (or give --matrix FILE)', 2);
        const body: SubmitJobRequest = {
          spec: options.spec,
          cmd,
          ...(options.image !== undefined ? { image: options.image } : {}),
          ...(options.entrypoint !== undefined ? { entrypoint: options.entrypoint } : {}),
          ...(options.env !== undefined ? { env: options.env } : {}),
          ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
          ...(options.filePath !== undefined ? { filePaths: options.filePath } : {}),
          ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
        };
        const result = await ctx.client.submitJob(options.project, body, options.idempotencyKey);
        if (options.watch === true) {
          if (!ctx.json) ctx.print(`submitted job ${result.data.id}`);
          return watchJob(ctx, result.data.id);
        }
        if (ctx.json) return ctx.printJson(result);
        const job = result.data;
        ctx.print(result.status === 200 ? `job ${job.id} was already submitted with this idempotency key (${job.status})` : `submitted job ${job.id} (${job.status})`);
        ctx.print(formatJob(job, ctx.now()));
        if (!isTerminal(job.status)) ctx.print(`\nfollow it: runway jobs watch ${job.id}`);
      }),
    );

  clientCommand(jobs, 'list', "a project's jobs, newest first")
    .requiredOption('--project <project>', 'project slug or id')
    .addOption(new Option('--status <status>', 'only jobs in this state').choices(JOB_STATUSES))
    .option('--limit <n>', 'jobs per page (1-100, default 50)', parser((text) => parseInteger(text, 1, 100)))
    .option('--cursor <cursor>', 'the page after the one that gave this nextCursor')
    .option('--all', 'follow nextCursor to the last page (--json: one document with every item)')
    .action(
      run<GlobalOptions & { project: string; status?: string; limit?: number; cursor?: string; all?: boolean }>(async (ctx, _args, options) => {
        const query = { status: options.status, limit: options.limit, cursor: options.cursor };
        let result = await ctx.client.listJobs(options.project, query);
        const items = [...result.data.items];
        while (options.all === true && result.data.nextCursor !== null) {
          result = await ctx.client.listJobs(options.project, { ...query, cursor: result.data.nextCursor });
          items.push(...result.data.items);
        }
        if (ctx.json) {
          return ctx.printJson(options.all === true ? { text: JSON.stringify({ items, nextCursor: null } satisfies Page<Job>) } : result);
        }
        const now = ctx.now();
        ctx.print(
          formatTable(
            ['id', 'status', 'spec', 'created', 'ran', 'exit', 'failure'],
            items.map((job) => [job.id, job.status, job.spec, formatTime(job.createdAt), formatRunTime(job, now), job.exitCode, job.failure]),
          ),
        );
        if (options.all !== true && result.data.nextCursor !== null) {
          ctx.warn(`(more jobs: --all, or --cursor ${result.data.nextCursor})`);
        }
      }),
    );

  clientCommand(jobs, 'show', 'a job: state, times, runner, outcome; its place in the queue while pending')
    .argument('<job>', 'job id')
    .action(
      run(async (ctx, [id]) => {
        const result = await ctx.client.getJob(id);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(formatJob(result.data, ctx.now()));
      }),
    );

  clientCommand(jobs, 'cancel', 'cancel a job that has not ended (its runner is told to stop it)')
    .argument('<job>', 'job id')
    .action(
      run(async (ctx, [id]) => {
        const result = await ctx.client.cancelJob(id);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`canceled job ${result.data.id}${result.data.runner !== null ? ` (runner ${result.data.runner} is told to stop it)` : ''}`);
      }),
    );

  clientCommand(jobs, 'events', "a job's events, in order", { json: 'print the events as NDJSON: one envelope per line, as the server sent it' })
    .argument('<job>', 'job id')
    .action(
      run(async (ctx, [id]) => {
        const { data } = await ctx.client.jobEvents(id);
        if (ctx.json) {
          for (const envelope of data.items) ctx.print(JSON.stringify(envelope));
          return;
        }
        let maxAttempts: number | null = null;
        const rows = data.items.map((envelope) => {
          if (envelope.type === 'JobSubmitted') maxAttempts = (envelope.data as { maxAttempts?: number }).maxAttempts ?? null;
          return [envelope.position, formatTime(envelope.occurredAt), envelope.type, envelope.metadata.actor, describeEvent(envelope, maxAttempts).text];
        });
        ctx.print(formatTable(['#', 'time', 'event', 'actor', 'detail'], rows));
      }),
    );

  clientCommand(jobs, 'output', "what a finished job's command printed: stdout, or stderr, or a file it left")
    .argument('<job>', 'job id')
    .addOption(new Option('--stderr', 'print stderr instead of stdout').conflicts('file'))
    .option('--file <path>', 'print this file of the job (one of its --file-path)')
    .action(
      run<GlobalOptions & { stderr?: boolean; file?: string }>(async (ctx, [id], options) => {
        const result = await ctx.client.jobOutput(id);
        if (ctx.json) return ctx.printJson(result);
        const output = result.data;
        let content: string | null;
        if (options.file !== undefined) {
          if (!Object.prototype.hasOwnProperty.call(output.files, options.file)) {
            const files = Object.keys(output.files);
            throw new CommandError('not_found', `the job sent back no file "${options.file}" (${files.length === 0 ? 'it sent back none' : `its files: ${files.join(', ')}`})`);
          }
          content = output.files[options.file];
        } else content = options.stderr === true ? output.stderr : output.stdout;
        if (content !== null) ctx.write(content);
        if (output.truncated) ctx.warn('runway: the output was truncated by the runner');
      }),
    );

  clientCommand(jobs, 'audit', "check a job's history: its events replayed through the job machine, the hash chain, the stored views")
    .argument('<job>', 'job id')
    .addHelpText('after', '\nExit status: 0 verified, 1 a divergence or a broken chain (or the request was refused), 2 usage or connection error.')
    .action(
      run(async (ctx, [id]) => {
        const result = await ctx.client.jobAudit(id);
        const audit = result.data;
        if (ctx.json) ctx.printJson(result);
        else {
          ctx.print(
            formatFields([
              ['verified', audit.verified],
              ['status', audit.status],
              ['events', audit.eventCount],
              ['hash chain', audit.chainValid ? 'valid' : 'BROKEN'],
              ['divergences', audit.divergences.length === 0 ? 'none' : audit.divergences.length],
            ]),
          );
          const describe = (d: (typeof audit.divergences)[number]) => {
            const where = [d.position !== undefined ? `event ${d.position}` : null, d.field ?? null].filter((x) => x !== null).join(', ');
            const values = d.expected !== undefined || d.actual !== undefined ? ` (expected ${JSON.stringify(d.expected)}, stored ${JSON.stringify(d.actual)})` : '';
            return `  - ${where === '' ? '' : `${where}: `}${d.reason}${values}`;
          };
          for (const d of audit.divergences) ctx.print(describe(d));
          if ((audit.pending ?? []).length > 0) {
            ctx.print('not yet billed (the billing view is catching up, not a divergence):');
            for (const d of audit.pending ?? []) ctx.print(describe(d));
          }
        }
        return audit.verified ? 0 : 1;
      }),
    );

  clientCommand(jobs, 'watch', 'follow a job live until it ends', {
    json: 'print NDJSON: each event envelope (has "globalPosition") and each new state of the job (has "status") as the server sent them',
  })
    .argument('<job>', 'job id')
    .addHelpText(
      'after',
      '\nOn a terminal: one status line (queue position and eta while pending, runner and time while running), then the outcome.' +
        '\nPiped: one plain line per change.' +
        '\nExit status: 0 the job completed, 1 it failed or was canceled (or the request was refused), 2 usage or connection error.',
    )
    .action(run(async (ctx, [id]) => watchJob(ctx, id)));
}

/** The most jobs `--matrix` sends: one batch submission. */
const MAX_MATRIX_JOBS = 1000;

/**
 * `runway jobs submit --matrix FILE`: every submission of the file, over the defaults the other
 * options give (a field of the file's replaces the option's; `env` is merged, the file's winning),
 * in one batch: all of them or none.
 */
async function submitMatrix(ctx: ClientContext, cmd: string[], options: SubmitOptions): Promise<void> {
  if (options.watch === true) throw new CommandError('usage', '--watch follows one job; it does not go with --matrix', 2);
  const file = options.matrix as string;
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (error) {
    throw new CommandError('usage', `cannot read the matrix ${file}: ${(error as Error).message}`, 2);
  }
  const entries = parseMatrix(text, file);
  if (entries.length === 0) throw new CommandError('usage', `the matrix ${file} holds no jobs`, 2);
  if (entries.length > MAX_MATRIX_JOBS) throw new CommandError('usage', `the matrix ${file} holds ${entries.length} jobs; one batch takes at most ${MAX_MATRIX_JOBS}`, 2);
  const defaults: Partial<SubmitJobRequest> = {
    spec: options.spec,
    ...(cmd.length > 0 ? { cmd } : {}),
    ...(options.image !== undefined ? { image: options.image } : {}),
    ...(options.entrypoint !== undefined ? { entrypoint: options.entrypoint } : {}),
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.filePath !== undefined ? { filePaths: options.filePath } : {}),
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
  };
  const jobs = entries.map((entry) => {
    const env = options.env === undefined && entry.env === undefined ? {} : { env: { ...options.env, ...(entry.env as Record<string, string> | undefined) } };
    return { ...defaults, ...entry, ...env } as SubmitJobRequest;
  });
  const result = await ctx.client.submitJobBatch(options.project, jobs, options.idempotencyKey);
  if (ctx.json) return ctx.printJson(result);
  const { items } = result.data;
  ctx.print(
    result.status === 200
      ? `these ${items.length} jobs were already submitted with this idempotency key:`
      : `submitted ${items.length} job${items.length === 1 ? '' : 's'}:`,
  );
  for (const job of items) ctx.print(`${job.id}  ${job.spec}  ${job.status}`);
}

/** A JSON array of objects, or one JSON object per line (blank lines skipped). */
export function parseMatrix(text: string, file: string): Record<string, unknown>[] {
  const trimmed = text.trim();
  const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      throw new CommandError('usage', `the matrix ${file} is not valid JSON: ${(error as Error).message}`, 2);
    }
    if (!Array.isArray(parsed)) throw new CommandError('usage', `the matrix ${file} is not a JSON array`, 2);
    return parsed.map((entry, i) => {
      if (!isObject(entry)) throw new CommandError('usage', `the matrix ${file}: item ${i} is not an object`, 2);
      return entry;
    });
  }
  return text.split('\n').flatMap((line, i) => {
    if (line.trim() === '') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new CommandError('usage', `the matrix ${file}, line ${i + 1}: not valid JSON: ${(error as Error).message}`, 2);
    }
    if (!isObject(parsed)) throw new CommandError('usage', `the matrix ${file}, line ${i + 1}: not a JSON object`, 2);
    return [parsed];
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

interface SubmitOptions {
  project: string;
  spec: string;
  matrix?: string;
  image?: string;
  entrypoint?: string[];
  env?: Record<string, string>;
  timeout?: number;
  filePath?: string[];
  maxAttempts?: number;
  idempotencyKey?: string;
  watch?: boolean;
}

/** A job as `show` prints it. */
export function formatJob(job: Job, now: Date): string {
  const attempts = job.maxAttempts !== undefined && job.maxAttempts > 1 ? `${job.attempt} of ${job.maxAttempts}` : job.attempt;
  const waited = job.claimedAt ?? (job.status === 'pending' ? now.toISOString() : null);
  const fields: [string, string | number | null][] = [
    ['id', job.id],
    ['status', job.status],
    ['project', job.project],
    ['org', job.org],
    ['spec', job.spec],
    ['priority', job.priority],
    ['attempt', attempts],
    ['timeout', job.timeout !== undefined ? formatDuration(job.timeout * 1000) : null],
    ['runner', job.runner],
    ['created', formatTime(job.createdAt)],
    ['claimed', formatTime(job.claimedAt)],
    ['started', formatTime(job.startedAt)],
    ['finished', formatTime(job.finishedAt)],
    ['waited', waited === null ? null : formatDuration(new Date(waited).getTime() - new Date(job.createdAt).getTime())],
    ['ran', formatRunTime(job, now)],
    ['exit code', job.exitCode],
    ['failure', job.failure],
    ['billed', job.billedMinutes === null ? null : `${job.billedMinutes} min`],
  ];
  if (job.queue !== undefined) fields.push(['queue', formatQueue(job.queue, now)]);
  if (isTerminal(job.status)) fields.push(['outcome', formatOutcome(job)]);
  return formatFields(fields.map(([label, value]) => [label, value ?? NONE]));
}
