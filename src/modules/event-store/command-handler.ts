import { Injectable } from '@nestjs/common';
import { ConcurrencyError } from '../../common/errors';
import type { DomainEvent, EventEnvelope, EventMetadata } from '../../events/envelope';
import { upcast } from '../../events/upcasters';
import { Db, type Sql } from '../database/db';
import { CommitSignal } from './commit-signal';
import { EventStore } from './event-store';

export interface Command<S, E extends DomainEvent> {
  stream: { id: string; type: string };
  /** How one event changes the stream's state (the stream's own fold). */
  evolve: (state: S | null, event: E) => S;
  /** What the command appends, given the current state; throws a DomainError to refuse. */
  decide: (state: S | null) => readonly E[];
  /**
   * Runs first in the transaction, before the append: locks and checks that must hold when the
   * events commit. It must not write (the append is the transaction's first write); it throws
   * to abort.
   */
  prepare?: (tx: Sql) => Promise<void>;
  /** Inline views written in the same transaction as the events. */
  project?: (tx: Sql, envelopes: readonly EventEnvelope<E>[], state: S) => Promise<void>;
  metadata: EventMetadata;
}

export interface CommandResult<S, E extends DomainEvent> {
  state: S | null;
  envelopes: EventEnvelope<E>[];
  version: number;
}

/** How often a command is decided again after another writer appended first. */
const MAX_ATTEMPTS = 8;

/**
 * Runs a command the event-sourced way: read the stream, fold it, decide, then append with the
 * expected version and write the inline views in one transaction. When another writer got there
 * first, the command is decided again on the new state, which may now refuse it.
 */
@Injectable()
export class CommandHandler {
  constructor(
    private readonly db: Db,
    private readonly store: EventStore,
    private readonly signal: CommitSignal,
  ) {}

  async load<S, E extends DomainEvent>(
    streamId: string,
    evolve: (state: S | null, event: E) => S,
  ): Promise<{ state: S | null; version: number }> {
    const envelopes = await this.store.readStream(streamId);
    let state: S | null = null;
    for (const envelope of envelopes) state = evolve(state, upcast(envelope) as unknown as E);
    return { state, version: envelopes.length };
  }

  async execute<S, E extends DomainEvent>(command: Command<S, E>): Promise<CommandResult<S, E>> {
    for (let attempt = 1; ; attempt++) {
      const { state, version } = await this.load(command.stream.id, command.evolve);
      const events = command.decide(state);
      if (events.length === 0) return { state, envelopes: [], version };
      let next = state;
      for (const event of events) next = command.evolve(next, event);
      try {
        const envelopes = await this.db.transaction(async (tx) => {
          await command.prepare?.(tx);
          const appended = await this.store.append(tx, command.stream, version, events, command.metadata);
          await command.project?.(tx, appended.envelopes, next as S);
          return appended.envelopes;
        });
        this.signal.committed();
        return { state: next, envelopes, version: version + events.length };
      } catch (error) {
        if (!(error instanceof ConcurrencyError) || attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }
}
