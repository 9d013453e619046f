import { Injectable } from '@nestjs/common';
import { sha256Hex } from '../../events/envelope';
import type { JobOutputSummary } from '../../events/job-events';
import { Db } from '../database/db';
import type { InlineWrite } from '../database/inline-write';

/** An attempt's output as the runner sent it. */
export interface JobOutput {
  stdout?: string;
  stderr?: string;
  files?: Record<string, string>;
  truncated?: boolean;
}

/**
 * Job output, kept out of the event rows: the events carry each part's size and SHA-256 (the
 * summary), the content is stored once per digest in `blobs`.
 */
@Injectable()
export class JobOutputRepository {
  constructor(private readonly db: Db) {}

  /** The summary the JobCompleted/JobFailed event carries. */
  static summarize(output: JobOutput): JobOutputSummary {
    const part = (content: string | undefined) =>
      content === undefined ? null : { bytes: Buffer.byteLength(content, 'utf8'), sha256: sha256Hex(content) };
    return {
      stdout: part(output.stdout),
      stderr: part(output.stderr),
      files: Object.entries(output.files ?? {}).map(([path, content]) => ({ path, ...(part(content) as { bytes: number; sha256: string }) })),
      truncated: output.truncated ?? false,
    };
  }

  /**
   * The writes that store the content, made with the event naming it (in its statement: see
   * InlineWrite): the blobs, then the attempt's rows pointing at them. None for no output.
   */
  static writes(jobId: string, attempt: number, output: JobOutput): InlineWrite[] {
    const parts: { kind: string; path: string; content: string }[] = [];
    if (output.stdout !== undefined) parts.push({ kind: 'stdout', path: '', content: output.stdout });
    if (output.stderr !== undefined) parts.push({ kind: 'stderr', path: '', content: output.stderr });
    for (const [path, content] of Object.entries(output.files ?? {})) parts.push({ kind: 'file', path, content });
    if (parts.length === 0) return [];
    const buffers = parts.map((p) => Buffer.from(p.content, 'utf8'));
    const digests = buffers.map((b) => sha256Hex(b));
    return [
      (q) => `INSERT INTO blobs (sha256, bytes, content)
       SELECT * FROM unnest(${q.param(digests)}::text[], ${q.param(buffers.map((b) => b.length))}::int[], ${q.param(buffers)}::bytea[])
        WHERE ${q.guard}
       ON CONFLICT (sha256) DO NOTHING`,
      (q) => `INSERT INTO job_outputs (job_id, attempt, kind, path, sha256)
       SELECT ${q.param(jobId)}::uuid, ${q.param(attempt)}::int, *
         FROM unnest(${q.param(parts.map((p) => p.kind))}::text[], ${q.param(parts.map((p) => p.path))}::text[], ${q.param(digests)}::text[])
        WHERE ${q.guard}`,
    ];
  }


  /** The output of the job's attempt, as text. */
  async find(jobId: string, attempt: number): Promise<{ stdout: string | null; stderr: string | null; files: Record<string, string> }> {
    const { rows } = await this.db.query<{ kind: string; path: string; content: Buffer }>(
      `SELECT o.kind, o.path, b.content FROM job_outputs o JOIN blobs b ON b.sha256 = o.sha256
        WHERE o.job_id = $1 AND o.attempt = $2 ORDER BY o.kind, o.path`,
      [jobId, attempt],
    );
    const result = { stdout: null as string | null, stderr: null as string | null, files: {} as Record<string, string> };
    for (const row of rows) {
      const content = row.content.toString('utf8');
      if (row.kind === 'stdout') result.stdout = content;
      else if (row.kind === 'stderr') result.stderr = content;
      else result.files[row.path] = content;
    }
    return result;
  }
}
