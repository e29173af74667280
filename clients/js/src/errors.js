// The one error type of the JS client: `code` is the same code the Python client's errors carry.

export class SeiError extends Error {
  /**
   * @param {string} message what went wrong, never a key, token or plaintext
   * @param {string} code a code of docs/protocol.md (e.g. "input_out_of_bounds", "invalid_response")
   * @param {number} [status] the HTTP status of a service answer (0: no answer)
   */
  constructor(message, code, status) {
    super(message);
    this.name = 'SeiError';
    this.code = code;
    this.status = status;
  }
}

/** A malformed or mismatching key or ciphertext (Python's KernelInputError); the client turns it into a SeiError. */
export class KernelInputError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'KernelInputError';
  }
}
