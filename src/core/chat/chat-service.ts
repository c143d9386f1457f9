import { create } from "@bufbuild/protobuf";
import {
  type ChatMessage,
  type ChatService,
  type ChatServiceSubscribeResponse,
  ChatServiceSubscribeResponseSchema,
  type SendBatchesRequest,
  type SendBatchesResponse,
  SendBatchesResponseSchema,
  type SendStreamRequest,
  type SendStreamResponse,
  SendStreamResponseSchema,
} from "../../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { atEndOfTurn, type CallContext, CALLER, contextFromTraceparent, failSpan, follow, type Identity, logError, type Logger, OrderedQueue, originOf, type ResponseSink, ROOMS_RELAY_SCOPE, type ServiceHandlers, setAttributesIfRecording, type TokenVerifier, traceDelivery, tracer } from "../../runtime/index.js";
import { checkBody, checkIdempotencyKey, checkPageSize, checkRoom, checkSeq, MAX_BATCH_ITEMS, ParleyError, toErrorDetail, validationError } from "../../wire/index.js";
import { context, trace } from "@opentelemetry/api";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { assertAllowed, readStanding, type RoomStanding } from "../access/room-access.js";
import { ReadGuard } from "../access/read-guard.js";
import { relayActingAlone } from "../access/relay-guard.js";
import { RoomKind } from "../../../gen/parley/v1/rooms_pb.js";
import { messageEvent } from "../store/room-event-rows.js";
import { markReadRefused } from "../access/write-access.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import type { TopicFanout } from "../store/topic-fanout.js";
import type { MessageStore } from "./message-store.js";
import { isMessage, type RoomLog, type RoomLogItem } from "./room-log.js";
import type { SendCommand, SendCommitter, SendResult } from "./send-committer.js";

export interface ChatServiceDeps {
  readonly unitOfWork: UnitOfWork;
  readonly store: MessageStore;
  readonly log: RoomLog;
  readonly committer: SendCommitter;
  readonly fanout: TopicFanout<RoomLogItem>;
  /**
   * The development policy of rooms on first use: a room that does not exist
   * reads as an empty public room (the first send creates it).
   */
  readonly implicitRooms: boolean;
  /** Verifies SendStream items' acting tokens. */
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  /** Unanswered items a SendStream may have in flight before reading pauses. */
  readonly streamWindow?: number;
}

