// Who may read a room's log: the one rule of the room decision table that a
// relay must apply itself. Core decides everything in
// src/core/access/permissions.ts, and its "read" row is this rule:
// decide(kind, membership, "read"). The bridge follows each room once with
// its own identity and passes events on to many connections, so core cannot
// check each of them; the bridge checks this rule per connection against the
// membership it caches. It lives in src/wire/ because both ends must agree on
// it and the bridge may not import core. test/core/access/read-rule.test.ts
// checks it against decide() for every kind × state × role: a change to one
// that is not made to the other fails there.
import type { RoomEvent } from "../../gen/parley/v1/chat_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";

/** A user's standing in a room as the wire carries it (GetRoom's my_state and my_role, a MembershipChange); state UNSPECIFIED means no record. */
interface ReaderStanding {
  readonly state: MembershipState;
  readonly role: RoomRole;
}

const STATES: ReadonlySet<number> = new Set([MembershipState.UNSPECIFIED, MembershipState.INVITED, MembershipState.JOINED, MembershipState.LEFT, MembershipState.KICKED, MembershipState.BANNED]);
const ROLES: ReadonlySet<number> = new Set([RoomRole.UNSPECIFIED, RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER]);

/**
 * Whether a user of `standing` may read a room of `kind`: a public room by
 * anyone who is not banned, a private or direct room by joined members only.
 * Numbers outside the enums (a newer writer) read as "no", as in decide().
 */
export function mayReadRoom(kind: RoomKind, standing: ReaderStanding): boolean {
  if (!STATES.has(standing.state) || !ROLES.has(standing.role)) return false;
  if (standing.state === MembershipState.BANNED) return false;
  if (kind === RoomKind.PUBLIC) return true;
  return (kind === RoomKind.PRIVATE || kind === RoomKind.DIRECT) && standing.state === MembershipState.JOINED;
}

/** How a reader lost the right to read: through their own membership, or the room's kind. */
export interface ReadLost {
  readonly cause: "membership" | "settings";
  readonly kind: RoomKind;
  readonly state: MembershipState;
}

/**
 * One reader's right to read one room, kept current from the room's log:
 * it starts from a standing checked as of `headSeq` and applies each later
 * event that changes it (the reader's own membership, the room's kind). Core
 * watches its subscribers with it and the bridge its connections, so that
 * both end a follow on the same event for the same reason.
 */
export class ReadWatch {
  #kind: RoomKind;
  #standing: ReaderStanding;

  constructor(
    private readonly user: string,
    kind: RoomKind,
    standing: ReaderStanding,
    /** The standing was true as of this seq: events at or before it are already in it. */
    readonly headSeq: bigint,
  ) {
    this.#kind = kind;
    this.#standing = standing;
  }

  /** Applies one event of the room's log; how the reader lost the right to read, if this event took it. */
  apply(event: RoomEvent): ReadLost | undefined {
    if (event.seq <= this.headSeq) return undefined;
    const change = event.event;
    let cause: ReadLost["cause"];
    if (change.case === "membership" && change.value.user === this.user) {
      this.#standing = { state: change.value.state, role: change.value.role };
      cause = "membership";
    } else if (change.case === "settings") {
      this.#kind = change.value.kind;
      cause = "settings";
    } else {
      return undefined;
    }
    return mayReadRoom(this.#kind, this.#standing) ? undefined : { cause, kind: this.#kind, state: this.#standing.state };
  }
}
