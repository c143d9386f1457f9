import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ParleyError, type ReadLost, ReadWatch } from "../../wire/index.js";
import type { RoomStanding } from "./room-access.js";

/**
 * Watches one subscriber's right to read a room while they follow its log,
 * from the standing checked when the follow began (the wire's ReadWatch,
 * which the bridge uses for its connections too). The log decides: an event
 * at or below the checked head is already in the standing.
 */
export class ReadGuard {
  readonly #watch: ReadWatch;

  constructor(
    private readonly room: string,
    user: string,
    standing: RoomStanding,
  ) {
    const member = standing.member ?? { state: MembershipState.UNSPECIFIED, role: RoomRole.UNSPECIFIED };
    this.#watch = new ReadWatch(user, standing.kind, member, standing.headSeq);
  }

  /** Takes `event` into account; the PERMISSION_DENIED that ends the follow, if the reader lost the right to read. */
  observe(event: RoomEvent): ParleyError | undefined {
    const lost = this.#watch.apply(event);
    if (lost === undefined) return undefined;
    return new ParleyError(ErrorCategory.PERMISSION_DENIED, `no longer allowed to read room ${this.room}: ${why(lost)} (seq ${event.seq})`, { retryable: false });
  }
}

function why(lost: ReadLost): string {
  switch (lost.state) {
    case MembershipState.BANNED:
      return "banned";
    case MembershipState.KICKED:
      return "kicked";
    case MembershipState.LEFT:
      return "left the room";
    case MembershipState.INVITED:
    case MembershipState.JOINED:
    case MembershipState.UNSPECIFIED:
      return lost.kind === RoomKind.PUBLIC ? "membership changed" : "the room is for members only";
  }
}
