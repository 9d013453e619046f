import { Injectable } from '@nestjs/common';

/**
 * Tells readers of the log in this process that something was just committed, so they read at
 * once instead of at their next poll (the relay, the projectors, the events feed): rung by this
 * process's own commits, and by the commits of every other process on the database through
 * LogNotifications (LISTEN). Readers keep a slow safety poll for a notification that was lost.
 */
@Injectable()
export class CommitSignal {
  private readonly listeners = new Set<() => void>();

  committed(): void {
    for (const listener of this.listeners) listener();
  }

  listen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
