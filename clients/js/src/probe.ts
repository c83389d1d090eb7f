/*
 * The background WebSocket probe (the C client's client_probe.c). While the
 * session lives on the HTTP carriage in 'auto', a timer fires when the
 * verdict's time is up (fallback.ts: memoryMs, then 2x, 4x, 8x, 12x after
 * failed probes) and a second connection, over WebSocket, is opened beside
 * the HTTP one. It sends the session's HELLO as it stands at that moment; the
 * HTTP connection keeps carrying messages meanwhile. Then:
 *
 * - this session's WELCOME on the probe: the server made the probe the
 *   session's connection when it took that HELLO, so the client moves onto
 *   it (host.adopt): the HTTP connection is dropped without BYE, the client
 *   resends from the WELCOME's cursor and drops the server's resends it
 *   already had (its delivered cursor), exactly as after a reconnect.
 * - anything else (no WELCOME within welcomeTimeoutMs, another first frame,
 *   a refusal, a failed connect): the probe is closed, HTTP stays, the next
 *   probe waits twice as long (host.failed). If the probe's HELLO reached the
 *   server, the server displaced the HTTP connection meanwhile (BYE 9): the
 *   client then waits for the probe's outcome ('orphan') instead of stopping,
 *   and opens HTTP again at once if the probe fails.
 */
import { decodeFrame, encodeFrame, FRAME_WELCOME, type Frame, type Welcome } from './codec.js';
import type { Fallback } from './fallback.js';
import type { Timers } from './options.js';
import type { CloseInfo, Transport, TransportEvents } from './transport.js';
import { errText, hex } from './util.js';

export interface ProbeHost {
  readonly fb: Fallback;
  readonly timers: Timers;
  readonly connectTimeoutMs: number;
  readonly welcomeTimeoutMs: number;
  readonly maxMessage: number;
  /** The session is welcomed on the HTTP carriage (a probe may start). */
  live(): boolean;
  /** The HELLO as the session stands now, and the receive cursor it carries. */
  hello(): { frame: Frame; cursor: bigint; sessionId: Uint8Array };
  /** Opens a WebSocket; `session` are the client's handlers for it once adopted. */
  connect(ev: TransportEvents): { tp: Transport; session: TransportEvents };
  /** The probe got this session's WELCOME: the session moves onto tp. */
  adopt(tp: Transport, w: Welcome, cursor: bigint): void;
  /** The probe failed (why); orphan: the HTTP connection was displaced meanwhile. */
  failed(why: string, orphan: boolean): void;
}

export class Probe {
  private tp: Transport | null = null;
  private state: 'idle' | 'connecting' | 'hello' = 'idle';
  private timer: unknown = null;
  private cursor = 0n;
  private sid = '';
  private orphan = false;

  constructor(private readonly h: ProbeHost) {}

  /** A probe is out and its HELLO was sent (the server may have displaced the HTTP connection). */
  get helloSent(): boolean {
    return this.state === 'hello';
  }

  /** On HTTP with a live session: the timer for the next probe, at the verdict's end. */
  arm(): void {
    if (this.state !== 'idle' || !this.h.fb.keep()) {
      return;
    }
    this.clearTimer();
    const wait = Math.max(0, this.h.fb.httpUntil - this.h.timers.now());
    this.timer = this.h.timers.setTimeout(() => {
      this.timer = null;
      this.start();
    }, wait);
  }

  private start(): void {
    if (this.state !== 'idle' || !this.h.live() || !this.h.fb.probeDue(this.h.timers.now())) {
      if (this.h.live()) {
        this.arm();
      }
      return;
    }
    this.state = 'connecting';
    this.orphan = false;
    let tp: Transport | null = null;
    let session: TransportEvents | null = null;
    const mine = () => tp !== null && this.tp === tp;
    const ev: TransportEvents = {
      open: () => (mine() ? this.onOpen() : session?.open()),
      frame: (b) => (mine() ? this.onFrame(b) : session?.frame(b)),
      close: (info) => (mine() ? this.onClose(info) : session?.close(info)),
    };
    this.timer = this.h.timers.setTimeout(() => {
      this.timer = null;
      this.fail(`no connection within ${this.h.connectTimeoutMs} ms`);
    }, this.h.connectTimeoutMs);
    try {
      const r = this.h.connect(ev);
      tp = r.tp;
      session = r.session;
      this.tp = tp;
    } catch (e) {
      this.fail(`cannot open it: ${errText(e)}`);
    }
  }

  private onOpen(): void {
    if (this.state !== 'connecting' || !this.tp) {
      return;
    }
    this.clearTimer();
    const hello = this.h.hello();
    this.cursor = hello.cursor;
    this.sid = hex(hello.sessionId);
    this.state = 'hello';
    this.tp.send(encodeFrame(hello.frame));
    this.timer = this.h.timers.setTimeout(() => {
      this.timer = null;
      this.fail(`no WELCOME within ${this.h.welcomeTimeoutMs} ms`);
    }, this.h.welcomeTimeoutMs);
  }

  private onFrame(b: Uint8Array | null): void {
    if (this.state !== 'hello' || !this.tp) {
      return this.fail('it sent a frame before its HELLO went out');
    }
    let f: Frame | null = null;
    try {
      f = b ? decodeFrame(b, this.h.maxMessage) : null;
    } catch (e) {
      return this.fail(`a bad first frame: ${errText(e)}`);
    }
    if (!f || f.type !== FRAME_WELCOME || hex(f.sessionId) !== this.sid) {
      return this.fail("its first frame was not this session's WELCOME");
    }
    const tp = this.tp;
    this.clearTimer();
    this.tp = null;
    this.state = 'idle';
    this.orphan = false;
    this.h.adopt(tp, f, this.cursor);
  }

  private onClose(info: CloseInfo): void {
    this.tp = null;
    this.fail(`${info.error}: ${info.detail}`);
  }

  /** The HTTP connection ended while the probe's HELLO was out: its outcome decides what follows. */
  orphaned(): void {
    this.orphan = true;
  }

  private fail(why: string): void {
    const orphan = this.orphan;
    this.stop();
    this.h.failed(why, orphan);
  }

  /** Ends a probe and its timer without a verdict (the session ended or the client closes). */
  stop(): void {
    this.clearTimer();
    const tp = this.tp;
    this.tp = null;
    this.state = 'idle';
    this.orphan = false;
    tp?.close('TETHER_ECLOSED', 'the WebSocket probe is closed');
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      this.h.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
