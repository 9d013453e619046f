import { type Clock, ManualClock, SystemClock } from '../common/clock';

/** Stops a timer; after it fired (or was stopped) it does nothing. */
export type Cancel = () => void;

/** The time and the timers, injected so that tests move time by hand instead of sleeping. */
export interface Scheduler {
  readonly clock: Clock;
  /** Calls `fire` once, `ms` from now. */
  after(ms: number, fire: () => void): Cancel;
  /** Calls `fire` every `ms`. */
  every(ms: number, fire: () => void): Cancel;
}

export class SystemScheduler implements Scheduler {
  readonly clock = new SystemClock();

  after(ms: number, fire: () => void): Cancel {
    const timer = setTimeout(fire, ms);
    return () => clearTimeout(timer);
  }

  every(ms: number, fire: () => void): Cancel {
    const timer = setInterval(fire, ms);
    return () => clearInterval(timer);
  }
}

interface ManualTimer {
  due: number;
  /** Null for a timer that fires once. */
  period: number | null;
  fire: () => void;
  /** Timers due at the same time fire in the order they were set. */
  order: number;
}

/** Timers on a ManualClock: nothing fires until `advance` moves the clock past it. For tests. */
export class ManualScheduler implements Scheduler {
  readonly clock: ManualClock;
  private readonly timers = new Set<ManualTimer>();
  private order = 0;

  constructor(start?: Date | string) {
    this.clock = new ManualClock(start);
  }

  after(ms: number, fire: () => void): Cancel {
    return this.add(ms, null, fire);
  }

  every(ms: number, fire: () => void): Cancel {
    return this.add(ms, Math.max(1, ms), fire);
  }

  /** Timers set and not yet fired or stopped. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves the clock `ms` forward, stopping at each timer due on the way to fire it. Between
   * timers, and at the end, lets promise callbacks and I/O callbacks already queued run (a
   * `setImmediate` turn), so what a timer starts has happened before the next one fires.
   */
  async advance(ms: number): Promise<void> {
    const target = this.now() + ms;
    for (;;) {
      await settle();
      const next = this.soonest();
      if (next === undefined || next.due > target) break;
      this.clock.set(new Date(next.due));
      if (next.period === null) this.timers.delete(next);
      else next.due += next.period;
      next.fire();
    }
    this.clock.set(new Date(target));
    await settle();
  }

  private now(): number {
    return this.clock.now().getTime();
  }

  private add(ms: number, period: number | null, fire: () => void): Cancel {
    const timer: ManualTimer = { due: this.now() + Math.max(0, ms), period, fire, order: this.order++ };
    this.timers.add(timer);
    return () => void this.timers.delete(timer);
  }

  private soonest(): ManualTimer | undefined {
    let soonest: ManualTimer | undefined;
    for (const timer of this.timers) {
      if (soonest === undefined || timer.due < soonest.due || (timer.due === soonest.due && timer.order < soonest.order)) soonest = timer;
    }
    return soonest;
  }
}

/** One turn of the event loop: promise callbacks and queued I/O callbacks run. */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
