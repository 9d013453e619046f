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

const BLOBS_SQL: InlineWrite['sql'] = (rows, wentIn) => `INSERT INTO blobs (sha256, bytes, content)
  SELECT DISTINCT ON (b.sha256) b.sha256, b.bytes, decode(b.content, 'base64')
    FROM jsonb_to_recordset(${rows}) AS b(job_id uuid, sha256 text, bytes int, content text)
   WHERE ${wentIn('b.job_id')}
  ON CONFLICT (sha256) DO NOTHING`;

const JOB_OUTPUTS_SQL: InlineWrite['sql'] = (rows, wentIn) => `INSERT INTO job_outputs (job_id, attempt, kind, path, sha256)
  SELECT o.job_id, o.attempt, o.kind, o.path, o.sha256
    FROM jsonb_to_recordset(${rows}) AS o(job_id uuid, attempt int, kind text, path text, sha256 text)
   WHERE ${wentIn('o.job_id')}`;

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
    const stored = parts.map((p) => {
      const bytes = Buffer.from(p.content, 'utf8');
      return { ...p, bytes, sha256: sha256Hex(bytes) };
    });
    return [
      // Bytes travel as base64 inside the JSON rows (jsonb has no bytes).
      { name: 'blobs', rows: stored.map((p) => ({ job_id: jobId, sha256: p.sha256, bytes: p.bytes.length, content: p.bytes.toString('base64') })), sql: BLOBS_SQL },
      { name: 'job_outputs', rows: stored.map((p) => ({ job_id: jobId, attempt, kind: p.kind, path: p.path, sha256: p.sha256 })), sql: JOB_OUTPUTS_SQL },
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
