/** An error with the server's stable code (see docs/protocol.md), or a local one (code 0). */
export class WeftError extends Error {
  /** The protocol error code (0: raised locally). */
  readonly code: number;
  /** The code's name, e.g. `Forbidden`, `TokenExpired`. */
  readonly codeName: string;
  /** Whether the same operation may succeed if tried again later (the server was
   * overloaded, shutting down, or timed out). The Rust core decides, per code; `false`
   * for local errors. */
  readonly retryable: boolean;

  constructor(message: string, code = 0, codeName = 'Local', retryable = false) {
    super(message);
    this.name = 'WeftError';
    this.code = code;
    this.codeName = codeName;
    this.retryable = retryable;
  }
}
