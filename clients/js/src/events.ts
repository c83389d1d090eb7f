/* The client's events and their payloads. */
import type { ErrorName } from './errors.js';

export type ClientState = 'connecting' | 'connected' | 'disconnected' | 'reconnecting' | 'stopped' | 'closed';

export interface StateEvent {
  state: ClientState;
  /** Why (TETHER_OK when nothing went wrong). */
  error: ErrorName;
  /** The HTTP status of a refused upgrade or HTTP open (0: none or not visible). */
  httpStatus: number;
  /** The REJECT or BYE code the server sent (0: none). */
  code: number;
  /** RECONNECTING: the next attempt comes in this many ms. */
  retryInMs: number;
  /** The carriage of this attempt or connection. */
  transport: 'websocket' | 'http';
  detail: string;
}

export interface MismatchEvent {
  peerAcked: bigint;
  outLast: bigint;
  recvCursor: bigint;
  peerRecvCursor: bigint;
  peerOutLast: bigint;
  /** Messages the server had acknowledged and lost. */
  lostAcked: bigint;
  /** Messages committed here that the server does not know it sent. */
  unknownReceived: bigint;
  detail: string;
}

export interface BackpressureEvent {
  kind: 'window_full' | 'window_open' | 'outbox_full' | 'outbox_open';
  pendingMessages: number;
  pendingBytes: number;
}

export type ClientEvents = {
  message: (seq: bigint, data: Uint8Array, redelivered: boolean) => void;
  acked: (first: bigint, last: bigint) => void;
  state: (ev: StateEvent) => void;
  mismatch: (ev: MismatchEvent) => void;
  backpressure: (ev: BackpressureEvent) => void;
  error: (err: Error) => void;
};
