// A real `ws` WebSocket for the client library that also keeps, in order,
// every frame the client wrote and every frame it received: what a test
// reads to check what went over the wire, and when.
import { fromJsonString } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import { type ClientFrame, ClientFrameSchema, type ServerFrame, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import type { SocketFactory, SocketLike } from "../../src/client/socket.js";

export type WireEvent = { readonly out: ClientFrame } | { readonly in: ServerFrame };

/** The frames of every socket a factory opened, in the order they went (JSON frames only). */
export class WireLog {
  readonly events: WireEvent[] = [];

  /** A socket factory for ParleyClient whose sockets record here. */
  readonly factory: SocketFactory = (url, protocols) => new RecordingSocket(new WebSocket(url, protocols) as unknown as SocketLike, this.events);

  /** The send frames written, in order. */
  get sends(): { requestId: string; clientMsgId: string }[] {
    return this.events.flatMap((event) =>
      "out" in event && event.out.request.case === "send" ? [{ requestId: event.out.requestId, clientMsgId: event.out.request.value.clientMsgId }] : [],
    );
  }
}

class RecordingSocket implements SocketLike {
  readonly #inner: SocketLike;
  readonly #events: WireEvent[];

  constructor(inner: SocketLike, events: WireEvent[]) {
    this.#inner = inner;
    this.#events = events;
  }

  get readyState(): number {
    return this.#inner.readyState;
  }

  get binaryType(): string {
    return this.#inner.binaryType;
  }

  set binaryType(value: string) {
    this.#inner.binaryType = value;
  }

  get onopen(): SocketLike["onopen"] {
    return this.#inner.onopen;
  }

  set onopen(handler: SocketLike["onopen"]) {
    this.#inner.onopen = handler;
  }

  get onclose(): SocketLike["onclose"] {
    return this.#inner.onclose;
  }

  set onclose(handler: SocketLike["onclose"]) {
    this.#inner.onclose = handler;
  }

  get onerror(): SocketLike["onerror"] {
    return this.#inner.onerror;
  }

  set onerror(handler: SocketLike["onerror"]) {
    this.#inner.onerror = handler;
  }

  get onmessage(): SocketLike["onmessage"] {
    return this.#inner.onmessage;
  }

  set onmessage(handler: SocketLike["onmessage"]) {
    this.#inner.onmessage =
      handler &&
      ((event) => {
        if (typeof event.data === "string") this.#events.push({ in: fromJsonString(ServerFrameSchema, event.data, { ignoreUnknownFields: true }) });
        handler(event);
      });
  }

  send(data: string | Uint8Array): void {
    if (typeof data === "string") this.#events.push({ out: fromJsonString(ClientFrameSchema, data) });
    this.#inner.send(data);
  }

  close(code?: number, reason?: string): void {
    this.#inner.close(code, reason);
  }
}
