import { Injectable } from '@nestjs/common';
import { ConcurrencyError } from '../../common/errors';
import { type DomainEvent, type EventEnvelope, type EventMetadata, GENESIS_HASH } from '../../events/envelope';
import type { StoredEvent } from '../../events/decode';
import { Db, type Sql } from '../database/db';
import type { InlineWrite } from '../database/inline-write';
import { CommitSignal } from './commit-signal';
import { type AppendCheck, EventStore } from './event-store';
import { GroupCommit } from './group-commit';

export interface Command<S, E extends DomainEvent> {
  stream: { id: string; type: string };
  /** How one event changes the stream's state (the stream's own fold). */
  evolve: (state: S | null, event: E) => S;
  /** How a stored event of the stream is read: upcast and checked (its union's decode in events/decoders). */
  decode: (stored: StoredEvent) => E;
  /** What the command appends, given the current state; throws a DomainError to refuse. */
  decide: (state: S | null) => readonly E[];
  /**
   * Runs first in the transaction, before the append: locks and checks that must hold when the
   * events commit. It must not write (the append is the transaction's first write); it throws
   * to abort.
   */
  prepare?: (tx: Sql) => Promise<void>;
  /**
   * A check made in the append's own statement (see AppendCheck), before the stream is locked:
   * the append goes in only if it says so. Without `prepare` or `project` such a command is one
   * statement, outside any transaction.
   */
  check?: AppendCheck;
  /**
   * Inline views' writes that need only the new state: made by the append's own statement (see
   * EventStore.append), so a command with neither `prepare` nor `project` commits its event and
   * views in one round trip, without a transaction of its own.
   */
  inline?: (state: S) => readonly InlineWrite[];
  /** Inline views written in the same transaction as the events, after them (statements of their own). */
  project?: (tx: Sql, envelopes: readonly EventEnvelope<E>[], state: S) => Promise<void>;
  metadata: EventMetadata;
}

export interface CommandResult<S, E extends DomainEvent> {
  state: S | null;
  /** The events the command appended, as decided (none when it changed nothing). */
  events: readonly E[];
  envelopes: EventEnvelope<E>[];
  version: number;
}

/** The first command of a new stream, one of several started together (CommandHandler.startAll). */
export interface StreamStart<S, E extends DomainEvent> {
  stream: { id: string; type: string };
  evolve: (state: S | null, event: E) => S;
  /** What starts the stream: exactly one event; throws a DomainError to refuse. */
  decide: (state: null) => readonly E[];
  metadata: EventMetadata;
}

/** How often a command is decided again after another writer appended first. */
const MAX_ATTEMPTS = 8;
/** How many streams' folded states the handler keeps (the most recently used). */
const CACHED_STREAMS = 2_000;

interface Loaded<S> {
  state: S | null;
  version: number;
  /** The hash of the stream's last event (the genesis hash for an empty stream). */
  lastHash: string;
}

/**
 * The folded state of recently used streams, as this process last read or wrote them, so a
 * command on a stream it just touched skips reading it. Never trusted for more than a guess:
 * the append checks the stream's version and head hash, and a stale guess costs one refused
 * append and a read (another instance wrote the stream), nothing more.
 */
class StreamCache {
  private readonly entries = new Map<string, Loaded<unknown>>();

  get<S>(streamId: string): Loaded<S> | undefined {
    const entry = this.entries.get(streamId);
    if (entry === undefined) return undefined;
    // Map order is insertion order: move it to the newest end.
    this.entries.delete(streamId);
    this.entries.set(streamId, entry);
    return entry as Loaded<S>;
  }

  set<S>(streamId: string, entry: Loaded<S>): void {
    this.entries.delete(streamId);
    this.entries.set(streamId, entry);
    if (this.entries.size > CACHED_STREAMS) this.entries.delete(this.entries.keys().next().value as string);
  }

  delete(streamId: string): void {
    this.entries.delete(streamId);
  }
}

/**
 * Runs a command the event-sourced way: read the stream, fold it, decide, then append with the
 * expected version and write the inline views in one transaction. When another writer got there
 * first, the command is decided again on the new state, which may now refuse it.
 */
@Injectable()
export class CommandHandler {
  private readonly cache = new StreamCache();
  private readonly group: GroupCommit;

  constructor(
    private readonly db: Db,
    private readonly store: EventStore,
    private readonly signal: CommitSignal,
  ) {
    this.group = new GroupCommit(db, store);
  }

  /** Reads and folds the stream (never from the cache), each event read with `decode`. */
  async load<S, E extends DomainEvent>(
    streamId: string,
    evolve: (state: S | null, event: E) => S,
    decode: (stored: StoredEvent) => E,
  ): Promise<{ state: S | null; version: number }> {
    const loaded = await this.read(streamId, evolve, decode);
    return { state: loaded.state, version: loaded.version };
  }

