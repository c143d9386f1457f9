// Who may do what in a room: one decision from the room's kind, the actor's
// membership and, for actions on another member, the target's. Every
// permission check of core asks this table; nothing else decides.
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";

/** Everything a user can try to do in or to a room. */
export type RoomAction =
  | "read" // history, subscribe, room info, member list
  | "send"
  | "mark_read"
  | "join"
  | "leave"
  | "invite"
  | "kick"
  | "ban"
  | "unban"
  | "set_role"
  | "update_room" // name, topic, settings
  | "change_kind"; // public ↔ private

export const ROOM_ACTIONS: readonly RoomAction[] = ["read", "send", "mark_read", "join", "leave", "invite", "kick", "ban", "unban", "set_role", "update_room", "change_kind"];

/** A user's standing in a room; `role` matters only while JOINED. */
export interface Membership {
  readonly state: MembershipState;
  readonly role: RoomRole;
}

/** The member an action is aimed at (kick, ban, set_role, ...), the role set_role gives, the kind change_kind sets. */
export interface Target {
  readonly membership: Membership | undefined;
  readonly newRole?: RoomRole;
  readonly newKind?: RoomKind;
}

export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

const ALLOWED: Decision = { allowed: true };
const refuse = (reason: string): Decision => ({ allowed: false, reason });

/** Roles in order of power; each may do what the ones below it may. */
const RANK: Readonly<Record<RoomRole, number>> = {
  [RoomRole.UNSPECIFIED]: 0,
  [RoomRole.READ_ONLY]: 1,
  [RoomRole.MEMBER]: 2,
  [RoomRole.ADMIN]: 3,
  [RoomRole.OWNER]: 4,
};

const KINDS: ReadonlySet<number> = new Set([RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT]);
const STATES: ReadonlySet<number> = new Set([MembershipState.INVITED, MembershipState.JOINED, MembershipState.LEFT, MembershipState.KICKED, MembershipState.BANNED]);

/** A number outside an enum (a newer writer, a corrupt row) decides nothing: it is refused, never compared. */
function known(member: Membership | undefined): boolean {
  return member === undefined || (STATES.has(member.state) && member.role in RANK);
}

/** Actions that reshape a room's membership or settings: none of them exists in a direct room. */
const MANAGING: ReadonlySet<RoomAction> = new Set<RoomAction>(["invite", "kick", "ban", "unban", "set_role", "update_room", "change_kind"]);

function joined(member: Membership | undefined): boolean {
  return member?.state === MembershipState.JOINED;
}

/** A joined member's rank; 0 for anyone else (their role does not count). */
function rank(member: Membership | undefined): number {
  return member !== undefined && joined(member) ? RANK[member.role] : 0;
}

function atLeast(member: Membership | undefined, role: RoomRole): boolean {
  return rank(member) >= RANK[role];
}

/**
 * Decides whether `actor` (undefined: no membership record) may do `action`
 * in a room of `kind`. Actions on another member also need `target`.
 */
