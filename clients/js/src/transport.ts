/* What the client needs from a carriage (WebSocket or the HTTP fallback). */
import type { ErrorName } from './errors.js';

export interface CloseInfo {
  /** Why it ended: a tether error name. */
  error: ErrorName;
  /** The HTTP status of a refused upgrade or open, when the platform shows one. */
  httpStatus?: number;
  /** Retry-After of a refusal, in ms (0: none). */
  retryAfterMs?: number;
  /** The platform hid why the attempt failed (a browser's WebSocket before it opened). */
  statusHidden?: boolean;
  /** One line for humans. */
  detail: string;
}

export interface TransportEvents {
  /** The carriage is up (101 with tether.v1, or the HTTP open was sent): HELLO goes next. */
  open(): void;
  /** One frame (one WebSocket binary message, or one HTTP record); null for a text message. */
  frame(bytes: Uint8Array | null): void;
  /** Called exactly once, last; nothing follows. */
  close(info: CloseInfo): void;
}

export interface Transport {
  readonly kind: 'websocket' | 'http';
  /** Queues one frame. */
  send(bytes: Uint8Array): void;
  /** Ends the carriage; `close` follows with the given error (default TETHER_ECLOSED). */
  close(error?: ErrorName, detail?: string): void;
}

export type TransportFactory = (kind: 'websocket' | 'http', url: string, ev: TransportEvents) => Transport;
