import type { EntityManager } from "@mikro-orm/postgresql";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { type MembershipState, type RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { ParleyError } from "../../wire/index.js";
import { decide, type Membership, type RoomAction, type Target } from "./permissions.js";

/** Where a user stands with a room, as a permission check needs it. */
export interface RoomStanding {
  readonly kind: RoomKind;
  readonly headSeq: bigint;
  /** Undefined: the user has no record in the room. */
  readonly member: Membership | undefined;
}

/**
 * The answer to anyone who may not see a room, whether it exists or not:
 * the same words for both, so that the names of private rooms do not leak.
 */
export const NOT_VISIBLE = "no such room, or you may not see it";

export function notVisible(): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, NOT_VISIBLE);
}

/** The room's kind and head, and `user`'s membership; undefined when the room does not exist. */
export async function readStanding(em: EntityManager, room: string, user: string): Promise<RoomStanding | undefined> {
  const rows = await em.execute<{ kind: RoomKind; head_seq: string; state: MembershipState | null; role: RoomRole | null }[]>(
    `select r.kind, r.head_seq, m.state, m.role from rooms r left join room_members m on m.room_id = r.id and m.user_id = ? where r.id = ?`,
    [user, room],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return { kind: row.kind, headSeq: BigInt(row.head_seq), member: row.state === null ? undefined : { state: row.state, role: row.role ?? RoomRole.UNSPECIFIED } };
}

/**
 * Throws PERMISSION_DENIED unless the table allows `action`. Someone with
 * no record in a room they may not read is told only that it is not
 * visible; anyone the room knows (invited, banned, a former member) is told
 * why.
 */
export function assertAllowed(standing: RoomStanding | undefined, action: RoomAction, target?: Target): void {
  if (standing === undefined) throw notVisible();
  const decision = decide(standing.kind, standing.member, action, target);
  if (decision.allowed) return;
  if (standing.member === undefined && !decide(standing.kind, undefined, "read").allowed) throw notVisible();
  throw new ParleyError(ErrorCategory.PERMISSION_DENIED, decision.reason);
}
