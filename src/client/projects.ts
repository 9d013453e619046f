import type { Command } from 'commander';
import type { Project } from './api';
import { type GlobalOptions, clientCommand, group, run } from './context';
import { formatFields, formatTable, formatTime } from './format';

/** `runway projects ...`: an organization's projects, with its key (the operator token cannot create them). */
export function registerProjectCommands(program: Command): void {
  const projects = group(program, 'projects', "your organization's projects (organization key; jobs are submitted to a project)");

  clientCommand(projects, 'create', "create a project in the key's organization")
    .argument('<slug>', 'lower-case letters, digits and dashes')
    .option('--name <name>', 'display name (default: the slug)')
    .action(
      run<GlobalOptions & { name?: string }>(async (ctx, [slug], options) => {
        const result = await ctx.client.createProject({ slug, name: options.name ?? slug });
        if (ctx.json) return ctx.printJson(result);
        ctx.print(`created project ${result.data.slug}`);
        ctx.print(formatProject(result.data));
        ctx.print(`\nsubmit a job: runway jobs submit --project ${result.data.slug} --spec <spec> -- <command>`);
      }),
    );

  clientCommand(projects, 'list', "the key's organization's projects").action(
    run(async (ctx) => {
      const result = await ctx.client.listProjects();
      if (ctx.json) return ctx.printJson(result);
      ctx.print(formatTable(['slug', 'name', 'created', 'id'], result.data.items.map((p) => [p.slug, p.name, formatTime(p.createdAt), p.id])));
    }),
  );

  clientCommand(projects, 'show', 'a project (the operator token may read any, by id)')
    .argument('<project>', 'slug or id')
    .action(
      run(async (ctx, [project]) => {
        const result = await ctx.client.getProject(project);
        if (ctx.json) return ctx.printJson(result);
        ctx.print(formatProject(result.data));
      }),
    );
}

function formatProject(project: Project): string {
  return formatFields([
    ['slug', project.slug],
    ['name', project.name],
    ['id', project.id],
    ['org', project.org],
    ['created', formatTime(project.createdAt)],
  ]);
}
