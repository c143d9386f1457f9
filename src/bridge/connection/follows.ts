// What a connection follows: rooms (replayed from core with the user's
// token, then the bridge's shared feed) and the user's inbox, each resumed
// from its last seq when core's stream breaks, each request answered once.
import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { type FrameFormat, ParleyError } from "../../wire/index.js";
import { followResumably, follow as followTopic, type Logger } from "../../runtime/index.js";
import { EncodedEvent } from "../encoded-event.js";
import type { CoreCalls } from "./core-calls.js";
import { type FrameRequestName, inFrameTerms } from "./frame-fields.js";
import type { ConnectionDeps } from "./deps.js";
import type { FrameWriter, ServerFrameKind } from "./writer.js";

/** A room or inbox subscription of one connection. */
interface Follow {
  readonly controller: AbortController;
  /** Its request has been answered (caught_up, error or unsubscribed). */
  answered: boolean;
  /** Stops it, answering its request if that has not happened yet. */
  cancel(): void;
}

export interface FollowsOptions extends Pick<ConnectionDeps, "chat" | "notifications" | "roomFeeds"> {
  readonly calls: CoreCalls;
  readonly writer: FrameWriter;
  readonly log: Logger;
}

/** The follows of one connection; see the comment at the top of this file. */
export class Follows {
  readonly #options: FollowsOptions;
  readonly #rooms = new Map<string, Follow>();
  #inbox: Follow | undefined;

  constructor(options: FollowsOptions) {
    this.#options = options;
  }

  /** Whether one more room may be followed (or `room` is followed already). */
  allows(room: string, maxSubscriptions: number): boolean {
    return this.#rooms.has(room) || this.#rooms.size < maxSubscriptions;
  }

  /**
   * Follows a room: replay after `afterSeq` through ListMessages (with the
   * user's token, so read permission is the user's), then the bridge's shared
   * feed. Survives core restarts: the follow resumes from the last seq it sent.
   * `requestId` is empty for the route's own subscription.
   */
  followRoom(requestId: string, room: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#rooms.get(room)?.cancel();
    const follow = this.#newFollow(requestId, room, format);
    const { signal } = follow.controller;
    this.#rooms.set(room, follow);
    const { chat, roomFeeds, calls, writer, log } = this.#options;
    const leave = roomFeeds.join(room);
    followResumably({
      afterSeq,
      signal,
      onEnd: "done",
      open: (position) =>
        followTopic<EncodedEvent>({
          hub: roomFeeds.hub,
          topic: room,
          afterSeq: position.last,
          readAfter: async (seq, limit) => {
            const page = await chat.listMessages({ room, cursorSeq: seq, pageSize: Math.min(limit, 500) }, calls.options(signal));
            return page.messages.map((message) => EncodedEvent.message(message));
          },
          readHead: async () => {
            const page = await chat.listMessages({ room, direction: ListDirection.BACKWARD, pageSize: 1 }, calls.options(signal));
            return page.headSeq;
          },
          send: (event) => {
            position.passed(event);
            writer.pushEvent(event, "message");
          },
          caughtUp: (headSeq) => {
            position.caughtUp(headSeq);
            this.#answerOnce(follow, requestId, { case: "caughtUp", value: { room, headSeq } }, format);
            return Promise.resolve();
          },
          signal,
        }),
      interrupted: (failure, attempt) => {
        log.warn({ category: failure?.categoryName, room, attempt }, "room follow interrupted; resuming");
      },
    })
      .catch((error: unknown) => {
        this.#failed(follow, requestId, ParleyError.from(error), requestId === "" ? "route" : "subscribe", format);
        if (this.#rooms.get(room) === follow) this.#rooms.delete(room);
      })
      .finally(leave);
  }

  /** Stops following `room` (answering its subscribe if it had not caught up yet). */
  unfollowRoom(room: string): void {
    this.#rooms.get(room)?.cancel();
    this.#rooms.delete(room);
  }

  /** Follows the user's inbox through core's notification subscription, resuming after breaks. */
  followInbox(requestId: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#inbox?.cancel();
    const follow = this.#newFollow(requestId, "", format);
    const { signal } = follow.controller;
    this.#inbox = follow;
    const { notifications, calls, writer, log } = this.#options;
    followResumably({
      afterSeq,
      signal,
      onEnd: "resume",
      open: async (position) => {
        const request = position.last === undefined ? {} : { afterSeq: position.last };
        for await (const { event } of notifications.subscribe(request, calls.streamOptions(signal))) {
          if (event.case === "notification") {
            if (!position.isNew(event.value)) continue;
            position.passed(event.value);
            writer.pushEvent(EncodedEvent.notification(event.value), "notification");
          } else if (event.case === "caughtUp") {
            position.caughtUp(event.value.headSeq);
            this.#answerOnce(follow, requestId, { case: "caughtUp", value: { room: "", headSeq: event.value.headSeq } }, format);
          }
        }
      },
      interrupted: (failure, attempt) => {
        if (failure) log.warn({ category: failure.categoryName, attempt }, "inbox follow interrupted; resuming");
      },
    }).catch((error: unknown) => {
      this.#failed(follow, requestId, ParleyError.from(error), requestId === "" ? "route" : "subscribe_notifications", format);
    });
  }

  /** Stops every follow without answering (the connection is closed). */
  stopAll(): void {
    for (const follow of this.#rooms.values()) follow.controller.abort();
    this.#rooms.clear();
    this.#inbox?.controller.abort();
  }

  /**
   * A subscription's handle. Every subscribe request gets exactly one
   * answer: `caught_up`, an error, or — when it is replaced or unsubscribed
   * before catching up — `unsubscribed`.
   */
  #newFollow(requestId: string, room: string, format: FrameFormat | undefined): Follow {
    const follow: Follow = {
      controller: new AbortController(),
      answered: false,
      cancel: () => {
        follow.controller.abort();
        // The route's own subscription (no request id) has nobody to answer.
        if (requestId !== "") this.#answerOnce(follow, requestId, { case: "unsubscribed", value: { room } }, format);
      },
    };
    return follow;
  }

  /** Answers the follow's request unless that happened already. */
  #answerOnce(follow: Follow, requestId: string, kind: ServerFrameKind, format: FrameFormat | undefined): void {
    if (follow.answered) return;
    follow.answered = true;
    const { writer } = this.#options;
    writer.answer(requestId, kind, format ?? writer.pushFormat);
  }

  /** A follow that cannot go on (core refused it for good): its request is answered with the reason. */
  #failed(follow: Follow, requestId: string, error: ParleyError, request: FrameRequestName, format: FrameFormat | undefined): void {
    follow.answered = true;
    const { writer } = this.#options;
    writer.answerError(requestId, inFrameTerms(error, request), format ?? writer.pushFormat);
  }
}
