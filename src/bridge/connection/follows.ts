// What a connection follows: rooms (authorized and replayed from core with
// the user's token, then the bridge's shared feed, ended when the user may
// no longer read them) and the user's inbox, each resumed from its last seq
// when core's stream breaks, each request answered once.
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { type FrameFormat, ParleyError, toErrorDetail, validationError } from "../../wire/index.js";
import { clientFacing } from "../client-facing.js";
import { type FollowPosition, followResumably, follow as followTopic, type Logger } from "../../runtime/index.js";
import { EncodedEvent } from "../encoded-event.js";
import type { CoreCalls } from "./core-calls.js";
import { type FrameRequestName, inFrameTerms } from "./frame-fields.js";
import type { ConnectionDeps } from "./deps.js";
import { RoomStanding } from "./room-standing.js";
import type { FrameWriter, ServerFrameKind } from "./writer.js";
import type { UserBudget } from "../admission/user-budgets.js";

/** A room or inbox subscription of one connection. */
interface Follow {
  /** The subscribe that started it; empty for the route's own subscription. */
  readonly requestId: string;
  /** The room followed; empty for the inbox. */
  readonly room: string;
  /** Its request, as error fields name it. */
  readonly request: FrameRequestName;
  /** The format of its request's frame (undefined: the format of pushed frames). */
  readonly format: FrameFormat | undefined;
  readonly controller: AbortController;
  /** Its request has been answered (caught_up, error or unsubscribed). */
  answered: boolean;
  /** The server ended it (#end): nothing more of it is written. */
  ended: boolean;
  /** Stops it, answering its request if that has not happened yet. */
  cancel(): void;
}

export interface FollowsOptions extends Pick<ConnectionDeps, "chat" | "notifications" | "rooms" | "roomFeeds"> {
  /** The connection's user, whose membership events end their follows. */
  readonly user: string;
  /** Holds the rooms this connection follows in its user's count over all their connections. */
  readonly budget: Pick<UserBudget, "holdSubscription" | "maxSubscriptions" | "coreCalls">;
  readonly calls: CoreCalls;
  readonly writer: FrameWriter;
  readonly log: Logger;
}

/** The follows of one connection; see the comment at the top of this file. */
export class Follows {
  readonly #options: FollowsOptions;
  readonly #rooms = new Map<string, Follow>();
  /** The user-wide holds of subscribed rooms (the route's own room takes none), given back when the room is no longer followed. */
  readonly #holds = new Map<string, () => void>();
  #inbox: Follow | undefined;

  constructor(options: FollowsOptions) {
    this.#options = options;
  }

  /** Whether one more room may be followed (or `room` is followed already). */
  allows(room: string, maxSubscriptions: number): boolean {
    return this.#rooms.has(room) || this.#rooms.size < maxSubscriptions;
  }

