import { Logger } from '@nestjs/common';
import {
  DiscardPolicy,
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type PubAck,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { EventEnvelope } from '../../events/envelope';

export interface JobsStreamOptions {
  /** The JetStream stream (`Subjects.jobsStreamName()`). */
  stream: string;
  /** Its subjects (`Subjects.allJobEvents()`). */
  subjects: string;
  /** How long JetStream remembers a message id to drop a republished event; at least 10 minutes. */
  duplicateWindowMs: number;
  /** How long one publish waits for its ack. */
  publishTimeoutMs: number;
}

const encoder = new TextEncoder();

/**
 * The JetStream side of the relay: keeps the jobs stream configured, publishes envelopes with
 * the event id as message id (JetStream drops a second one inside the duplicate window), and
 * tells which event the stream holds last.
 */
export class JetStreamPublisher {
  private readonly logger = new Logger(JetStreamPublisher.name);
  private client: JetStreamClient | null = null;
  private manager: JetStreamManager | null = null;

  constructor(
    private readonly connection: NatsConnection,
    readonly options: JobsStreamOptions,
  ) {}

  /** Creates the stream, or updates its subjects and duplicate window if they fall short. */
  async ensureStream(): Promise<void> {
    const jsm = await this.jsm();
    const { stream, subjects, duplicateWindowMs } = this.options;
    const window = nanos(duplicateWindowMs);
    let existing;
    try {
      existing = (await jsm.streams.info(stream)).config;
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
      await jsm.streams.add({
        name: stream,
        subjects: [subjects],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        duplicate_window: window,
      });
      this.logger.log(`created JetStream stream ${stream} (${subjects})`);
      return;
    }
    if (existing.storage !== StorageType.File) {
      this.logger.warn(`JetStream stream ${stream} keeps messages in ${existing.storage} storage, not file (JetStream cannot change that)`);
    }
    const missingSubject = !existing.subjects.includes(subjects);
    const shortWindow = (existing.duplicate_window ?? 0) < window;
    if (missingSubject || shortWindow) {
      await jsm.streams.update(stream, {
        subjects: missingSubject ? [...existing.subjects, subjects] : existing.subjects,
        duplicate_window: shortWindow ? window : existing.duplicate_window,
      });
      this.logger.log(`updated JetStream stream ${stream} (${subjects}, duplicate window ${duplicateWindowMs} ms)`);
    }
  }

  /** Publishes one envelope and waits for JetStream's ack (`duplicate` when it already had it). */
  async publish(subject: string, envelope: EventEnvelope): Promise<PubAck> {
    this.client ??= jetstream(this.connection, { timeout: this.options.publishTimeoutMs });
    return this.client.publish(subject, encoder.encode(JSON.stringify(envelope)), {
      msgID: envelope.id,
      timeout: this.options.publishTimeoutMs,
    });
  }

  /** The message id of the stream's last message, or null if it has none (or it had no id). */
  async lastMessageId(): Promise<string | null> {
    const jsm = await this.jsm();
    const { state } = await jsm.streams.info(this.options.stream);
    if (state.messages === 0) return null;
    const message = await jsm.streams.getMessage(this.options.stream, { seq: state.last_seq });
    return message?.header?.get('Nats-Msg-Id') || null;
  }

  private async jsm(): Promise<JetStreamManager> {
    this.manager ??= await jetstreamManager(this.connection, { timeout: this.options.publishTimeoutMs });
    return this.manager;
  }
}