/** parley.v1.ChatService: the transport-free rules, bound to gRPC by the caller. */
export function chatServiceHandlers(deps: ChatServiceDeps): ServiceHandlers<typeof ChatService> {
  const { unitOfWork, store, log, committer, fanout, verifier, logger } = deps;

  /** A room that does not exist, under the policy of rooms on first use: empty and public. */
  const IMPLICIT_ROOM: RoomStanding = { kind: RoomKind.PUBLIC, headSeq: 0n, member: undefined };

  /** The caller's standing in `room`, refused unless they may read it. */
  const readableStanding = async (em: EntityManager, room: string, user: string): Promise<RoomStanding> => {
    const standing = (await readStanding(em, room, user)) ?? (deps.implicitRooms ? IMPLICIT_ROOM : undefined);
    assertAllowed(standing, "read");
    return standing as RoomStanding;
  };

  const toCommand = (caller: Identity, room: string, body: string, clientMsgId: string): SendCommand => {
    // Whether the sender may send is decided where the send is stored, in
    // the room's order (parley_store_chat_batch): a refusal is its answer.
    return {
      room: checkRoom(room),
      body: checkBody(body),
      clientMsgId: checkIdempotencyKey(clientMsgId, "client_msg_id"),
      sender: caller.user,
    };
  };

  /**
   * One SendStream item → its answer; never rejects (errors are answers).
   * The caller is resolved before this is called, in stream order, so that
   * submissions reach the group commit in stream_seq order.
   *
   * Items arrive thousands a second, so this is written without async
   * functions: the item's span is the active context only while the send is
   * submitted (the group commit records it there) and while a failure is
   * logged, and the answer is one promise continuation away.
   */
  const answerItem = (item: SendStreamRequest, caller: Identity | ParleyError, callContext: CallContext): Promise<SendStreamResponse> => {
    // Each item continues its own caller's trace (the stream is shared).
    const parent = contextFromTraceparent(item.traceparent);
    const span = tracer().startSpan("chat.send", {}, parent);
    setAttributesIfRecording(span, () => ({ "parley.room": item.room, "parley.stream_seq": item.streamSeq.toString(), "parley.client_msg_id": item.clientMsgId }));
    const itemContext = trace.setSpan(parent, span);
    const failed = (thrown: unknown): SendStreamResponse =>
      context.with(itemContext, () => {
        const error = ParleyError.from(thrown);
        failSpan(span, error);
        logError(logger, error, {
          rpc: callContext.path,
          stream_seq: item.streamSeq.toString(),
          room: item.room,
          client_msg_id: item.clientMsgId,
          user: caller instanceof ParleyError ? undefined : caller.user,
        });
        span.end();
        return create(SendStreamResponseSchema, { streamSeq: item.streamSeq, result: { case: "error", value: toErrorDetail(error) } });
      });
    let submitted: Promise<SendResult>;
    try {
      if (caller instanceof ParleyError) throw caller;
      const command = toCommand(caller, item.room, item.body, item.clientMsgId);
      submitted = context.with(itemContext, () => committer.submit(command));
    } catch (thrown) {
      return Promise.resolve(failed(thrown));
    }
    return submitted.then((result) => {
      span.end();
      return create(SendStreamResponseSchema, { streamSeq: item.streamSeq, result: { case: "message", value: result.message }, duplicate: result.duplicate });
    }, failed);
  };

  /**
   * The identity an item acts for: its own token's subject, or the stream's.
   * A token verified before is answered at once, without a promise.
   */
  const actingCaller = (item: SendStreamRequest, opener: Identity): Identity | ParleyError | Promise<Identity | ParleyError> => {
    if (item.actingToken === "") return opener.scopes.has(ROOMS_RELAY_SCOPE) ? relayActingAlone() : opener;
    const cached = verifier.cachedIdentity(item.actingToken);
    if (cached !== undefined) return userActing(cached);
    return verifier.verify(item.actingToken).then(userActing, (error: unknown) => ParleyError.from(error));
  };

  /** An acting token must be a user's: a relay credential there would make the relay the sender. */
  const userActing = (acting: Identity): Identity | ParleyError => (acting.scopes.has(ROOMS_RELAY_SCOPE) ? relayActingAlone() : acting);

  /**
   * A send stream (SendStream or SendBatches): items read in order, a
   * request's items at a time, each submitted to the group commit as it
   * arrives, answered in stream_seq order by `write`. Ends when the items end
   * or the caller goes away.
   */
  const serveSendStream = async (
    requests: AsyncIterable<readonly SendStreamRequest[]>,
    write: (answers: OrderedQueue<SendStreamResponse>) => Promise<void>,
    callContext: CallContext,
  ): Promise<void> => {
    const opener = callContext.values.get(CALLER);
    const answers = new OrderedQueue<SendStreamResponse>(deps.streamWindow ?? 4096);
    let writeFailure: unknown;
    const writer = write(answers).catch((error: unknown) => {
      // The caller went away: stop reading; its unanswered items are
      // still committed and will be answered as duplicates on resend.
      writeFailure = error;
      answers.close();
    });
    let last: bigint | undefined;
    try {
      reading: for await (const items of requests) {
        for (const item of items) {
          if (writeFailure !== undefined) break reading;
          if (last !== undefined && item.streamSeq <= last) {
            throw validationError("stream_seq", `must increase along the stream: got ${item.streamSeq} after ${last}`);
          }
          last = item.streamSeq;
          // Resolved here, in stream order (verifications are cached per token).
          const acting = actingCaller(item, opener);
          const caller = acting instanceof Promise ? await acting : acting;
          const answer = answerItem(item, caller, callContext);
          if (!answers.offer(answer)) await answers.push(answer);
        }
      }
    } finally {
      // Answer everything accepted so far, then end (or fail) the stream.
      answers.close();
      await writer;
    }
    if (writeFailure !== undefined) throw ParleyError.from(writeFailure);
  };

  return {
    async sendMessage(request, context) {
      const command = toCommand(context.values.get(CALLER), request.room, request.body, request.clientMsgId);
      const result = await committer.submit(command);
      return { message: result.message, duplicate: result.duplicate };
    },

    sendStream(requests, responses, context) {
      return serveSendStream(oneAtATime(requests), (answers) => writeEach(answers, responses), context);
    },

    sendBatches(requests, responses, context) {
      return serveSendStream(itemsOfBatches(requests), (answers) => writeBatches(answers, responses), context);
    },

    async listMessages(request, context) {
      const caller = context.values.get(CALLER);
      const room = checkRoom(request.room);
      const cursor = checkSeq(request.cursorSeq, "cursor_seq");
      const pageSize = checkPageSize(request.pageSize);
      const backward = request.direction === ListDirection.BACKWARD;
      return unitOfWork.read({ label: "chat.list", context: { room } }, async (em) => {
        const { headSeq } = await readableStanding(em, room, caller.user);
        // Capped at the head the check saw: a read is not one snapshot, and a
        // row committed after a kick that came between must not slip in.
        const read = backward ? await store.readBefore(em, room, cursor, pageSize + 1) : await store.readAfter(em, room, cursor, pageSize + 1);
        const rows = read.filter((row) => row.seq <= headSeq);
        const page = rows.slice(0, pageSize);
        const lastRow = page.at(-1);
        return { messages: page, hasMore: rows.length > pageSize, nextCursorSeq: lastRow?.seq ?? cursor, headSeq };
      });
    },

    async listRoomEvents(request, context) {
      const caller = context.values.get(CALLER);
      const room = checkRoom(request.room);
      const cursor = checkSeq(request.cursorSeq, "cursor_seq");
      const pageSize = checkPageSize(request.pageSize);
      const backward = request.direction === ListDirection.BACKWARD;
      // A relay (the bridge) reads any room's log, as it follows any room, for
      // connections it has authorized itself (and whose events it checks).
      const relay = caller.scopes.has(ROOMS_RELAY_SCOPE);
      return unitOfWork.read({ label: "chat.list-events", context: { room } }, async (em) => {
        const headSeq = relay ? await store.headSeq(em, room) : (await readableStanding(em, room, caller.user)).headSeq;
        // Capped at the head the check saw, as for ListMessages.
        const read = backward ? await log.readBefore(em, room, cursor, pageSize + 1) : await log.readAfter(em, room, cursor, pageSize + 1);
        const items = read.filter((item) => item.seq <= headSeq);
        const page = items.slice(0, pageSize);
        return {
          events: page.map((item) => (isMessage(item) ? messageEvent(item) : item)),
          hasMore: items.length > pageSize,
          nextCursorSeq: page.at(-1)?.seq ?? cursor,
          headSeq,
        };
      });
    },

    async subscribe(request, responses, context) {
      const caller = context.values.get(CALLER);
      const room = checkRoom(request.room);
      const afterSeq = request.afterSeq === undefined ? undefined : checkSeq(request.afterSeq, "after_seq");
      const read = { label: "chat.replay", context: { room } };
      // A relay (the bridge) follows any room and checks each of its
      // connections itself; anyone else is checked here, and watched.
      const relay = caller.scopes.has(ROOMS_RELAY_SCOPE);
      const standing = relay ? undefined : await unitOfWork.read(read, (em) => readableStanding(em, room, caller.user));
      // A resume point past the head the check saw would skip the events
      // between them unwatched (a kick among them): refused, as follow does.
      if (standing && standing !== IMPLICIT_ROOM && afterSeq !== undefined && afterSeq > standing.headSeq) {
        throw validationError("after_seq", `is beyond the head (${standing.headSeq})`);
      }
      const guard = standing && new ReadGuard(room, caller.user, standing);
      const batches = request.batched ? new EventBatcher(responses) : undefined;
      const sendMessage = (message: ChatMessage) =>
        traceDelivery("message", room, message, originOf(message), () =>
          batches ? batches.add(message) : responses.send({ event: { case: "message", value: message } } satisfies Partial<ChatServiceSubscribeResponse>),
        );
      const sendEvent = async (event: RoomEvent) => {
        const revoked = guard?.observe(event);
        await batches?.flush();
        await responses.send({ event: { case: "roomEvent", value: event } });
        // Nothing after the event that revoked the right to read goes out.
        if (revoked) throw revoked;
      };
      await follow<RoomLogItem>({
        hub: fanout.hub,
        topic: room,
        // Live-only starts after the head the check saw, so that no change
        // between the check and the follow can pass unwatched.
        afterSeq: afterSeq ?? (standing && standing !== IMPLICIT_ROOM ? standing.headSeq : undefined),
        readAfter: (seq, limit) => unitOfWork.read(read, (em) => log.readAfter(em, room, seq, limit)),
        readHead: () => unitOfWork.read(read, (em) => store.headSeq(em, room)),
        send: (item) => (isMessage(item) ? sendMessage(item) : sendEvent(item)),
        caughtUp: async (headSeq) => {
          await batches?.flush();
          await responses.send({ event: { case: "caughtUp", value: { headSeq } } });
        },
        signal: context.signal,
      });
    },

    async markRead(request, context) {
      const caller = context.values.get(CALLER);
      const room = checkRoom(request.room);
      const seq = checkSeq(request.seq, "seq");
      return unitOfWork.transaction({ label: "chat.mark-read", context: { room, user: caller.user } }, async (em) => {
        const marked = await store.markRead(em, room, caller.user, seq);
        if (marked === undefined) throw markReadRefused();
        const { readSeq, headSeq } = marked;
        // Checked after the write, inside the transaction: throwing rolls it back.
        if (seq > headSeq) throw validationError("seq", `is beyond the room's head (${headSeq})`);
        // Unread counts messages: the other events after the position are not.
        return { readSeq, headSeq, unreadCount: headSeq - readSeq - (await log.countEventsAfter(em, room, readSeq)) };
      });
    },
  };
}

