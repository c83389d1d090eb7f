/*
 * The default carriages: WebSocket through the `ws` package in Node (it shows
 * the HTTP status of a refused upgrade and can ping) or the platform's
 * WebSocket in browsers; and the HTTP carriage (http.ts).
 */
import type { ErrorName } from './errors.js';
import { httpTransport } from './http.js';
import type { ResolvedOptions } from './options.js';
import { isNode } from './platform.js';
import type { CloseInfo, Transport, TransportEvents, TransportFactory } from './transport.js';

const SUBPROTOCOL = 'tether.v1';

/** A factory for the given options, loading `ws` in Node. */
export async function defaultTransportFactory(o: ResolvedOptions): Promise<TransportFactory> {
  let ws: TransportFactory;
  if (isNode()) {
    const mod = await import('ws');
    const WS = (mod.default ?? mod) as unknown as typeof import('ws').default;
    ws = (_kind, url, ev) => nodeWebSocket(WS, url, ev, o);
  } else {
    ws = (_kind, url, ev) => browserWebSocket(url, ev);
  }
  return (kind, url, ev) => (kind === 'http' ? httpTransport(url, ev, o) : ws(kind, url, ev));
}

/** Calls ev.close once, whatever reports the end first. */
function once(ev: TransportEvents): (info: CloseInfo) => void {
  let done = false;
  return (info) => {
    if (!done) {
      done = true;
      ev.close(info);
    }
  };
}

function sysError(e: { code?: string; message?: string }): { error: ErrorName; detail: string } {
  const code = e.code ?? '';
  const msg = e.message ?? String(e);
  if (code === 'ECONNREFUSED') {
    return { error: 'TETHER_ECONNREFUSED', detail: msg };
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return { error: 'TETHER_EDNS', detail: msg };
  }
  if (/CERT|SSL|TLS/i.test(code) || /certificate|TLS|SSL/i.test(msg)) {
    return { error: 'TETHER_ETLS', detail: msg };
  }
  if (/subprotocol|Invalid Sec-WebSocket|Upgrade/i.test(msg)) {
    return { error: 'TETHER_EHANDSHAKE', detail: msg };
  }
  return { error: 'TETHER_ECONNECT', detail: msg };
}

function nodeWebSocket(WS: typeof import('ws').default, url: string, ev: TransportEvents, o: ResolvedOptions): Transport {
  const finish = once(ev);
  const sock = new WS(url, SUBPROTOCOL, {
    headers: o.headers,
    maxPayload: o.maxMessage + 64 + 1024,
    perMessageDeflate: false,
  });
  let opened = false;
  let failure: CloseInfo | null = null;
  let pingTimer: ReturnType<typeof setInterval> | null = null;
  let pongTimer: ReturnType<typeof setTimeout> | null = null;
  const stopPing = () => {
    if (pingTimer) {
      clearInterval(pingTimer);
    }
    if (pongTimer) {
      clearTimeout(pongTimer);
    }
    pingTimer = pongTimer = null;
  };
  sock.on('unexpected-response', (req, res) => {
    const status = res.statusCode ?? 0;
    const ra = Number(res.headers['retry-after']);
    failure = {
      error: status === 407 ? 'TETHER_EPROXY_AUTH' : 'TETHER_EHTTP',
      httpStatus: status,
      retryAfterMs: Number.isFinite(ra) && ra > 0 ? ra * 1000 : 0,
      detail: `the server answered the upgrade with HTTP ${status}`,
    };
    res.resume();
    req.destroy();
    finish(failure);
  });
  sock.on('open', () => {
    if (sock.protocol !== SUBPROTOCOL) {
      failure = { error: 'TETHER_EHANDSHAKE', httpStatus: 101, detail: `the 101 selected subprotocol "${sock.protocol}", not ${SUBPROTOCOL}` };
      sock.terminate();
      return;
    }
    opened = true;
    if (o.pingIntervalMs > 0) {
      pingTimer = setInterval(() => {
        if (pongTimer) {
          return;
        }
        pongTimer = setTimeout(() => {
          failure = { error: 'TETHER_EPING', detail: `no pong within ${o.pongTimeoutMs} ms` };
          sock.terminate();
        }, o.pongTimeoutMs);
        sock.ping();
      }, o.pingIntervalMs);
    }
    ev.open();
  });
  sock.on('pong', () => {
    if (pongTimer) {
      clearTimeout(pongTimer);
      pongTimer = null;
    }
  });
  sock.on('message', (data: Buffer, isBinary: boolean) => {
    ev.frame(isBinary ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null);
  });
  sock.on('error', (e: Error & { code?: string }) => {
    if (!failure) {
      failure = e.message.includes('Max payload size exceeded')
        ? { error: 'TETHER_EFRAME_OVERSIZE', detail: 'a WebSocket message over max_message + 64 bytes' }
        : { ...sysError(e), httpStatus: /subprotocol/i.test(e.message) ? 101 : undefined };
    }
  });
  sock.on('close', (code: number) => {
    stopPing();
    finish(failure ?? { error: opened ? 'TETHER_EPEER_CLOSED' : 'TETHER_ECONNECT', detail: `the connection closed (WebSocket close ${code})` });
  });
  return {
    kind: 'websocket',
    send(bytes) {
      if (sock.readyState === WS.OPEN) {
        sock.send(bytes, { binary: true });
      }
    },
    close(error = 'TETHER_ECLOSED', detail = 'closed') {
      failure ??= { error, detail };
      stopPing();
      if (sock.readyState === WS.CONNECTING) {
        sock.terminate();
      } else {
        sock.close(1000);
        setTimeout(() => sock.terminate(), 1000).unref?.();
      }
    },
  };
}

function browserWebSocket(url: string, ev: TransportEvents): Transport {
  const finish = once(ev);
  let sock: WebSocket;
  try {
    sock = new WebSocket(url, SUBPROTOCOL);
  } catch (e) {
    throw new Error(`cannot open ${url}: ${(e as Error).message}`);
  }
  sock.binaryType = 'arraybuffer';
  let opened = false;
  let failure: CloseInfo | null = null;
  sock.onopen = () => {
    if (sock.protocol !== SUBPROTOCOL) {
      failure = { error: 'TETHER_EHANDSHAKE', httpStatus: 101, detail: `the 101 selected "${sock.protocol}", not ${SUBPROTOCOL}` };
      sock.close();
      return;
    }
    opened = true;
    ev.open();
  };
  sock.onmessage = (m) => ev.frame(typeof m.data === 'string' ? null : new Uint8Array(m.data as ArrayBuffer));
  sock.onclose = (c) => {
    finish(
      failure ?? {
        error: opened ? 'TETHER_EPEER_CLOSED' : 'TETHER_ECONNECT',
        statusHidden: !opened,
        detail: opened ? `the connection closed (WebSocket close ${c.code})` : 'the WebSocket did not open (the browser hides why)',
      },
    );
  };
  return {
    kind: 'websocket',
    send(bytes) {
      if (sock.readyState === WebSocket.OPEN) {
        sock.send(bytes);
      }
    },
    close(error = 'TETHER_ECLOSED', detail = 'closed') {
      failure ??= { error, detail };
      sock.close(1000);
      /* a browser may wait long for the closing handshake: the client moves on now */
      setTimeout(() => finish(failure as CloseInfo), 0);
    },
  };
}
