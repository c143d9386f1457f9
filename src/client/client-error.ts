import { ErrorCategory, type ErrorDetail } from "../../gen/parley/v1/errors_pb.js";

/** A request the server refused (or the client gave up on), with its category. */
export class ParleyClientError extends Error {
  override readonly name = "ParleyClientError";
  /** The category name, e.g. "VALIDATION", "UNAVAILABLE". */
  readonly category: string;
  /** The request field at fault, for VALIDATION (e.g. "send.body"). */
  readonly field: string | undefined;
  /** Whether sending the same request again may succeed. */
  readonly retryable: boolean;
  /** How long the server asked to wait before trying again (RATE_LIMITED, UNAVAILABLE), when it said. */
  readonly retryAfterMs: number | undefined;

  constructor(category: string, message: string, options: { field?: string; retryable?: boolean; retryAfterMs?: number } = {}) {
    super(message);
    this.category = category;
    this.field = options.field;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }

  static fromDetail(detail: ErrorDetail): ParleyClientError {
    const name = (ErrorCategory as unknown as Record<number, string | undefined>)[detail.category] ?? "INTERNAL";
    const after = detail.retryAfter;
    return new ParleyClientError(name, detail.message, {
      field: detail.field === "" ? undefined : detail.field,
      retryable: detail.retryable,
      retryAfterMs: after === undefined ? undefined : Number(after.seconds) * 1000 + after.nanos / 1e6,
    });
  }
}