/** SendStream: one response per answer. */
async function writeEach(answers: OrderedQueue<SendStreamResponse>, responses: ResponseSink<SendStreamResponse>): Promise<void> {
  for await (const answer of answers) await responses.send(answer);
}

/**
 * SendBatches: the answers ready together in one response. A gRPC stream
 * writes one message per HTTP/2 write completion, so one message per answer
 * would cap the stream at one answer per turn of the event loop.
 */
async function writeBatches(answers: OrderedQueue<SendStreamResponse>, responses: ResponseSink<SendBatchesResponse>): Promise<void> {
  for await (const batch of answers.batches(MAX_BATCH_ITEMS)) await responses.send(create(SendBatchesResponseSchema, { answers: batch }));
}

/** The items of a SendBatches stream, a request's at a time; a request with no items or too many ends the stream. */
async function* itemsOfBatches(requests: AsyncIterable<SendBatchesRequest>): AsyncGenerator<readonly SendStreamRequest[]> {
  for await (const request of requests) {
    if (request.items.length === 0 || request.items.length > MAX_BATCH_ITEMS) {
      throw validationError("items", `must hold 1 to ${MAX_BATCH_ITEMS} items, got ${request.items.length}`);
    }
    yield request.items;
  }
}

/** The items of a SendStream stream: each request is one. */
async function* oneAtATime(requests: AsyncIterable<SendStreamRequest>): AsyncGenerator<readonly SendStreamRequest[]> {
  for await (const request of requests) yield [request];
}

