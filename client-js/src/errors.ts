/** An error with the server's stable code (see docs/protocol.md), or a local one (code 0). */
export class WeftError extends Error {
  /** The protocol error code (0: raised locally). */
  readonly code: number;
  /** The code's name, e.g. `Forbidden`, `TokenExpired`. */
  readonly codeName: string;

  constructor(message: string, code = 0, codeName = 'Local') {
    super(message);
    this.name = 'WeftError';
    this.code = code;
    this.codeName = codeName;
  }
}
