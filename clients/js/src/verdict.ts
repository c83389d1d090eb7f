/*
 * The fallback verdict kept in the client's store (the C client's
 * client_verdict.c): a client that fell back to the HTTP carriage remembers it
 * per server url ("<url>|proxy=", the C client's key; the JS client has no
 * proxy option of its own), so that a restart or a reload starts on HTTP at
 * once until the memory expires. The store keeps wall-clock ms since the
 * epoch; the timers' now() is the wall clock too (Date.now, or the tests'
 * fake clock). Stores without verdictGet/verdictPut (an application's own
 * store written before) work unchanged: the verdict then lives in memory only.
 *
 * A verdict is an optimisation (its loss costs one failed WebSocket attempt),
 * so its store errors never stop the client: the text is returned and told
 * in the detail of the next 'connecting' event.
 */
import type { Fallback } from './fallback.js';
import type { TetherStore } from './store.js';
import { errText } from './util.js';

export const verdictKey = (url: string): string => `${url}|proxy=`;

export class VerdictMemory {
  private seen = 0;
  /** The last store error, told once in the next 'connecting' detail. */
  err = '';
  /** The verdict came from the store: the next 'connecting' detail says so. */
  restored = false;

  constructor(
    private readonly store: TetherStore,
    private readonly fb: Fallback,
    private readonly key: string,
  ) {}

  /** At start(): HTTP at once when a stored verdict has time left; an expired one is forgotten. */
  async load(now: number): Promise<void> {
    if (this.fb.mode !== 'auto' || typeof this.store.verdictGet !== 'function') {
      return;
    }
    try {
      const v = await this.store.verdictGet(this.key);
      if (v && v.untilMs > now) {
        this.restored = this.fb.restore(now, v.untilMs - now, v.probesFailed);
      } else if (v && typeof this.store.verdictPut === 'function') {
        try {
          await this.store.verdictPut(this.key, null);
        } catch (e) {
          this.err = `cannot forget the expired fallback verdict: ${errText(e)}`;
        }
      }
    } catch (e) {
      this.err = `cannot read the fallback verdict: ${errText(e)}`;
    }
    this.seen = this.fb.changes;
  }

  /** After the carriage choice changed: stores the verdict (HTTP and until when) or removes it. */
  async save(): Promise<void> {
    if (this.fb.changes === this.seen || this.fb.mode !== 'auto') {
      return;
    }
    this.seen = this.fb.changes;
    if (typeof this.store.verdictPut !== 'function') {
      return;
    }
    try {
      await this.store.verdictPut(this.key, this.fb.keep() ? { untilMs: this.fb.httpUntil, probesFailed: this.fb.probesFailed } : null);
    } catch (e) {
      this.err = `cannot store the fallback verdict: ${errText(e)}`;
    }
  }

  /** What the next 'connecting' detail adds (once). */
  take(): string {
    const parts = [this.restored ? this.fb.why : '', this.err].filter((s) => s);
    this.restored = false;
    this.err = '';
    return parts.length ? `: ${parts.join('; ')}` : '';
  }
}