/**
 * A batched subscription's writer: messages passed on in one turn of the
 * event loop leave as one `messages` event when the turn ends. `add`
 * answers at once while the stream takes what it is given; once a write has
 * to wait for the stream to drain (or has failed), it answers with that
 * write, so a follower whose stream is backed up (or gone) is held (or
 * stopped) as with one event per message.
 */
class EventBatcher {
  #pending: ChatMessage[] = [];
  #scheduled = false;
  /** The last write, while it waits for a drain, or after it failed. */
  #blocking: Promise<void> | undefined;

  constructor(private readonly responses: ResponseSink<ChatServiceSubscribeResponse>) {}

  add(message: ChatMessage): Promise<void> | undefined {
    this.#pending.push(message);
    if (!this.#scheduled) {
      this.#scheduled = true;
      atEndOfTurn(this.#flushAtEndOfTurn);
    }
    return this.#blocking;
  }

  readonly #flushAtEndOfTurn = (): void => {
    void this.flush();
  };

  /** Writes what is pending now (before a caught_up, say). */
  flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#pending.length === 0) return this.#blocking ?? Promise.resolve();
    const messages = this.#pending;
    this.#pending = [];
    const write = this.responses.send(create(ChatServiceSubscribeResponseSchema, { event: { case: "messages", value: { messages } } }));
    this.#blocking = write;
    write.then(
      () => {
        if (this.#blocking === write) this.#blocking = undefined;
      },
      // A failed write stays blocking: the next add or flush answers with it.
      () => undefined,
    );
    return write;
  }
}
