// The chat write path's side of the decision table: the standings that may
// send, as the store function reads them; the one refusal of a send and of a
// read position; and the development policy of rooms on first use.
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ErrorCategory, ParleyError } from "../../wire/index.js";
import { decide, type Membership, type RoomAction } from "./permissions.js";

/**
 * A (room kind, member state, member role) standing as one integer,
 * `kind*100 + state*10 + role`: how parley_store_chat_batch compares a
 * sender's row with the allowed set without knowing the table.
 */
export function standingCode(kind: number, state: number, role: number): number {
  return kind * 100 + state * 10 + role;
}

/** Every value of a generated enum (TypeScript enums also map names back to numbers). */
function values<E extends number>(enumObject: Record<string, string | number>): E[] {
  return Object.values(enumObject).filter((value): value is E => typeof value === "number");
}

/**
 * The standings of a member (a room_members row: someone without one is
 * never among them) for which `decide` allows `action`, an action on the room
 * itself. Computed from the table, so the table stays the one decision.
 */
function allowedStandings(action: RoomAction): number[] {
  const allowed: number[] = [];
  for (const kind of values<RoomKind>(RoomKind)) {
    for (const state of values<MembershipState>(MembershipState)) {
      for (const role of values<RoomRole>(RoomRole)) {
        // One decimal digit each, or two standings would share a code.
        if (Math.max(kind, state, role) > 9) throw new Error(`an enum value above 9 (${kind}, ${state}, ${role}) does not fit standingCode`);
        if (decide(kind, { state, role }, action).allowed) allowed.push(standingCode(kind, state, role));
      }
    }
  }
  return allowed;
}

/** The standings that may send, computed once. */
export const SEND_STANDINGS: readonly number[] = allowedStandings("send");

/**
 * The refusal of every send that may not be stored: a missing room, a
 * non-member, a banned or read-only member all read the same, so that the
 * answer tells nothing about a room the sender may not see.
 */
export function sendRefused(): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, "not allowed to send to this room: it does not exist or you are not a member who may send");
}

/** The refusal of every read position that may not be set (missing room or not a joined member alike). */
export function markReadRefused(): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, "not allowed to mark read in this room: it does not exist or you are not a member");
}

/**
 * Rooms on first use, a development policy (CoreOptions.implicitRooms): a
 * user who writes to a public room they could join is joined to it as a
 * member, without a room event. True for a public room's non-members (no
 * row, invited, left, kicked); never for the banned, for members already
 * joined, or for private and direct rooms. parley_store_chat_batch applies
 * the same rule in SQL (test/core/chat/send-access.test.ts holds them
 * together).
 */
export function joinsImplicitly(kind: RoomKind, membership: Membership | undefined): boolean {
  return kind === RoomKind.PUBLIC && membership?.state !== MembershipState.JOINED && decide(kind, membership, "join").allowed;
}
