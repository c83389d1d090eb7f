/*
 * The HTTP carriage (proto/HTTP.md) over fetch: the HELLO in an open request,
 * then upstream frames in numbered sends (one in flight, retried under the
 * same numbers until a 204) and downstream frames from polls carrying
 * Tether-Received (frames at or below it are dropped). Polls only: streams
 * are optional for a client (HTTP.md 7.2) and a poll loop works through every
 * buffering proxy.
 */
import { parseBody, writeBody, bodyLimits, BodyError } from './body.js';
import { decodeFrame, FRAME_WELCOME } from './codec.js';
import type { ErrorName } from './errors.js';
import type { ResolvedOptions } from './options.js';
import type { CloseInfo, Transport, TransportEvents } from './transport.js';

const MEDIA = 'application/vnd.tether.v1+frames';
const POLL_HOLD_MS = 25000;
const LIVENESS_MS = POLL_HOLD_MS + 10000; /* HTTP.md 9.2 */
const SEND_TIMEOUT_MS = 15000;
const IDLE_BOUND_MS = 40000;

/** The four URLs of HTTP.md 2.1 for a ws:// or wss:// URL. */
export function carriageUrls(wsUrl: string): { open: string; send: string; poll: string; stream: string } {
  if (wsUrl.includes('#')) {
    throw new Error('a WebSocket URL has no fragment');
  }
  const m = /^(wss?):\/\/([^/?]*)([^?]*)(\?.*)?$/i.exec(wsUrl);
  if (!m) {
    throw new Error(`${wsUrl} is not a ws:// or wss:// URL`);
  }
  const scheme = m[1].toLowerCase() === 'wss' ? 'https' : 'http';
  let path = m[3];
  if (path.endsWith('/')) {
    path = path.slice(0, -1);
  }
  const q = m[4] ?? '';
  const u = (op: string) => `${scheme}://${m[2]}${path}/.tether/v1/${op}${q}`;
  return { open: u('open'), send: u('send'), poll: u('poll'), stream: u('stream') };
}

