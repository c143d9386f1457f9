import { categoryName, ErrorCategory, isRetryableCategory } from "./category.js";

/** Context fields that travel with an error into its log line and span. */
export type ErrorContext = Readonly<Record<string, string | number | bigint | boolean | undefined>>;

export interface ParleyErrorOptions {
  /** Dotted path of the offending request field, for VALIDATION errors. */
  readonly field?: string;
  /** The underlying exception, kept for logs; never sent to clients. */
  readonly cause?: unknown;
  /** Overrides the category's default retryability for this one error. */
  readonly retryable?: boolean;
  /** For RATE_LIMITED / UNAVAILABLE: how long the client should wait (rounded up to whole ms, at least 0). */
  readonly retryAfterMs?: number;
  /** Extra context (room, user, rpc, ...) for the log line. */
  readonly context?: ErrorContext;
}

/**
 * The one error class of parley. Every failure that crosses a module boundary
 * is a ParleyError with exactly one category; `ParleyError.from` turns
 * anything else into one (INTERNAL unless a more specific mapper knew better).
 */
export class ParleyError extends Error {
  override readonly name = "ParleyError";
  readonly category: ErrorCategory;
  readonly field: string | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly context: ErrorContext;

  constructor(category: ErrorCategory, message: string, options: ParleyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.category = category === ErrorCategory.UNSPECIFIED ? ErrorCategory.INTERNAL : category;
    this.field = options.field;
    this.retryable = options.retryable ?? isRetryableCategory(this.category);
    // Whole milliseconds: a fraction (a clock difference) would make a
    // Duration whose nanos JSON cannot write.
    this.retryAfterMs = options.retryAfterMs === undefined ? undefined : Math.max(0, Math.ceil(options.retryAfterMs));
    this.context = options.context ?? {};
  }

  /** The category as written in logs and spans, e.g. "VALIDATION". */
  get categoryName(): string {
    return categoryName(this.category);
  }

  /** A copy with more context merged in (the original is left unchanged). */
  withContext(context: ErrorContext): ParleyError {
    return new ParleyError(this.category, this.message, {
      field: this.field,
      cause: this.cause,
      retryable: this.retryable,
      retryAfterMs: this.retryAfterMs,
      context: { ...this.context, ...context },
    });
  }

  /**
   * Wraps anything thrown into a ParleyError. A ParleyError passes through
   * unchanged; anything else becomes `fallback` (INTERNAL by default) with
   * the original kept as `cause`.
   */
  static from(error: unknown, fallback: ErrorCategory = ErrorCategory.INTERNAL): ParleyError {
    if (error instanceof ParleyError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new ParleyError(fallback, message, { cause: error });
  }
}

/** Shorthand for the most common error: a request field that is not valid. */
export function validationError(field: string, message: string): ParleyError {
  return new ParleyError(ErrorCategory.VALIDATION, `${field}: ${message}`, { field });
}
