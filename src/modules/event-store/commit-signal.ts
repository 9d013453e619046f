import { Injectable } from '@nestjs/common';

/**
 * Tells readers of the log in this process that something was just committed, so they read at
 * once instead of at their next poll (the relay, the projectors). Readers still poll: commits of
 * other processes do not ring here.
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
