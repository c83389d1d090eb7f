/*
 * Which carriage the next attempt uses, WebSocket or HTTP, with the rules of
 * the C client (src/engine/fallback.c, proto/HTTP.md): in 'auto' the client
 * starts on WebSocket and moves to HTTP when WebSocket failed in a way that
 * points at the path (a 101 then no WELCOME, 426, a mangled 101, two
 * connections in a row welcomed then silent before any ACK). A 401/403 to the
 * upgrade tries the HTTP open once. The verdict is kept memoryMs, then
 * WebSocket is probed; a failed probe returns to HTTP for twice as long (at
 * most 12 times memoryMs). While a session lives on HTTP, the client probes
 * WebSocket in the background on that schedule (probeDue, probeWon, probeLost;
 * src/probe.ts), and it stores the verdict (keep, restore) so that a restart
 * starts on HTTP at once. Pure: the caller gives the time.
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
  /** Bumped whenever the verdict worth remembering changes (the client then stores it). */
  changes = 0;

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
      if (this.hiddenTry) {
        this.changes++; /* the HTTP open passed where the WebSocket could not: a verdict to store */
      }
      this.authTry = false;
      this.hiddenTry = false;
    } else if (this.probing) {
      this.probing = false;
      this.probesFailed = 0;
      this.changes++; /* WebSocket passes again: nothing to remember */
    }
  }

  /**
   * A verdict an earlier run stored: HTTP for the remaining time (at most 12 times memoryMs,
   * so a wall clock that jumped cannot pin the client to HTTP). False when it does not apply.
   */
  restore(now: number, remainingMs: number, probesFailed: number): boolean {
    if (this.mode !== 'auto' || !(remainingMs > 0)) {
      return false;
    }
    this.http = true;
    this.probing = false;
    this.authTry = false;
    this.hiddenTry = false;
    this.probesFailed = Number.isInteger(probesFailed) && probesFailed >= 0 ? probesFailed : 0;
    this.httpUntil = now + Math.min(remainingMs, this.memoryMs * MAX_FACTOR);
    this.why =
      `starting on the HTTP carriage: an earlier run found WebSocket blocked on this path ` +
      `(${this.probesFailed} failed probe(s) since); WebSocket is probed again in ${this.httpUntil - now} ms`;
    return true;
  }

  /** The verdict is worth storing: AUTO on HTTP because WebSocket is blocked (not the one 401/403 or hidden-cause try). */
  keep(): boolean {
    return this.mode === 'auto' && this.http && !this.authTry && !this.hiddenTry;
  }

  /** A background probe of WebSocket is due (on HTTP in AUTO, the verdict's time is up). */
  probeDue(now: number): boolean {
    return this.keep() && now >= this.httpUntil;
  }

  /** The background probe got this session's WELCOME: WebSocket carries the session again. */
  probeWon(): void {
    this.why = `back to WebSocket: a probe beside the HTTP carriage got its WELCOME after ${this.probesFailed} failed probe(s)`;
    this.http = false;
    this.probing = false;
    this.earlyDeaths = 0;
    this.probesFailed = 0;
    this.changes++;
  }

  /** The background probe failed: HTTP stays, the next probe waits twice as long (at most 12 times). */
  probeLost(now: number, why: string): void {
    this.lost(now, `the WebSocket probe failed (${why})`);
  }

  private lost(now: number, why: string): void {
    this.probesFailed++;
    const factor = Math.min(MAX_FACTOR, 2 ** Math.min(this.probesFailed, 4));
    const failed = this.probesFailed;
    this.toHttp(now, factor, why);
    this.probesFailed = failed;
  }

  private toHttp(now: number, factor: number, why: string) {
    this.http = true;
    this.probing = false;
    this.earlyDeaths = 0;
    this.httpUntil = now + this.memoryMs * factor;
    this.changes++;
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
      this.lost(now, 'the WebSocket probe did not reach WELCOME');
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
