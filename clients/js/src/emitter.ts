/* A small typed event emitter that works the same in browsers and Node. */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handlers = { [k: string]: (...args: any[]) => void };

export class Emitter<E extends Handlers> {
  private handlers: { [K in keyof E]?: E[K][] } = {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, fn: E[K]): () => void {
    (this.handlers[event] ??= []).push(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof E>(event: K, fn: E[K]): void {
    const l = this.handlers[event];
    if (l) {
      this.handlers[event] = l.filter((f) => f !== fn);
    }
  }

  /** Calls each listener; one that throws does not stop the others nor the client (reported as 'error'). */
  protected emitSafe<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    for (const fn of this.handlers[event] ?? []) {
      try {
        fn(...args);
      } catch (e) {
        if (event !== 'error') {
          this.emitSafe('error' as K, ...([e] as unknown as Parameters<E[K]>));
        }
      }
    }
  }
}
