import { MembershipState, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import type { Membership, RoomAction } from "../access/permissions.js";

/**
 * The membership operations of RoomService as data: what each does to the
 * member it acts on, and when it is already in effect. Whether the actor
 * may do it is the decision table's (permissions.ts), never decided here.
 */
export interface MembershipOperation {
  readonly action: Extract<RoomAction, "invite" | "join" | "leave" | "kick" | "ban" | "unban" | "set_role">;
  /** Acts on the caller (join, leave) rather than on a named user. */
  readonly self: boolean;
  /** The member's standing after the operation. */
  after(target: Membership | undefined, role: RoomRole | undefined): Membership;
  /**
   * True when the operation is already in effect: a retry, which writes
   * nothing. It is still refused to anyone the table would refuse it to.
   */
  settled(target: Membership | undefined, role: RoomRole | undefined): boolean;
  /** For a settled operation: a standing the operation applies to, to ask the table about the actor's right to it. */
  before(target: Membership | undefined): Membership | undefined;
}

const standing = (state: MembershipState, role = RoomRole.UNSPECIFIED): Membership => ({ state, role });
const is = (target: Membership | undefined, ...states: MembershipState[]): boolean => target !== undefined && states.includes(target.state);
/** The lowest standing a kick or a ban applies to: any admin may act on it. */
const ANY_MEMBER = standing(MembershipState.JOINED, RoomRole.READ_ONLY);

const OPERATIONS: Readonly<Record<MembershipOperation["action"], MembershipOperation>> = {
  invite: {
    action: "invite",
    self: false,
    after: () => standing(MembershipState.INVITED),
    settled: (target) => is(target, MembershipState.INVITED),
    before: () => undefined,
  },
  join: {
    action: "join",
    self: true,
    after: () => standing(MembershipState.JOINED, RoomRole.MEMBER),
    settled: (target) => is(target, MembershipState.JOINED),
    before: (target) => target,
  },
  leave: {
    action: "leave",
    self: true,
    after: () => standing(MembershipState.LEFT),
    settled: (target) => is(target, MembershipState.LEFT, MembershipState.KICKED),
    before: () => standing(MembershipState.JOINED, RoomRole.MEMBER),
  },
  kick: {
    action: "kick",
    self: false,
    after: () => standing(MembershipState.KICKED),
    settled: (target) => is(target, MembershipState.KICKED),
    before: () => ANY_MEMBER,
  },
  ban: {
    action: "ban",
    self: false,
    after: () => standing(MembershipState.BANNED),
    settled: (target) => is(target, MembershipState.BANNED),
    before: () => ANY_MEMBER,
  },
  unban: {
    action: "unban",
    self: false,
    // An unbanned user stands as one who left: they may join where the kind allows.
    after: () => standing(MembershipState.LEFT),
    settled: (target) => !is(target, MembershipState.BANNED),
    before: () => standing(MembershipState.BANNED),
  },
  set_role: {
    action: "set_role",
    self: false,
    after: (_target, role) => standing(MembershipState.JOINED, role ?? RoomRole.MEMBER),
    settled: (target, role) => is(target, MembershipState.JOINED) && target?.role === role,
    before: (target) => target,
  },
};

export function membershipOperation(action: MembershipOperation["action"]): MembershipOperation {
  return OPERATIONS[action];
}
