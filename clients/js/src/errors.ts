/* Error names: the C library's (include/tether/tether.h, docs/errors.md), as strings. */

export type ErrorName =
  | 'TETHER_OK'
  | 'TETHER_EINVAL'
  | 'TETHER_ECONFIG'
  | 'TETHER_ESTORE'
  | 'TETHER_EOUTBOX_FULL'
  | 'TETHER_ETOOBIG'
  | 'TETHER_ECLOSED'
  | 'TETHER_ETIMEDOUT'
  | 'TETHER_EMALFORMED'
  | 'TETHER_EFRAME_TYPE'
  | 'TETHER_EFRAME_ARITY'
  | 'TETHER_EFRAME_FIELD'
  | 'TETHER_EFRAME_SEQ0'
  | 'TETHER_EFRAME_TRAILING'
  | 'TETHER_EFRAME_OVERSIZE'
  | 'TETHER_EPROTO'
  | 'TETHER_EGAP'
  | 'TETHER_ECONNREFUSED'
  | 'TETHER_ECONNECT'
  | 'TETHER_EDNS'
  | 'TETHER_ETLS'
  | 'TETHER_EHTTP'
  | 'TETHER_EHANDSHAKE'
  | 'TETHER_ESTALLED'
  | 'TETHER_EPING'
  | 'TETHER_EREJECTED'
  | 'TETHER_ETOKEN'
  | 'TETHER_EMISMATCH'
  | 'TETHER_EPEER_CLOSED'
  | 'TETHER_ELIMIT'
  | 'TETHER_EVERSION'
  | 'TETHER_EGIVEUP'
  | 'TETHER_ECONNECT_TIMEOUT'
  | 'TETHER_EPROXY'
  | 'TETHER_EPROXY_AUTH'
  | 'TETHER_EDISPLACED'
  | 'TETHER_ELOCKED';

/** An error from the client: `code` names it (docs/errors.md), `message` says what happened. */
export class TetherError extends Error {
  readonly code: ErrorName;
  constructor(code: ErrorName, message: string) {
    super(`${code}: ${message}`);
    this.name = 'TetherError';
    this.code = code;
  }
}
