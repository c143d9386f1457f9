import type { DescMethod } from "@bufbuild/protobuf";
import {
  type Metadata,
  type MethodDefinition,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from "@grpc/grpc-js";
import type { Readable } from "node:stream";
import type { PeerCertificate as TlsPeerCertificate } from "node:tls";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { toGrpcStatus } from "./status.js";
import { canHoldEnums, checkEnums, ParleyError } from "../../wire/index.js";
import { applyInterceptors, type CallContext, CallValues, type ServerInterceptor } from "./call-context.js";
import { lenientDeserializer, serializer, strictDeserializer, UndecodableMessage } from "./codec.js";
import { peerCertificateOf } from "./peer-certificate.js";
import type { AnyService, InputOf, MethodsOf, OutputInitOf } from "./types.js";

/** Writes the responses of a streaming call, waiting when the peer is slow. */
export interface ResponseSink<Out> {
  /** Resolves once the message is handed to the transport (after a drain if needed). */
  send(message: Out): Promise<void>;
}

type Method = MethodsOf<AnyService>[string];

type HandlerFor<M extends Method> = M["methodKind"] extends "unary"
  ? (request: InputOf<M>, context: CallContext) => Promise<OutputInitOf<M>>
  : M["methodKind"] extends "server_streaming"
    ? (request: InputOf<M>, responses: ResponseSink<OutputInitOf<M>>, context: CallContext) => Promise<void>
    : M["methodKind"] extends "bidi_streaming"
      ? (requests: AsyncIterable<InputOf<M>>, responses: ResponseSink<OutputInitOf<M>>, context: CallContext) => Promise<void>
      : never;

/** One typed handler per RPC of the service. */
export type ServiceHandlers<S extends AnyService> = {
  [K in keyof MethodsOf<S>]: HandlerFor<MethodsOf<S>[K]>;
};

export interface ImplementOptions {
  /** Wrap every call; the first is the outermost. */
  readonly interceptors?: readonly ServerInterceptor[];
}

/** `/parley.v1.ChatService/SendMessage` */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * A generated service descriptor as a grpc-js ServiceDefinition, with
 * protobuf-es binary (de)serializers. Used by servers and clients alike.
 */
function serviceDefinition(service: AnyService, lenient = false): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: lenient ? lenientDeserializer(method.input) : strictDeserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: strictDeserializer(method.output),
      originalName: method.localName,
    };
  }
  return definition;
}

/**
 * Binds typed, promise-returning handlers to grpc-js. Every call runs through
 * the interceptors; whatever a handler throws becomes a ParleyError and is
 * sent as its gRPC status with the ErrorDetail in the status details.
 */
export function implement<S extends AnyService>(
  service: S,
  handlers: ServiceHandlers<S>,
  options: ImplementOptions = {},
): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  const implementation: UntypedServiceImplementation = {};
  const table = handlers as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const method of service.methods) {
    const handler = table[method.localName];
    if (handler === undefined) throw new Error(`no handler for ${methodPath(method)}`);
    implementation[method.localName] = bindMethod(method, handler, options);
  }
  return { definition: serviceDefinition(service, true), implementation };
}

type AnyHandler = (...args: unknown[]) => Promise<unknown>;
type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

function bindMethod(method: DescMethod, handler: AnyHandler, options: ImplementOptions) {
  const interceptors = options.interceptors ?? [];
  const decoded = requestReader(method);
  const fail = (error: unknown) => {
    const failure = ParleyError.from(error);
    // The tracing interceptor stamps the call's trace id on the error.
    return toGrpcStatus(failure, typeof failure.context.trace_id === "string" ? failure.context.trace_id : "");
  };

  switch (method.methodKind) {
    case "unary":
      return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const context = contextFor(method, call);
        let response: unknown;
        const invoke = applyInterceptors(interceptors, async (ctx) => {
          response = await handler(decoded(call.request), ctx);
        });
        invoke(context).then(
          () => {
            callback(null, response);
          },
          (error: unknown) => {
            callback(fail(error));
          },
        );
      };
    case "server_streaming":
      return (call: ServerWritableStream<unknown, unknown>) => {
        const context = contextFor(method, call);
        const invoke = applyInterceptors(interceptors, (ctx) => handler(decoded(call.request), sinkFor(call, ctx.signal), ctx).then(() => undefined));
        finishStream(call, invoke(context), fail);
      };
    case "bidi_streaming":
      return (call: ServerDuplexStream<unknown, unknown>) => {
        const context = contextFor(method, call);
        const invoke = applyInterceptors(interceptors, (ctx) =>
          handler(requestsOf(call, decoded, ctx.signal), sinkFor(call, ctx.signal), ctx).then(() => undefined),
        );
        finishStream(call, invoke(context), fail);
      };
    case "client_streaming":
      throw new Error(`client-streaming RPCs are not used by parley: ${methodPath(method)}`);
  }
}

