/*
 * Which carriage the next attempt uses, WebSocket or HTTP, with the rules of
 * the C client (src/engine/fallback.c, proto/HTTP.md): in 'auto' the client
 * starts on WebSocket and moves to HTTP when WebSocket failed in a way that
 * points at the path (a 101 then no WELCOME, 426, a mangled 101, two
 * connections in a row welcomed then silent before any ACK). A 401/403 to the
 * upgrade tries the HTTP open once. The verdict is kept memoryMs, then
 * WebSocket is probed; a failed probe returns to HTTP for twice as long (at
 * most 12 times memoryMs). Pure: the caller gives the time.
 */
import type { ErrorName } from './errors.js';

export interface FallbackEvent {
  error: ErrorName;
  httpStatus: number;
  welcomed: boolean;
  acked: boolean;
  /** The platform hid the cause (a browser WebSocket that did not open). */
  statusHidden?: boolean;
}

export const FB_SAME = 0;
export const FB_SWITCHED = 1;
export const FB_PERMANENT = 2;
const MAX_FACTOR = 12;

export class Fallback {
  http: boolean;
  authTry = false;
  hiddenTry = false; /* this HTTP attempt asks the server what the browser's WebSocket could not tell */
  probing = false;
  earlyDeaths = 0;
  probesFailed = 0;
  httpUntil = 0;
  why = '';

  constructor(
    readonly mode: 'auto' | 'websocket' | 'http',
    readonly memoryMs: number,
  ) {
    this.http = mode === 'http';
  }

  /** Before an attempt: back to WebSocket for a probe when the HTTP verdict expired. */
  beforeAttempt(now: number): boolean {
    if (this.mode !== 'auto' || !this.http || this.authTry || this.hiddenTry || now < this.httpUntil) {
      return false;
    }
    this.http = false;
    this.probing = true;
    this.why = `probing WebSocket again after ${this.probesFailed} failed probe(s): the HTTP fallback's time is up`;
    return true;
  }

  welcomed(): void {
    if (this.http) {
      this.authTry = false;
      this.hiddenTry = false;
    } else if (this.probing) {
      this.probing = false;
      this.probesFailed = 0;
    }
  }

  private toHttp(now: number, factor: number, why: string) {
    this.http = true;
    this.probing = false;
    this.earlyDeaths = 0;
    this.httpUntil = now + this.memoryMs * factor;
    this.why = `falling back to the HTTP carriage: ${why}`;
  }

  private pathBlocks(ev: FallbackEvent): string | null {
    if (ev.welcomed) {
      return null;
    }
    switch (ev.error) {
      case 'TETHER_ESTALLED':
        return 'the WebSocket opened but no WELCOME came through';
      case 'TETHER_EHTTP':
        return ev.httpStatus === 426 ? 'the upgrade was answered 426 (a proxy strips Upgrade)' : null;
      case 'TETHER_EHANDSHAKE':
        return ev.httpStatus === 101 ? 'a 101 without a valid Upgrade (a proxy mangles it)' : null;
      default:
        return null;
    }
  }

  afterClose(ev: FallbackEvent, now: number): number {
    if (this.mode !== 'auto') {
      return FB_SAME;
    }
    if (this.http) {
      if (this.hiddenTry && !ev.welcomed) {
        /* the HTTP open did not pass either: its status says why (refused, not blocked) */
        this.hiddenTry = false;
        this.http = false;
        this.why = `the WebSocket did not open and the HTTP open was answered ${ev.httpStatus || 'nothing'}: back to WebSocket`;
        return (ev.httpStatus === 401 || ev.httpStatus === 403) ? FB_PERMANENT : FB_SAME;
      }
      if (this.authTry && !ev.welcomed) {
        this.authTry = false;
        this.http = false;
        this.why = 'the upgrade was refused (401/403) and the HTTP carriage did not pass either';
        return FB_PERMANENT;
      }
      return FB_SAME;
    }
    if (!ev.welcomed && ev.error === 'TETHER_EHTTP' && (ev.httpStatus === 401 || ev.httpStatus === 403) && !this.probing) {
      this.toHttp(now, 1, 'the upgrade was refused with 401/403: trying the HTTP open once');
      this.authTry = true;
      return FB_SWITCHED;
    }
    if (this.probing && !ev.welcomed) {
      this.probesFailed++;
      const factor = Math.min(MAX_FACTOR, 2 ** Math.min(this.probesFailed, 4));
      const failed = this.probesFailed;
      this.toHttp(now, factor, 'the WebSocket probe did not reach WELCOME');
      this.probesFailed = failed;
      return FB_SWITCHED;
    }
    if (!ev.welcomed && ev.statusHidden && !this.probing) {
      this.toHttp(now, 1, 'the browser hides why the WebSocket did not open: asking with the HTTP open');
      this.hiddenTry = true;
      return FB_SWITCHED;
    }
    const why = this.pathBlocks(ev);
    if (why) {
      this.toHttp(now, 1, why);
      return FB_SWITCHED;
    }
    if (ev.welcomed && !ev.acked && ev.error === 'TETHER_EPING') {
      if (++this.earlyDeaths >= 2) {
        this.toHttp(now, 1, 'two WebSocket connections in a row went silent before any ACK came back');
        return FB_SWITCHED;
      }
    } else if (ev.welcomed && ev.acked) {
      this.earlyDeaths = 0;
    }
    return FB_SAME;
  }
}
