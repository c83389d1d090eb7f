import { registerIndexedDbStore } from './client.js';
import { IndexedDbStore } from './idbstore.js';

registerIndexedDbStore((name) => new IndexedDbStore(name));

export { TetherClient } from './client.js';
export type { ClientState, StateEvent, MismatchEvent, BackpressureEvent, ClientEvents } from './client.js';
export type { TetherClientOptions, Timers } from './options.js';
export { DEFAULTS } from './options.js';
export { TetherError } from './errors.js';
export type { ErrorName } from './errors.js';
export { MemoryStore } from './store.js';
export type { TetherStore, SessionRecord, StoredMessage, StoredVerdict } from './store.js';
export type { Transport, TransportEvents, TransportFactory, CloseInfo } from './transport.js';
export { Backoff } from './backoff.js';
export { decodeFrame, encodeFrame, FrameError } from './codec.js';
export type { Frame } from './codec.js';
export { IndexedDbStore } from './idbstore.js';
export type { IndexedDbStoreOptions } from './idbstore.js';