export function decide(kind: RoomKind, actor: Membership | undefined, action: RoomAction, target?: Target): Decision {
  if (!KINDS.has(kind)) return refuse("the room has no known kind");
  if (!known(actor) || !known(target?.membership)) return refuse("a membership holds an unknown state or role");
  if (target?.newRole !== undefined && !(target.newRole in RANK)) return refuse("an unknown role");
  if (actor?.state === MembershipState.BANNED) return refuse("banned from this room");
  if (kind === RoomKind.DIRECT && MANAGING.has(action)) return refuse("a direct conversation has a fixed set of members and no settings");
  switch (action) {
    case "read":
      return kind === RoomKind.PUBLIC || joined(actor) ? ALLOWED : refuse("only members read this room");
    case "send":
      if (!joined(actor)) return refuse("join the room to send");
      return atLeast(actor, RoomRole.MEMBER) ? ALLOWED : refuse("read-only members may not send");
    case "mark_read":
      return joined(actor) ? ALLOWED : refuse("only members have a read position");
    case "join":
      if (joined(actor) || kind === RoomKind.PUBLIC || actor?.state === MembershipState.INVITED) return ALLOWED;
      // A direct conversation's fixed set of users may come back after leaving it.
      if (kind === RoomKind.DIRECT && actor?.state === MembershipState.LEFT) return ALLOWED;
      return refuse(kind === RoomKind.DIRECT ? "only the conversation's own users join it" : "joining this room needs an invitation");
    case "leave":
      return joined(actor) || actor?.state === MembershipState.INVITED ? ALLOWED : refuse("not a member");
    case "invite":
      return decideInvite(kind, actor, target?.membership);
    case "kick":
      return decideOnMember(actor, target?.membership, "kick", (t) => joined(t) || t?.state === MembershipState.INVITED);
    case "ban":
      // A user who never joined may be banned too, to keep them out.
      return decideOnMember(actor, target?.membership, "ban", (t) => t?.state !== MembershipState.BANNED);
    case "unban":
      if (!atLeast(actor, RoomRole.ADMIN)) return refuse("only admins and owners unban");
      return target?.membership?.state === MembershipState.BANNED ? ALLOWED : refuse("the user is not banned");
    case "set_role":
      return decideSetRole(actor, target);
    case "update_room":
      return atLeast(actor, RoomRole.ADMIN) ? ALLOWED : refuse("only admins and owners change the room");
    case "change_kind":
      if (!atLeast(actor, RoomRole.OWNER)) return refuse("only owners change the room's kind");
      // A group never becomes a direct conversation (those are one per user set).
      return target?.newKind === RoomKind.PUBLIC || target?.newKind === RoomKind.PRIVATE ? ALLOWED : refuse("a room's kind may become public or private only");
  }
}

function decideInvite(kind: RoomKind, actor: Membership | undefined, target: Membership | undefined): Decision {
  const needed = kind === RoomKind.PUBLIC ? RoomRole.MEMBER : RoomRole.ADMIN;
  if (!atLeast(actor, needed)) return refuse(kind === RoomKind.PUBLIC ? "only members invite" : "only admins and owners invite");
  if (target?.state === MembershipState.BANNED) return refuse("the user is banned: unban first");
  if (joined(target)) return refuse("the user is already a member");
  return ALLOWED;
}

/** Kick and ban: admins and owners, on users of a lower role than their own. */
function decideOnMember(actor: Membership | undefined, target: Membership | undefined, verb: string, applies: (target: Membership | undefined) => boolean): Decision {
  if (!atLeast(actor, RoomRole.ADMIN)) return refuse(`only admins and owners ${verb}`);
  if (!applies(target)) return refuse(`the user cannot be ${verb === "ban" ? "banned" : "kicked"} in their state`);
  if (rank(target) >= rank(actor)) return refuse(`may not ${verb} a member of an equal or higher role`);
  return ALLOWED;
}

/**
 * Admins change the roles of lower members to roles below their own; owners
 * change anyone's role (other owners' included) to any role. That a room
 * keeps at least one owner is a count this table cannot see: the room
 * service refuses the last owner's demotion (and leave) itself.
 */
function decideSetRole(actor: Membership | undefined, target: Target | undefined): Decision {
  if (!atLeast(actor, RoomRole.ADMIN)) return refuse("only admins and owners change roles");
  const newRole = target?.newRole ?? RoomRole.UNSPECIFIED;
  if (newRole === RoomRole.UNSPECIFIED) return refuse("a role is required");
  if (!joined(target?.membership)) return refuse("only members have a role");
  if (atLeast(actor, RoomRole.OWNER)) return ALLOWED;
  if (rank(target?.membership) >= rank(actor)) return refuse("may not change the role of a member of an equal or higher role");
  if (RANK[newRole] >= rank(actor)) return refuse("may not grant a role equal to or above one's own");
  return ALLOWED;
}