  async execute<S, E extends DomainEvent>(command: Command<S, E>, options: { newStream?: boolean } = {}): Promise<CommandResult<S, E>> {
    const streamId = command.stream.id;
    const { decode } = command;
    for (let attempt = 1; ; attempt++) {
      // The first try may start from what this process knows. Only an append checks that guess,
      // so a guess that decides anything else (a refusal, nothing to do) is decided again on
      // the stream as read; so is every retry.
      const guess = attempt === 1 ? (options.newStream ? { state: null, version: 0, lastHash: GENESIS_HASH } : this.cache.get<S>(streamId)) : undefined;
      let loaded = guess ?? (await this.read(streamId, command.evolve, decode));
      let events: readonly E[];
      try {
        events = command.decide(loaded.state);
      } catch (refusal) {
        if (guess === undefined) throw refusal;
        loaded = await this.read(streamId, command.evolve, decode);
        events = command.decide(loaded.state);
      }
      if (events.length === 0 && guess !== undefined) {
        loaded = await this.read(streamId, command.evolve, decode);
        events = command.decide(loaded.state);
      }
      const { state, version, lastHash } = loaded;
      if (events.length === 0) return { state, events, envelopes: [], version };
      let next = state;
      for (const event of events) next = command.evolve(next, event);
      const inline = command.inline?.(next as S) ?? [];
      const append = (sql: Sql) => this.store.append(sql, command.stream, version, events, command.metadata, { prevHash: lastHash, inline, check: command.check });
      // One statement is atomic on its own: no BEGIN and COMMIT around it. Without a check it may
      // share its statement with other commands' (group commit); a check (a claim's locks and
      // limits) goes in a statement of its own.
      const oneStatement = command.prepare === undefined && command.project === undefined && EventStore.appendsInOneStatement(version, events.length, lastHash);
      try {
        const envelopes = !oneStatement
          ? await this.db.transaction(async (tx) => {
              await command.prepare?.(tx);
              const appended = await append(tx);
              await command.project?.(tx, appended.envelopes, next as S);
              return appended.envelopes;
            })
          : command.check === undefined
            ? [await this.group.append({ stream: command.stream, expectedVersion: version, prevHash: lastHash, event: events[0], metadata: command.metadata, inline })]
            : (await append(this.db)).envelopes;
        this.cache.set(streamId, { state: next, version: version + events.length, lastHash: envelopes[envelopes.length - 1].hash });
        this.signal.committed();
        return { state: next, events, envelopes, version: version + events.length };
      } catch (error) {
        // Whatever failed, the cached state may be why.
        this.cache.delete(streamId);
        if (!(error instanceof ConcurrencyError) || attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * Starts several new streams at once, all or nothing: each decided on the empty state, then in
   * one transaction `prepare`, one statement with every stream's first event and the `inline`
   * writes (given every new state, in order), and `project`. A stream that exists already
   * refuses the whole (ConcurrencyError); callers name streams with fresh ids.
   */
  async startAll<S, E extends DomainEvent>(
    starts: readonly StreamStart<S, E>[],
    options: {
      prepare?: (tx: Sql) => Promise<void>;
      inline?: (states: readonly S[]) => readonly InlineWrite[];
      project?: (tx: Sql, envelopes: readonly EventEnvelope<E>[], states: readonly S[]) => Promise<void>;
    } = {},
  ): Promise<{ state: S; event: E; envelope: EventEnvelope<E> }[]> {
    const decided = starts.map((start) => {
      const events = start.decide(null);
      if (events.length !== 1) throw new Error(`stream ${start.stream.id} must start with exactly one event, not ${events.length}`);
      return { start, event: events[0], state: start.evolve(null, events[0]) };
    });
    const states = decided.map((d) => d.state);
    const envelopes = await this.db.transaction(async (tx) => {
      await options.prepare?.(tx);
      const appended = await this.store.startStreams(
        tx,
        decided.map(({ start, event }) => ({ stream: start.stream, event, metadata: start.metadata })),
        options.inline?.(states) ?? [],
      );
      await options.project?.(tx, appended, states);
      return appended;
    });
    decided.forEach(({ start, state }, i) => this.cache.set(start.stream.id, { state, version: 1, lastHash: envelopes[i].hash }));
    this.signal.committed();
    return decided.map(({ state, event }, i) => ({ state, event, envelope: envelopes[i] }));
  }

  private async read<S, E extends DomainEvent>(
    streamId: string,
    evolve: (state: S | null, event: E) => S,
    decode: (stored: StoredEvent) => E,
  ): Promise<Loaded<S>> {
    const envelopes = await this.store.readStream(streamId);
    let state: S | null = null;
    for (const envelope of envelopes) state = evolve(state, decode(envelope));
    const loaded = { state, version: envelopes.length, lastHash: envelopes[envelopes.length - 1]?.hash ?? GENESIS_HASH };
    if (envelopes.length > 0) this.cache.set(streamId, loaded);
    return loaded;
  }
}
