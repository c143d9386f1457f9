import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind } from "../../../gen/parley/v1/rooms_pb.js";
import { ParleyError } from "../../wire/index.js";
import { decide, type Membership } from "./permissions.js";
import type { RoomStanding } from "./room-access.js";

/**
 * Watches one reader's right to read a room while they follow its log: it
 * starts from the standing checked when the follow began and applies each
 * later event that changes it (the reader's own membership, the room's
 * kind), asking the decision table again after each. The log decides: an
 * event at or below the checked head is already in the standing.
 */
export class ReadGuard {
  #kind: RoomKind;
  #member: Membership | undefined;
  readonly #checkedAt: bigint;

  constructor(
    private readonly room: string,
    private readonly user: string,
    standing: RoomStanding,
  ) {
    this.#kind = standing.kind;
    this.#member = standing.member;
    this.#checkedAt = standing.headSeq;
  }

  /** Takes `event` into account; the PERMISSION_DENIED that ends the follow, if the reader lost the right to read. */
  observe(event: RoomEvent): ParleyError | undefined {
    if (event.seq <= this.#checkedAt) return undefined;
    const change = event.event;
    if (change.case === "membership" && change.value.user === this.user) {
      this.#member = { state: change.value.state, role: change.value.role };
    } else if (change.case === "settings") {
      this.#kind = change.value.kind;
    } else {
      return undefined;
    }
    if (decide(this.#kind, this.#member, "read").allowed) return undefined;
    return new ParleyError(ErrorCategory.PERMISSION_DENIED, `no longer allowed to read room ${this.room}: ${this.#why()} (seq ${event.seq})`, { retryable: false });
  }

  #why(): string {
    switch (this.#member?.state) {
      case MembershipState.BANNED:
        return "banned";
      case MembershipState.KICKED:
        return "kicked";
      case MembershipState.LEFT:
        return "left the room";
      case MembershipState.INVITED:
      case MembershipState.JOINED:
      case MembershipState.UNSPECIFIED:
      case undefined:
        return this.#kind === RoomKind.PUBLIC ? "membership changed" : "the room is for members only";
    }
  }
}
