/* What differs between browsers and Node, in one place. */

interface CryptoLike {
  getRandomValues<T extends ArrayBufferView>(a: T): T;
}
let cryptoImpl: CryptoLike | null = (globalThis as { crypto?: CryptoLike }).crypto ?? null;

/** Node 18 has no global crypto: load node:crypto's webcrypto once. */
export async function ensureCrypto(): Promise<void> {
  if (!cryptoImpl) {
    const m = await import(/* webpackIgnore: true */ 'node:crypto');
    cryptoImpl = m.webcrypto as unknown as CryptoLike;
  }
}

/** n bytes from a cryptographically secure source. */
export function randomBytes(n: number): Uint8Array {
  if (!cryptoImpl) {
    throw new Error('no secure random source (crypto.getRandomValues)');
  }
  return cryptoImpl.getRandomValues(new Uint8Array(n));
}

/** True in Node (where the ws package provides WebSocket and its HTTP status). */
export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}