function isCarriage(res: Response): boolean {
  const ct = (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  return ct === MEDIA;
}

function retryAfterMs(res: Response): number {
  const v = Number(res.headers.get('retry-after'));
  return Number.isFinite(v) && v > 0 ? v * 1000 : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function httpTransport(wsUrl: string, ev: TransportEvents, o: ResolvedOptions): Transport {
  const urls = carriageUrls(wsUrl);
  const ac = new AbortController();
  let done = false;
  let id: string | null = null;
  let serverMax = 1048576;
  let hello: Uint8Array | null = null;
  const upQueue: Uint8Array[] = []; /* frames not yet sent */
  let upNext = 1; /* number of upQueue[0] */
  let sending = false;
  let received = 0;
  let lastDown = Date.now();
  let closingFlush = false; /* close() is flushing the last frames (BYE) */
  const base: Record<string, string> = { ...o.headers };

  const finish = (info: CloseInfo) => {
    if (!done) {
      done = true;
      ac.abort();
      ev.close(info);
    }
  };
  const fail = (error: ErrorName, detail: string, httpStatus?: number, ra?: number) => finish({ error, detail, httpStatus, retryAfterMs: ra });

  async function fetchT(url: string, init: RequestInit, ms: number): Promise<Response> {
    const t = new AbortController();
    const timer = setTimeout(() => t.abort(), ms);
    const onAbort = () => t.abort();
    ac.signal.addEventListener('abort', onAbort);
    try {
      return await fetch(url, { ...init, signal: t.signal, cache: 'no-store' });
    } finally {
      clearTimeout(timer);
      ac.signal.removeEventListener('abort', onAbort);
    }
  }

  async function open(helloFrame: Uint8Array): Promise<void> {
    let res: Response;
    try {
      res = await fetchT(urls.open, { method: 'POST', headers: { ...base, 'content-type': MEDIA }, body: writeBody([helloFrame]) as unknown as BodyInit }, o.welcomeTimeoutMs);
    } catch (e) {
      if (done) {
        return;
      }
      const aborted = (e as Error)?.name === 'AbortError';
      return fail(aborted ? 'TETHER_ESTALLED' : 'TETHER_ECONNECT', aborted ? `no answer to the HTTP open within ${o.welcomeTimeoutMs} ms` : `the HTTP open failed: ${(e as Error)?.message ?? e}`);
    }
    if (res.status !== 200 || !isCarriage(res)) {
      const st = res.status;
      res.body?.cancel().catch(() => undefined);
      return fail(
        st === 407 ? 'TETHER_EPROXY_AUTH' : 'TETHER_EHTTP',
        st === 200 ? 'the HTTP open was answered 200 without the carriage\'s Content-Type (a portal or proxy page)' : `the HTTP open was answered ${st}`,
        st,
        retryAfterMs(res),
      );
    }
    let frames: Uint8Array[];
    try {
      frames = parseBody(new Uint8Array(await res.arrayBuffer()), 'answer', o.maxMessage);
    } catch (e) {
      return fail('TETHER_EMALFORMED', `the open answer: ${(e as Error).message}`, 200);
    }
    id = res.headers.get('tether-connection');
    for (const f of frames) {
      try {
        const d = decodeFrame(f, o.maxMessage);
        if (d.type === FRAME_WELCOME) {
          serverMax = d.maxMessage;
        }
      } catch {
        /* the client reports it */
      }
      ev.frame(f);
    }
    if (!id || !/^[A-Za-z0-9_-]{32}$/.test(id)) {
      /* no connection id: the connection is already over (REJECT, mismatch, BYE 4) */
      setTimeout(() => fail('TETHER_EPEER_CLOSED', 'the open answer ended the connection'), 0);
      return;
    }
    void pollLoop();
    void pumpSends();
  }

  async function pollLoop(): Promise<void> {
    let failures = 0;
    while (!done) {
      if (Date.now() - lastDown > LIVENESS_MS) {
        return fail('TETHER_EPING', `no poll answered for ${LIVENESS_MS} ms`);
      }
      let res: Response;
      try {
        res = await fetchT(urls.poll, { method: 'GET', headers: { ...base, 'tether-connection': id as string, 'tether-received': String(received) } }, POLL_HOLD_MS + 5000);
      } catch {
        if (done) {
          return;
        }
        await sleep(Math.min(5000, 100 * 2 ** failures++));
        continue;
      }
      if (res.status === 204) {
        lastDown = Date.now();
        failures = 0;
        continue;
      }
      if (res.status === 404) {
        return fail('TETHER_EPEER_CLOSED', 'the server no longer knows the HTTP connection (404)', 404);
      }
      if (res.status !== 200) {
        res.body?.cancel().catch(() => undefined);
        if (res.status === 400 || res.status === 413 || res.status === 403) {
          return fail(res.status === 403 ? 'TETHER_EHTTP' : 'TETHER_EPROTO', `a poll was answered ${res.status}`, res.status);
        }
        await sleep(Math.min(5000, 100 * 2 ** failures++));
        continue;
      }
      const first = Number(res.headers.get('tether-first'));
      let frames: Uint8Array[];
      try {
        if (!isCarriage(res) || !Number.isInteger(first) || first < 1 || first > received + 1) {
          throw new Error('a poll answer without the carriage\'s Content-Type or a valid Tether-First');
        }
        frames = parseBody(new Uint8Array(await res.arrayBuffer()), 'poll', o.maxMessage);
      } catch (e) {
        if (done) {
          return;
        }
        return fail('TETHER_EMALFORMED', `the path mangles the carriage: ${e instanceof BodyError ? e.message : (e as Error).message}`, 200);
      }
      lastDown = Date.now();
      failures = 0;
      frames.forEach((f, i) => {
        if (first + i > received && !done) {
          received = first + i;
          ev.frame(f);
        }
      });
    }
  }

  async function pumpSends(): Promise<void> {
    if (sending || !id || upQueue.length === 0) {
      return;
    }
    sending = true;
    const { bodyMax, recordMax } = bodyLimits('send', serverMax);
    let size = 0;
    let n = 0;
    while (n < upQueue.length && n < 4096 && (n === 0 || size + 4 + upQueue[n].length <= bodyMax)) {
      size += 4 + upQueue[n].length;
      n++;
    }
    if (upQueue[0].length > recordMax) {
      sending = false;
      return fail('TETHER_ETOOBIG', `a frame of ${upQueue[0].length} bytes (the server's record_max is ${recordMax})`);
    }
    const body = writeBody(upQueue.slice(0, n));
    const started = Date.now();
    let failures = 0;
    while (!done || closingFlush) {
      let res: Response | null = null;
      try {
        res = await fetchT(
          urls.send,
          { method: 'POST', headers: { ...base, 'content-type': MEDIA, 'tether-connection': id, 'tether-first': String(upNext), 'tether-received': String(received) }, body: body as unknown as BodyInit },
          SEND_TIMEOUT_MS,
        );
      } catch {
        res = null;
      }
      if (res && res.status === 204) {
        upQueue.splice(0, n);
        upNext += n;
        break;
      }
      res?.body?.cancel().catch(() => undefined);
      if (res && res.status === 404) {
        sending = false;
        return fail('TETHER_EPEER_CLOSED', 'the server no longer knows the HTTP connection (404)', 404);
      }
      if (res && (res.status === 400 || res.status === 413 || res.status === 415 || res.status === 403)) {
        sending = false;
        return fail(res.status === 403 || res.status === 415 ? 'TETHER_EHTTP' : 'TETHER_EPROTO', `a send was answered ${res.status}`, res.status);
      }
      if (Date.now() - started > IDLE_BOUND_MS || closingFlush) {
        sending = false;
        return fail('TETHER_ECONNECT', 'a send could not be delivered within the idle bound');
      }
      await sleep(res && res.status === 409 ? retryAfterMs(res) || 1000 : Math.min(5000, 100 * 2 ** failures++));
    }
    sending = false;
    if (!done && upQueue.length > 0) {
      void pumpSends();
    }
  }

  queueMicrotask(() => !done && ev.open());

  return {
    kind: 'http',
    send(bytes) {
      if (done) {
        return;
      }
      if (!hello) {
        hello = bytes.slice();
        void open(hello);
        return;
      }
      upQueue.push(bytes.slice());
      void pumpSends();
    },
    close(error = 'TETHER_ECLOSED', detail = 'closed') {
      if (id && upQueue.length > 0 && !sending) {
        /* a BYE (and the ACK before it) still goes out, once, in the background */
        closingFlush = true;
        const frames = upQueue.splice(0);
        void fetch(urls.send, {
          method: 'POST',
          headers: { ...base, 'content-type': MEDIA, 'tether-connection': id, 'tether-first': String(upNext), 'tether-received': String(received) },
          body: writeBody(frames) as unknown as BodyInit,
        }).catch(() => undefined);
      }
      finish({ error, detail });
    },
  };
}