  /** Counts `room` among the rooms the user follows (once per room); RATE_LIMITED at their cap. */
  holdRoom(room: string): void {
    if (this.#holds.has(room)) return;
    const { budget } = this.#options;
    const release = budget.holdSubscription();
    if (release === undefined) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `at most ${budget.maxSubscriptions} rooms followed by one user over all their connections`, { retryable: false });
    }
    this.#holds.set(room, release);
  }

  /** `room` is followed no more: its entry and its hold go. */
  #forget(room: string): void {
    this.#rooms.delete(room);
    this.#holds.get(room)?.();
    this.#holds.delete(room);
  }

  /**
   * Follows a room: first GetRoom with the user's token (a refusal answers
   * the subscribe), then replay after `afterSeq` through ListRoomEvents (as
   * the relay, up to GetRoom's head and checked after it), then the bridge's
   * shared feed, each event checked against the user's standing (see
   * #passOn). Survives core restarts: the follow resumes from the last seq it
   * sent, authorized again. `requestId` is empty for the route's own
   * subscription.
   */
  followRoom(requestId: string, room: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#rooms.get(room)?.cancel();
    const follow = this.#newFollow(requestId, room, requestId === "" ? "route" : "subscribe", format);
    const { signal } = follow.controller;
    this.#rooms.set(room, follow);
    const { roomFeeds, log } = this.#options;
    let leave: (() => void) | undefined;
    followResumably({
      afterSeq,
      signal,
      onEnd: "done",
      open: async (position) => {
        // Authorizing and replaying takes one of the user's places at core
        // until caught up: a user subscribing to hundreds of rooms at once
        // queues here, and takes no more of core than max_core_calls_per_user.
        const releasePlace = await this.#options.budget.coreCalls.acquire();
        // Cancelled while waiting for the place (unsubscribed, disconnected): nothing to open.
        if (signal.aborted) {
          releasePlace();
          return;
        }
        try {
          // The room's shared feed is joined inside the place too: a room
          // nobody here followed yet costs core a subscription, and a user
          // subscribing to 64 new rooms at once must open them a few at a
          // time, not all together ahead of everyone else's calls.
          leave ??= roomFeeds.join(room);
          await this.#openRoom(follow, position, releasePlace);
        } finally {
          releasePlace();
        }
      },
      interrupted: (failure, attempt) => {
        log.warn({ category: failure?.categoryName, room, attempt }, "room follow interrupted; resuming");
      },
    })
      .catch((error: unknown) => {
        this.#end(follow, ParleyError.from(error));
      })
      .finally(() => {
        leave?.();
      });
  }

  /** One opening of a room follow (again after each break): GetRoom, replay, then live; `caughtUp` gives the place at core back. */
  async #openRoom(follow: Follow, position: FollowPosition, releasePlace: () => void): Promise<void> {
    const { room } = follow;
    const { signal } = follow.controller;
    const { chat, rooms, roomFeeds, calls, user } = this.#options;
    const unwanted = () => signal.aborted;
    if (unwanted()) return;
    // Not cancelled by the signal (see CoreCalls.options): the answer is
    // waited for in the user's place at core, then dropped if unwanted.
    const { room: answer } = await rooms.getRoom({ room }, calls.options());
    if (unwanted()) return;
    if (answer === undefined) throw new ParleyError(ErrorCategory.INTERNAL, "GetRoom answered without a room", { context: { room } });
    // Core answers only a reader, as of the answer's head; checked here too, so that
    // no answer (a newer core, a race) can start a follow for someone who may not read.
    const standing = RoomStanding.authorized(user, answer);
    // A resume point past GetRoom's head would skip, unchecked, the events
    // between them (a kick among them): nobody can have seen beyond the
    // head, so it is refused, as core refuses it.
    if (position.last !== undefined && position.last > standing.headSeq) {
      throw validationError("after_seq", `is beyond the head (${standing.headSeq})`);
    }
    await followTopic<EncodedEvent>({
      hub: roomFeeds.hub,
      topic: room,
      afterSeq: position.last,
      // Read as the relay, not the user: GetRoom authorized everything up
      // to its head, #passOn checks every event after it, and a read the
      // shared feed asks for after a kick (a resync) must still reach the
      // kick itself, so that the follow ends on it and says why.
      readAfter: async (seq, limit) => {
        const page = await chat.listRoomEvents({ room, cursorSeq: seq, pageSize: Math.min(limit, 500) }, calls.relayOptions());
        return page.events.map((event) => EncodedEvent.roomEvent(event));
      },
      // GetRoom's head: where a live-only follow starts (what came after
      // it is read, and checked, like a replay), and how far a resume
      // point may go.
      readHead: () => Promise.resolve(standing.headSeq),
      send: (event) => {
        if (follow.ended) return;
        position.passed(event);
        this.#passOn(follow, standing, event);
      },
      caughtUp: (headSeq) => {
        releasePlace();
        position.caughtUp(headSeq);
        if (!follow.ended) this.#answerOnce(follow, { case: "caughtUp", value: { room, headSeq } });
        return Promise.resolve();
      },
      signal,
    });
  }

  /**
   * Writes one event of a followed room. A membership or settings change
   * after the standing's head may take the user's right to read: the event
   * itself still goes out (it says what happened), then the follow ends and
   * nothing later of the room reaches this connection. Messages are not
   * looked at: only these events change who may read.
   */
  #passOn(follow: Follow, standing: RoomStanding, event: EncodedEvent): void {
    this.#options.writer.pushEvent(event);
    if (event.roomEvent === undefined) return;
    const revoked = standing.apply(event.roomEvent);
    if (revoked !== undefined) this.#end(follow, revoked);
  }

  /** Stops following `room` (answering its subscribe if it had not caught up yet). */
  unfollowRoom(room: string): void {
    this.#rooms.get(room)?.cancel();
    this.#forget(room);
  }

  /** Follows the user's inbox through core's notification subscription, resuming after breaks. */
  followInbox(requestId: string, afterSeq: bigint | undefined, format?: FrameFormat): void {
    this.#inbox?.cancel();
    const follow = this.#newFollow(requestId, "", requestId === "" ? "route" : "subscribe_notifications", format);
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
            writer.pushEvent(EncodedEvent.notification(event.value));
          } else if (event.case === "caughtUp") {
            position.caughtUp(event.value.headSeq);
            this.#answerOnce(follow, { case: "caughtUp", value: { room: "", headSeq: event.value.headSeq } });
          }
        }
      },
      interrupted: (failure, attempt) => {
        if (failure) log.warn({ category: failure.categoryName, attempt }, "inbox follow interrupted; resuming");
      },
    }).catch((error: unknown) => {
      this.#end(follow, ParleyError.from(error));
    });
  }

  /** Stops every follow without answering (the connection is closed). */
  stopAll(): void {
    for (const [room, follow] of [...this.#rooms]) {
      follow.controller.abort();
      this.#forget(room);
    }
    this.#inbox?.controller.abort();
  }

  /**
   * A subscription's handle. Every subscribe request gets exactly one
   * answer: `caught_up`, an error, or — when it is replaced or unsubscribed
   * before catching up — `unsubscribed`.
   */
  #newFollow(requestId: string, room: string, request: FrameRequestName, format: FrameFormat | undefined): Follow {
    const follow: Follow = {
      requestId,
      room,
      request,
      format,
      controller: new AbortController(),
      answered: false,
      ended: false,
      cancel: () => {
        follow.controller.abort();
        // The route's own subscription (no request id) has nobody to answer.
        if (requestId !== "") this.#answerOnce(follow, { case: "unsubscribed", value: { room } });
      },
    };
    return follow;
  }

  /** Answers the follow's request unless that happened already. */
  #answerOnce(follow: Follow, kind: ServerFrameKind): void {
    if (follow.answered) return;
    follow.answered = true;
    const { writer } = this.#options;
    writer.answer(follow.requestId, kind, follow.format ?? writer.pushFormat);
  }

  /**
   * A follow that cannot go on (core refused it for good, or the user lost
   * the right to read the room): it stops at once and says why. Before its
   * request was answered, the `error` is that answer; after (a room follow
   * that had caught up), the `error` is followed by `unsubscribed` carrying
   * the same reason, so that the client knows the room is no longer followed.
   */
  #end(follow: Follow, error: ParleyError): void {
    if (follow.ended) return;
    follow.ended = true;
    follow.controller.abort();
    const { requestId, room } = follow;
    if (room !== "" && this.#rooms.get(room) === follow) this.#forget(room);
    const { writer } = this.#options;
    const format = follow.format ?? writer.pushFormat;
    const answered = follow.answered;
    follow.answered = true;
    const failure = inFrameTerms(error, follow.request);
    writer.answerError(requestId, failure, format);
    if (answered && room !== "") writer.answer(requestId, { case: "unsubscribed", value: { room, reason: toErrorDetail(clientFacing(failure)) } }, format);
  }
}
