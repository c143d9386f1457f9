import { randomUUID } from "node:crypto";
import type { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import type { ServiceClient } from "../../src/runtime/grpc/client.js";
import { fromGrpcError } from "../../src/runtime/grpc/status.js";
import type { ParleyError } from "../../src/wire/errors/parley-error.js";

/** A stream the server accepted, ended from the client with `cancel`. */
export interface OpenStream {
  cancel(): void;
}

/** A server stream the server accepted, with its items after the one that proved it open. */
export interface OpenServerStream<T> extends OpenStream {
  readonly rest: AsyncIterator<T>;
}

/** What became of a call: open (the server answered it) or refused with the error that ended it. */
export type Opening<S extends OpenStream> = { readonly open: S; readonly refused?: undefined } | { readonly open?: undefined; readonly refused: ParleyError };

/**
 * Opens a server stream and waits for its first item (a subscription's
 * replay caught up) or its failure. `start` gets the signal that cancels it.
 */
export async function openServerStream<T>(start: (signal: AbortSignal) => AsyncIterable<T>): Promise<Opening<OpenServerStream<T>>> {
  const controller = new AbortController();
  const rest = start(controller.signal)[Symbol.asyncIterator]();
  try {
    const first = await rest.next();
    if (first.done === true) throw new Error("the stream ended without an item");
  } catch (error) {
    return { refused: fromGrpcError(error) };
  }
  return {
    open: {
      rest,
      cancel: () => {
        controller.abort();
      },
    },
  };
}

/** The next item of an open server stream (failing if the stream ended instead). */
export async function nextItem<T>(stream: OpenServerStream<T>): Promise<T> {
  const next = await stream.rest.next();
  if (next.done === true) throw new Error("the stream ended");
  return next.value;
}

/**
 * Opens a SendStream and sends one message on it: open once that send is
 * answered, refused when the stream fails first.
 */
export async function openSendStream(chat: ServiceClient<typeof ChatService>, room: string): Promise<Opening<OpenStream>> {
  const controller = new AbortController();
  const stream = chat.sendStream({ signal: controller.signal });
  const answered = new Promise<void>((resolve, reject) => {
    stream.once("data", () => {
      resolve();
    });
    stream.once("error", reject);
  });
  stream.write({ streamSeq: 1n, room, body: "on a send stream", clientMsgId: randomUUID() });
  try {
    await answered;
  } catch (error) {
    return { refused: fromGrpcError(error) };
  }
  // Later errors (the cancel below) are expected; nothing reads the stream.
  stream.on("error", () => undefined);
  return {
    open: {
      cancel: () => {
        controller.abort();
      },
    },
  };
}

/**
 * Opens with `open` until the server takes the call, trying again while it
 * is refused RATE_LIMITED (a slot is freed a moment after the stream that
 * held it ended: the cancel has to reach the server). A refused attempt
 * holds no slot, so trying again changes no count. Any other refusal, or
 * none accepted within `timeoutMs`, fails.
 */
export async function openOnceFree<S extends OpenStream>(open: () => Promise<Opening<S>>, timeoutMs = 10_000): Promise<S> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const opening = await open();
    if (opening.refused === undefined) return opening.open;
    if (opening.refused.category !== ErrorCategory.RATE_LIMITED) throw opening.refused;
    if (Date.now() > deadline) throw new Error(`still refused after ${timeoutMs} ms: ${opening.refused.message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
