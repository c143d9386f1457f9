// What one connection may read of one room, kept current from the room's own
// log: the bridge follows each room once, with its own identity, so core
// cannot end one connection's share of the feed; the bridge does, from the
// membership and settings events it already passes on.
import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { Room } from "../../../gen/parley/v1/room_service_pb.js";
import { MembershipState, RoomKind } from "../../../gen/parley/v1/rooms_pb.js";
import { mayReadRoom, ParleyError, ReadWatch } from "../../wire/index.js";

/**
 * A connection's standing in a room: the kind, state and role of core's
 * GetRoom answer (made with the user's own token), as of its head_seq, then
 * moved on by every later event that concerns them.
 */
export class RoomStanding {
  readonly #watch: ReadWatch;

  private constructor(user: string, room: Room) {
    this.#watch = new ReadWatch(user, room.kind, { state: room.myState, role: room.myRole }, room.headSeq);
  }

  /** The standing of a GetRoom answer, or PERMISSION_DENIED when the answer itself says the user may not read the room. */
  static authorized(user: string, room: Room): RoomStanding {
    if (!mayReadRoom(room.kind, { state: room.myState, role: room.myRole })) {
      throw new ParleyError(ErrorCategory.PERMISSION_DENIED, `not allowed to read room "${room.id}" (as of seq ${room.headSeq})`, { context: { room: room.id, seq: room.headSeq } });
    }
    return new RoomStanding(user, room);
  }

  /** The answer was true as of this seq: events at or before it are already in it. */
  get headSeq(): bigint {
    return this.#watch.headSeq;
  }

  /**
   * Applies one event of the room's log. Returns, when the event took the
   * user's right to read the room, the PERMISSION_DENIED error that ends the
   * follow (naming the room and why); undefined otherwise.
   */
  apply(event: RoomEvent): ParleyError | undefined {
    const lost = this.#watch.apply(event);
    if (lost === undefined) return undefined;
    const why =
      lost.cause === "membership"
        ? (STATE_WORDS[lost.state] ?? "no longer a member")
        : lost.kind === RoomKind.PRIVATE
          ? "the room became private"
          : "the room's kind changed";
    return new ParleyError(ErrorCategory.PERMISSION_DENIED, `no longer allowed to read room "${event.room}": ${why} (seq ${event.seq})`, {
      context: { room: event.room, seq: event.seq },
    });
  }
}

/** Why a membership state ends reading, in words. */
const STATE_WORDS: Partial<Record<MembershipState, string>> = {
  [MembershipState.KICKED]: "kicked",
  [MembershipState.BANNED]: "banned",
  [MembershipState.LEFT]: "left the room",
  [MembershipState.INVITED]: "no longer a member",
};
