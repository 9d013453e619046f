import { Injectable } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsString, Length, Matches, Max, Min } from 'class-validator';
import { ConflictError, invalidField } from '../../common/errors';
import { IdGenerator, UUID_PATTERN } from '../../common/ids';
import { decodeSpecEvent } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import { ARCHITECTURES, type Architecture, type SpecCreated, type SpecEvent } from '../../events/spec-events';
import { Db, type Sql, UNIQUE_VIOLATION, sqlState } from '../database/db';
import { CommandHandler } from '../event-store/command-handler';
import { NoNullCharacters, SLUG_PATTERN } from '../http/dto';
import type { Projection } from '../projections/projection';
import type { RequestContext } from '../http/request-context';

export class CreateSpecDto {
  @ApiProperty({ example: 'x86-64-8c-32g' })
  @IsString()
  @Matches(SLUG_PATTERN, { message: 'slug must be 1-64 lower-case letters, digits and dashes' })
  slug: string;

  @ApiProperty({ example: 'AMD EPYC 8 cores, 32 GiB' })
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name: string;

  @ApiProperty({ enum: ARCHITECTURES })
  @IsIn(ARCHITECTURES)
  architecture: Architecture;

  @ApiProperty({ description: 'CPU cores', example: 8 })
  @IsInt()
  @Min(1)
  @Max(65_536)
  cpu: number;

  @ApiProperty({ description: 'bytes', example: 34_359_738_368 })
  @IsInt()
  @Min(1)
  @Max(Number.MAX_SAFE_INTEGER)
  memory: number;

  @ApiProperty({ description: 'bytes', example: 549_755_813_888 })
  @IsInt()
  @Min(1)
  @Max(Number.MAX_SAFE_INTEGER)
  disk: number;

  @ApiProperty({ description: 'whether jobs get network access' })
  @IsBoolean()
  network: boolean;
}

export interface SpecRow {
  id: string;
  slug: string;
  name: string;
  architecture: Architecture;
  cpu: number;
  memory: string;
  disk: string;
  network: boolean;
  created_at: Date;
}

export const mapSpec = (row: SpecRow) => ({
  id: row.id,
  slug: row.slug,
  name: row.name,
  architecture: row.architecture,
  cpu: row.cpu,
  memory: Number(row.memory),
  disk: Number(row.disk),
  network: row.network,
  createdAt: row.created_at.toISOString(),
});

export const SPEC_STREAM = 'spec';

/** A spec's state: what it was created with (specs never change). */
export const evolveSpec = (_: SpecCreated['data'] | null, event: SpecEvent): SpecCreated['data'] => event.data;

/**
 * A new spec (the stream must be empty), with values the specs view stores as they are: whole
 * numbers from 1 (the view's integer and bigint columns), a known architecture, a boolean.
 */
export function decideCreateSpec(state: SpecCreated['data'] | null, spec: SpecCreated['data']): SpecEvent[] {
  if (state !== null) throw new ConflictError('this spec already exists');
  if (typeof spec.slug !== 'string') throw invalidField('slug', 'slug must be a string');
  if (typeof spec.name !== 'string') throw invalidField('name', 'name must be a string');
  if (!(ARCHITECTURES as readonly unknown[]).includes(spec.architecture)) throw invalidField('architecture', `architecture must be one of ${ARCHITECTURES.join(', ')}`);
  if (!isCount(spec.cpu, 2_147_483_647)) throw invalidField('cpu', 'cpu must be a whole number from 1');
  if (!isCount(spec.memory, Number.MAX_SAFE_INTEGER)) throw invalidField('memory', 'memory must be a whole number of bytes from 1');
  if (!isCount(spec.disk, Number.MAX_SAFE_INTEGER)) throw invalidField('disk', 'disk must be a whole number of bytes from 1');
  if (typeof spec.network !== 'boolean') throw invalidField('network', 'network must be true or false');
  const { specId, slug, name, architecture, cpu, memory, disk, network } = spec;
  return [{ type: 'SpecCreated', schemaVersion: 1, data: { specId, slug, name, architecture, cpu, memory, disk, network } }];
}

const isCount = (value: unknown, max: number): value is number => Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= max;

/** Hardware specs: classes of identical machines that jobs ask for and runners serve. */
/** How many entries `find` keeps (a spec takes two: by id and by slug); past it, it reads. */
const MAX_KNOWN_SPECS = 10_000;

@Injectable()
export class SpecsService {
  /** Specs found so far, by id and by slug (see `find`). */
  private readonly known = new Map<string, SpecRow>();

  constructor(
    private readonly db: Db,
    private readonly commands: CommandHandler,
    private readonly ids: IdGenerator,
  ) {}

  async create(dto: CreateSpecDto, ctx: RequestContext): Promise<SpecRow> {
    const specId = this.ids.next();
    const { slug, name, architecture, cpu, memory, disk, network } = dto;
    try {
      await this.commands.execute<SpecCreated['data'], SpecEvent>({
        stream: { id: specId, type: SPEC_STREAM },
        evolve: evolveSpec,
        decode: decodeSpecEvent,
        decide: (state) => decideCreateSpec(state, { specId, slug, name, architecture, cpu, memory, disk, network }),
        project: (tx, envelopes) => specViews.apply(tx, envelopes),
        metadata: ctx.metadata,
      });
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) throw new ConflictError(`a spec with slug "${dto.slug}" already exists`);
      throw error;
    }
    return (await this.find(specId)) as SpecRow;
  }

  async list(): Promise<SpecRow[]> {
    return (await this.db.query<SpecRow>(`SELECT * FROM specs ORDER BY slug`)).rows;
  }

  /** By id or slug. */
  async find(ref: string): Promise<SpecRow | null> {
    const known = this.known.get(ref);
    if (known !== undefined) return known;
    const column = UUID_PATTERN.test(ref) ? 'id' : 'slug';
    const spec = (await this.db.query<SpecRow>(`SELECT * FROM specs WHERE ${column} = $1`, [ref])).rows[0] ?? null;
    // A spec never changes once created (its stream has one event) and is never removed, so a
    // spec found stays as found; one not found yet is asked for again.
    if (spec !== null && this.known.size < MAX_KNOWN_SPECS) {
      this.known.set(spec.id, spec);
      this.known.set(spec.slug, spec);
    }
    return spec;
  }

  /** Every spec named, by id or slug, or the first one that does not exist. */
  async findAll(refs: readonly string[]): Promise<{ specs: SpecRow[]; missing: string | null }> {
    const specs: SpecRow[] = [];
    for (const ref of refs) {
      const spec = await this.find(ref);
      if (spec === null) return { specs, missing: ref };
      specs.push(spec);
    }
    return { specs, missing: null };
  }
}

/** Hardware specs: kept inline, read at once by runner registration and submissions. One insert per batch. */
export const specViews: Projection = {
  name: 'specs',
  tables: ['specs'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    const rows = events
      .filter((envelope) => envelope.streamType === SPEC_STREAM)
      .map((envelope) => ({ ...decodeSpecEvent(envelope).data, createdAt: envelope.occurredAt }));
    if (rows.length === 0) return;
    await tx.query(
      `INSERT INTO specs (id, slug, name, architecture, cpu, memory, disk, network, created_at)
       SELECT "specId", slug, name, architecture, cpu, memory, disk, network, "createdAt"
       FROM jsonb_to_recordset($1::jsonb) AS s("specId" uuid, slug text, name text, architecture text, cpu int,
         memory bigint, disk bigint, network boolean, "createdAt" timestamptz)`,
      [JSON.stringify(rows)],
    );
  },
};