function finishStream(
  call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>,
  done: Promise<void>,
  fail: (error: unknown) => ReturnType<typeof toGrpcStatus>,
): void {
  done.then(
    () => {
      if (!call.cancelled) call.end();
    },
    (error: unknown) => {
      if (!call.cancelled) call.emit("error", fail(error));
    },
  );
}

function contextFor(method: DescMethod, anyCall: AnyCall): CallContext {
  // Every call kind is an EventEmitter with these members; the union of their
  // overloaded `once` signatures is not callable, this narrower view is.
  const call = anyCall as unknown as {
    cancelled: boolean;
    metadata: Metadata;
    getPeer(): string;
    getAuthContext(): { sslPeerCertificate?: TlsPeerCertificate };
    getDeadline(): Date | number;
    once(event: string, listener: () => void): unknown;
  };
  const controller = new AbortController();
  // grpc-js emits "cancelled" after every finished call too: one shared
  // reason, rather than an error (and its stack) built per call.
  const abort = () => {
    controller.abort(CALL_CANCELLED);
  };
  if (call.cancelled) abort();
  else call.once("cancelled", abort);
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  if (Number.isFinite(deadlineMs) && deadlineMs > 0) {
    const timer = setTimeout(() => {
      controller.abort(new ParleyError(ErrorCategory.TIMEOUT, "call deadline exceeded"));
    }, Math.max(0, deadlineMs - Date.now()));
    timer.unref();
    controller.signal.addEventListener("abort", () => {
      clearTimeout(timer);
    });
    call.once("finish", () => {
      clearTimeout(timer);
    });
  }
  // Read on first use: most calls never look at the certificate.
  let peerCertificate: { value: CallContext["peerCertificate"] } | undefined;
  return {
    method,
    path: methodPath(method),
    header: (name) => firstHeader(call.metadata, name),
    peer: call.getPeer(),
    get peerCertificate() {
      peerCertificate ??= { value: peerCertificateOf(call.getAuthContext()) };
      return peerCertificate.value;
    },
    signal: controller.signal,
    values: new CallValues(),
  };
}

function firstHeader(metadata: Metadata, name: string): string | undefined {
  const value = metadata.get(name)[0];
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : value.toString("utf8");
}

/**
 * Reads one decoded request of `method`: a request that did not decode
 * throws its VALIDATION error, and so does an enum number the enum does not
 * define. Requests that cannot hold an enum (SendMessage) skip that walk.
 */
function requestReader(method: DescMethod): (request: unknown) => unknown {
  const schema = method.input;
  const enums = canHoldEnums(schema);
  return (request) => {
    if (request instanceof UndecodableMessage) throw request.error;
    if (enums) checkEnums(schema, request as object);
    return request;
  };
}

/** The request stream of a call, ending quietly when the call is cancelled. */
async function* requestsOf(stream: Readable, decoded: (request: unknown) => unknown, signal: AbortSignal): AsyncGenerator {
  const onAbort = () => {
    stream.destroy();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    // destroyOnReturn: false — the default destroys the whole duplex when the
    // request side ends, which would also kill the response side (and the
    // status) of a bidirectional call.
    for await (const item of stream.iterator({ destroyOnReturn: false })) {
      yield decoded(item);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

const CALL_CANCELLED = new ParleyError(ErrorCategory.UNAVAILABLE, "call cancelled by the client", { context: { expected: true } });

/** The writable half of a server call, as far as the sink needs it. */
interface WritableCall {
  write(message: unknown): boolean;
  once(event: "drain", listener: () => void): unknown;
  off(event: "drain", listener: () => void): unknown;
}

function sinkFor(call: WritableCall, signal: AbortSignal): ResponseSink<unknown> {
  return {
    send(message) {
      if (signal.aborted) return Promise.reject(ParleyError.from(signal.reason, ErrorCategory.UNAVAILABLE));
      if (call.write(message)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          call.off("drain", onDrain);
          reject(ParleyError.from(signal.reason, ErrorCategory.UNAVAILABLE));
        };
        const onDrain = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        call.once("drain", onDrain);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
  };
}
