import type { DescMethod } from "@bufbuild/protobuf";

/**
 * What a handler knows about the call it serves, free of any transport type:
 * business code never imports @grpc/grpc-js.
 */
export interface CallContext {
  /** The RPC being served. */
  readonly method: DescMethod;
  /** `/package.Service/Method`, for logs and metrics. */
  readonly path: string;
  /** First value of a request header (lower-case name), if sent. */
  header(name: string): string | undefined;
  /** The caller's address. */
  readonly peer: string;
  /**
   * The client certificate the transport verified: present only over TLS
   * with a client CA (mTLS) and a certificate that chains to it.
   */
  readonly peerCertificate: PeerCertificate | undefined;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /**
   * Per-call values set by interceptors (the authenticated user, the log
   * context) and read by handlers, keyed by typed keys.
   */
  readonly values: CallValues;
}

/** What handlers may read of a verified client certificate. */
export interface PeerCertificate {
  /** The subject's common name, when the subject has exactly one CN. */
  readonly commonName: string | undefined;
  /** The certificate's DNS subject alternative names. */
  readonly dnsNames: readonly string[];
}

/** A typed key into CallContext.values. */
export class ContextKey<T> {
  // Carries T for type inference only.
  declare readonly _type: T;
  constructor(readonly description: string) {}
}

export class CallValues {
  readonly #values = new Map<ContextKey<unknown>, unknown>();

  set<T>(key: ContextKey<T>, value: T): void {
    this.#values.set(key, value);
  }

  get<T>(key: ContextKey<T>): T {
    if (this.#values.has(key)) return this.#values.get(key) as T;
    throw new Error(`call context has no value for ${key.description}`);
  }

  find<T>(key: ContextKey<T>): T | undefined {
    return this.#values.get(key) as T | undefined;
  }
}

/** Runs the rest of the call (the handler, or the next interceptor). */
export type Invoke = (context: CallContext) => Promise<void>;

/**
 * Wraps every call on the server, whatever its kind: authentication,
 * deadlines, telemetry and error logging are interceptors, not handler code.
 */
export type ServerInterceptor = (next: Invoke) => Invoke;

export function applyInterceptors(interceptors: readonly ServerInterceptor[], invoke: Invoke): Invoke {
  // The first interceptor in the list is the outermost.
  return interceptors.reduceRight((next, interceptor) => interceptor(next), invoke);
}
