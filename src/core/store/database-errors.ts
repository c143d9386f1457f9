import { ErrorCategory, ParleyError } from "../../wire/index.js";

/** How the unit of work should treat a database failure. */
export interface DatabaseFailure {
  readonly category: ErrorCategory;
  /** Retrying the whole unit of work may succeed (connection loss, deadlock, ...). */
  readonly transient: boolean;
  /** The SQLSTATE or Node.js error code that decided it, for logs. */
  readonly code: string | undefined;
}

// Node.js socket errors the pg driver surfaces when the server goes away.
const NODE_CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH", "EAI_AGAIN"]);

// pg reports a dropped connection with these messages and no code.
const CONNECTION_MESSAGES = [
  "Connection terminated",
  "Client has encountered a connection error",
  "Connection ended unexpectedly",
  "Client was closed and is not queryable",
  "timeout exceeded when trying to connect",
  "Timeout acquiring a connection",
];

/**
 * database/driver error → category and transience. The one place where SQLSTATE
 * codes and driver messages are interpreted. Walks the `cause` chain because
 * MikroORM wraps the pg error.
 */
export function classifyDatabaseError(error: unknown): DatabaseFailure {
  for (const layer of causeChain(error)) {
    const code = readCode(layer);
    if (code !== undefined) {
      const byCode = classifyCode(code);
      if (byCode) return byCode;
    }
    const message = layer instanceof Error ? layer.message : "";
    if (CONNECTION_MESSAGES.some((m) => message.includes(m))) {
      return { category: ErrorCategory.UNAVAILABLE, transient: true, code };
    }
  }
  return { category: ErrorCategory.PERSISTENCE, transient: false, code: readCode(error) };
}

function classifyCode(code: string): DatabaseFailure | undefined {
  if (NODE_CONNECTION_CODES.has(code)) return { category: ErrorCategory.UNAVAILABLE, transient: true, code };
  if (!/^[0-9A-Z]{5}$/.test(code)) return undefined;
  switch (code) {
    case "40001": // serialization_failure
    case "40P01": // deadlock_detected
    case "55P03": // lock_not_available
      return { category: ErrorCategory.PERSISTENCE, transient: true, code };
    case "57014": // query_canceled (statement_timeout)
      return { category: ErrorCategory.TIMEOUT, transient: false, code };
    case "57P01": // admin_shutdown
    case "57P02": // crash_shutdown
    case "57P03": // cannot_connect_now
      return { category: ErrorCategory.UNAVAILABLE, transient: true, code };
    case "08P01": // protocol_violation: what was sent (a NUL in a text parameter), not the connection
      return { category: ErrorCategory.VALIDATION, transient: false, code };
  }
  switch (code.slice(0, 2)) {
    case "08": // connection_exception
    case "53": // insufficient_resources (too many connections, out of memory)
      return { category: ErrorCategory.UNAVAILABLE, transient: true, code };
    case "22": // data_exception: a value the database refused, i.e. invalid input
      return { category: ErrorCategory.VALIDATION, transient: false, code };
    case "28": // invalid_authorization_specification
      return { category: ErrorCategory.UNAVAILABLE, transient: false, code };
    default:
      return { category: ErrorCategory.PERSISTENCE, transient: false, code };
  }
}

/**
 * Wraps a database failure into a ParleyError with the classified category.
 * The message is a fixed text per kind plus the SQLSTATE: the driver's own
 * message quotes the SQL with its values (other users' data), so it stays in
 * `cause`, for the logs only.
 */
export function fromDatabaseError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  const failure = classifyDatabaseError(error);
  const code = failure.code === undefined ? "" : ` (${/^[0-9A-Z]{5}$/.test(failure.code) ? "SQLSTATE " : ""}${failure.code})`;
  return new ParleyError(failure.category, `database: ${describeFailure(failure)}${code}`, {
    cause: error,
    retryable: failure.category === ErrorCategory.VALIDATION ? false : undefined,
    context: { db_code: failure.code },
  });
}

function describeFailure(failure: DatabaseFailure): string {
  if (failure.category === ErrorCategory.UNAVAILABLE) return "the database is unreachable";
  if (failure.category === ErrorCategory.TIMEOUT) return "the statement timed out";
  if (failure.category === ErrorCategory.VALIDATION) return "a value was refused by the database";
  return failure.transient ? "the transaction conflicted with another and was rolled back" : "the transaction was rolled back";
}

function* causeChain(error: unknown): Generator {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    yield current;
    current = current instanceof Error ? current.cause : undefined;
  }
}

function readCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, sqlState } = error as { code?: unknown; sqlState?: unknown };
  if (typeof sqlState === "string") return sqlState;
  return typeof code === "string" ? code : undefined;
}
