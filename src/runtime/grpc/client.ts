import {
  type CallOptions as GrpcCallOptions,
  Channel,
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  type ClientDuplexStream,
  credentials as grpcCredentials,
  Metadata,
  status as Status,
} from "@grpc/grpc-js";
import type { DescMethod } from "@bufbuild/protobuf";
import type { ParleyError } from "../../wire/index.js";
import { fromGrpcError } from "./status.js";
import { SpanKind } from "@opentelemetry/api";
import { injectHeaders, inSpan } from "../telemetry/tracing.js";
import { serializer, strictDeserializer } from "./codec.js";
import type { Cancellable, ResetPacer } from "./reset-pacer.js";
import { methodPath } from "./server.js";
import { transportHints } from "./transport-hints.js";
import type { AnyService, InputInitOf, MethodsOf, OutputOf } from "./types.js";

export interface CallOptions {
  /** Extra request headers for this call (merged over the client's). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Milliseconds from now until the call fails with TIMEOUT. */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

type Method = MethodsOf<AnyService>[string];

type ClientMethodFor<M extends Method> = M["methodKind"] extends "unary"
  ? (request: InputInitOf<M>, options?: CallOptions) => Promise<OutputOf<M>>
  : M["methodKind"] extends "server_streaming"
    ? (request: InputInitOf<M>, options?: CallOptions) => AsyncIterable<OutputOf<M>>
    : M["methodKind"] extends "bidi_streaming"
      ? (options?: CallOptions) => ClientDuplexStream<InputInitOf<M>, OutputOf<M>>
      : never;

/**
 * A typed client: unary RPCs return promises, server streams are async
 * iterables, bidirectional streams are grpc-js duplex streams. Failures are
 * always ParleyErrors with the category the server sent.
 */
export type ServiceClient<S extends AnyService> = {
  readonly [K in keyof MethodsOf<S>]: ClientMethodFor<MethodsOf<S>[K]>;
} & { close(): void };

export interface ClientOptions {
  /** Defaults to an insecure channel; TLS from configuration: tlsTransport. */
  readonly credentials?: ChannelCredentials;
  readonly channelOptions?: ChannelOptions;
  /** Headers added to every call, e.g. `authorization`; evaluated per call. */
  readonly headers?: () => Readonly<Record<string, string>>;
  /**
   * The channel (HTTP/2 session) to call on, shared with other clients;
   * its own by default. See openChannel.
   */
  readonly channel?: Channel;
  /** Paces this client's cancellations (the channel's RST_STREAM frames); at once when unset. */
  readonly resets?: ResetPacer;
}

/**
 * A channel of its own: grpc-js shares one HTTP/2 connection between all
 * channels to the same address and options (its global subchannel pool);
 * a local pool gives this one its own, so that losing it is not losing all.
 */
export function openChannel(address: string, options: Pick<ClientOptions, "credentials" | "channelOptions"> = {}): Channel {
  const credentials = options.credentials ?? grpcCredentials.createInsecure();
  return new Channel(address, credentials, { ...CHANNEL_DEFAULTS, ...options.channelOptions, "grpc.use_local_subchannel_pool": 1 });
}

const CHANNEL_DEFAULTS: ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  // grpc-js waits 1 s before its first reconnect and up to 120 s later on:
  // a core restarted in two seconds would be found again after five or
  // more. The peers here are our own services on a near network, so the
  // backoff starts at 100 ms and stops growing at 2 s.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

export function createClient<S extends AnyService>(service: S, address: string, options: ClientOptions = {}): ServiceClient<S> {
  const credentials = options.credentials ?? grpcCredentials.createInsecure();
  const client = new Client(address, credentials, {
    ...CHANNEL_DEFAULTS,
    ...options.channelOptions,
    ...(options.channel === undefined ? {} : { channelOverride: options.channel }),
    // A failure to connect says what to check (TLS on one side only, a refused certificate).
    interceptors: [transportHints(credentials._isSecure())],
  });
  const methods: Record<string, unknown> = {};
  for (const method of service.methods) {
    methods[method.localName] = bind(client, method, options);
  }
  methods.close = () => {
    // A shared channel is closed by whoever opened it.
    if (options.channel === undefined) client.close();
  };
  return methods as ServiceClient<S>;
}

function bind(client: Client, method: DescMethod, options: ClientOptions): unknown {
  const path = methodPath(method);
  // Each call is cancelled once (an abort and the consumer's early exit
  // both ask), and not at all once it has its status.
  const asked = new WeakSet<Cancellable>();
  const ended = new WeakSet<Cancellable>();
  const watch = <C extends Cancellable & { once(event: "status", listener: () => void): unknown }>(call: C): C => {
    call.once("status", () => {
      ended.add(call);
    });
    return call;
  };
  const cancel = (call: Cancellable): void => {
    if (asked.has(call) || ended.has(call)) return;
    asked.add(call);
    if (options.resets === undefined) call.cancel();
    else options.resets.cancel(call, () => ended.has(call));
  };
  const serialize = serializer(method.input) as (value: unknown) => Buffer;
  const deserialize = strictDeserializer(method.output) as (bytes: Buffer) => unknown;
  const prepare = (callOptions: CallOptions | undefined) => {
    const metadata = new Metadata();
    // The caller's trace continues on the server (W3C traceparent).
    const headers = injectHeaders({ ...options.headers?.(), ...callOptions?.headers });
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
    const grpcOptions: GrpcCallOptions = {};
    if (callOptions?.timeoutMs !== undefined) grpcOptions.deadline = Date.now() + callOptions.timeoutMs;
    return { metadata, grpcOptions };
  };

  switch (method.methodKind) {
    case "unary":
      // A client span per call; the server continues it (traceparent metadata).
      return (request: unknown, callOptions?: CallOptions) =>
        inSpan(
          path.slice(1),
          { kind: SpanKind.CLIENT, attributes: { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name } },
          () =>
            new Promise((resolve, reject) => {
              const { metadata, grpcOptions } = prepare(callOptions);
              let release: () => void = () => undefined;
              const call = watch(client.makeUnaryRequest(path, serialize, deserialize, request, metadata, grpcOptions, (error, response) => {
                release();
                if (error) reject(fromGrpcError(error));
                else resolve(response);
              }));
              // Aborted: the caller hears so now, even when the reset itself waits its turn (ResetPacer).
              release = cancelOnAbort(callOptions?.signal, call, (aborted) => {
                reject(cancelledOnClient());
                cancel(aborted);
              });
            }),
          (error) => fromGrpcError(error),
        );
    case "server_streaming":
      return (request: unknown, callOptions?: CallOptions) => {
        const { metadata, grpcOptions } = prepare(callOptions);
        const call = watch(client.makeServerStreamRequest(path, serialize, deserialize, request, metadata, grpcOptions));
        // The iterator reports its errors; this keeps an error that grpc-js
        // emits after the consumer has gone (a paced cancel) from being unhandled.
        call.on("error", () => undefined);
        // Aborted: the consumer's loop ends now, even when the reset itself waits its turn (ResetPacer).
        const release = cancelOnAbort(callOptions?.signal, call, (aborted) => {
          call.destroy(cancelledOnClient());
          cancel(aborted);
        });
        call.once("close", release);
        return mapErrors(call, () => {
          cancel(call);
        });
      };
    case "bidi_streaming":
      return (callOptions?: CallOptions) => {
        const { metadata, grpcOptions } = prepare(callOptions);
        const call = watch(client.makeBidiStreamRequest(path, serialize, deserialize, metadata, grpcOptions));
        call.once("close", cancelOnAbort(callOptions?.signal, call, cancel));
        return call;
      };
    case "client_streaming":
      throw new Error(`client-streaming RPCs are not used by parley: ${path}`);
  }
}

/** What an aborted call fails with, as grpc-js words a cancelled call. */
function cancelledOnClient(): ParleyError {
  return fromGrpcError({ code: Status.CANCELLED, details: "Cancelled on client" });
}

/**
 * Cancels `call` when `signal` aborts; returns the function that stops
 * listening (called when the call ends, so a long-lived signal does not
 * collect listeners of finished calls).
 */
function cancelOnAbort(signal: AbortSignal | undefined, call: Cancellable, cancel: (call: Cancellable) => void): () => void {
  if (!signal) return () => undefined;
  const onAbort = () => {
    cancel(call);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  return () => {
    signal.removeEventListener("abort", onAbort);
  };
}

/** An async iterable over a response stream whose errors are ParleyErrors. */
async function* mapErrors(stream: AsyncIterable<unknown>, cancel: () => void): AsyncGenerator {
  let finished = false;
  try {
    for await (const item of stream) yield item;
    finished = true;
  } catch (error) {
    finished = true;
    throw fromGrpcError(error);
  } finally {
    // The consumer stopped early (break/return): stop the server stream too.
    if (!finished) cancel();
  }
}
