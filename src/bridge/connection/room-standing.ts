// What one connection may read of one room, kept current from the room's own
// log: the bridge follows each room once, with its own identity, so core
// cannot end one connection's share of the feed; the bridge does, from the
// membership and settings events it already passes on.
import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { Room } from "../../../gen/parley/v1/room_service_pb.js";
import { MembershipState, RoomKind, type RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { mayReadRoom, ParleyError } from "../../wire/index.js";

/**
 * A connection's standing in a room: the kind, state and role of core's
 * GetRoom answer (made with the user's own token), as of its head_seq, then
 * moved on by every later event that concerns them.
 */
export class RoomStanding {
  #kind: RoomKind;
  #state: MembershipState;
  #role: RoomRole;
  /** The answer was true as of this seq: events at or before it are already in it. */
  readonly headSeq: bigint;

  constructor(
    private readonly user: string,
    room: Room,
  ) {
    this.#kind = room.kind;
    this.#state = room.myState;
    this.#role = room.myRole;
    this.headSeq = room.headSeq;
  }

  /**
   * Applies one event of the room's log. Returns, when the event took the
   * user's right to read the room, the PERMISSION_DENIED error that ends the
   * follow (naming the room and why); undefined otherwise.
   */
  apply(event: RoomEvent): ParleyError | undefined {
    if (event.seq <= this.headSeq) return undefined;
    let why: string;
    const change = event.event;
    if (change.case === "membership") {
      if (change.value.user !== this.user) return undefined;
      this.#state = change.value.state;
      this.#role = change.value.role;
      why = STATE_WORDS[this.#state] ?? "no longer a member";
    } else if (change.case === "settings") {
      this.#kind = change.value.kind;
      why = this.#kind === RoomKind.PRIVATE ? "the room became private" : "the room's kind changed";
    } else {
      return undefined;
    }
    if (mayReadRoom(this.#kind, { state: this.#state, role: this.#role })) return undefined;
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
