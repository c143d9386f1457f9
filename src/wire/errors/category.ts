import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";

export { ErrorCategory };

/** Every category parley actually reports (UNSPECIFIED is never sent). */
export const ALL_CATEGORIES: readonly ErrorCategory[] = [
  ErrorCategory.VALIDATION,
  ErrorCategory.SERIALIZATION,
  ErrorCategory.ROUTING,
  ErrorCategory.PERSISTENCE,
  ErrorCategory.UNAVAILABLE,
  ErrorCategory.TIMEOUT,
  ErrorCategory.UNAUTHENTICATED,
  ErrorCategory.PERMISSION_DENIED,
  ErrorCategory.RATE_LIMITED,
  ErrorCategory.DELIVERY,
  ErrorCategory.INTERNAL,
];

/**
 * Whether resending the same request (same idempotency key) may succeed.
 * This table is the only place that decides retryability by category;
 * a single error may still override it (see ParleyError.retryable).
 */
const RETRYABLE: Readonly<Record<ErrorCategory, boolean>> = {
  [ErrorCategory.UNSPECIFIED]: false,
  [ErrorCategory.VALIDATION]: false,
  [ErrorCategory.SERIALIZATION]: false,
  [ErrorCategory.ROUTING]: false,
  [ErrorCategory.PERSISTENCE]: true,
  [ErrorCategory.UNAVAILABLE]: true,
  [ErrorCategory.TIMEOUT]: true,
  [ErrorCategory.UNAUTHENTICATED]: false,
  [ErrorCategory.PERMISSION_DENIED]: false,
  [ErrorCategory.RATE_LIMITED]: true,
  [ErrorCategory.DELIVERY]: true,
  [ErrorCategory.INTERNAL]: false,
};

export function isRetryableCategory(category: ErrorCategory): boolean {
  return RETRYABLE[category];
}

/**
 * The category as written in logs, span attributes and metrics labels:
 * the enum value name without its `ERROR_CATEGORY_` prefix, e.g. "VALIDATION".
 */
export function categoryName(category: ErrorCategory): string {
  // Generated enums map numbers back to names ("VALIDATION" for 1).
  const name = (ErrorCategory as unknown as Record<number, string | undefined>)[category];
  return name ?? "INTERNAL";
}

/** Parses a name written by categoryName (or a full proto enum name). */
export function categoryFromName(name: string): ErrorCategory | undefined {
  const short = name.startsWith("ERROR_CATEGORY_") ? name.slice("ERROR_CATEGORY_".length) : name;
  const value = (ErrorCategory as unknown as Record<string, ErrorCategory | undefined>)[short];
  return typeof value === "number" && value !== ErrorCategory.UNSPECIFIED ? value : undefined;
}
