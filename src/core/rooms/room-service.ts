import { createHash, randomUUID } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { type Member, MemberSchema, type Room, RoomSchema, type RoomService } from "../../../gen/parley/v1/room_service_pb.js";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { create } from "@bufbuild/protobuf";
import { CALLER, type CallContext, ROOMS_ADMIN_SCOPE, type ServiceHandlers, USER_ID } from "../../runtime/index.js";
import {
  checkRoom,
  checkText,
  MAX_DIRECT_OTHERS,
  MAX_REASON_CODE_POINTS,
  MAX_ROOM_NAME_CODE_POINTS,
  MAX_ROOM_TOPIC_CODE_POINTS,
  ParleyError,
  validationError,
} from "../../wire/index.js";
import { ACT_AS_HEADER } from "../access/act-as-guard.js";
import { assertAllowed, notVisible, readStanding, type RoomStanding } from "../access/room-access.js";
import { decide, type Membership } from "../access/permissions.js";
import type { RoomChange } from "../store/room-event-rows.js";
import { timestampFromPg } from "../store/pg-timestamp.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { type MemberRecord, type RoomRecord, type RoomStore } from "./room-store.js";
import { myRooms, roomSummary } from "./room-summaries.js";
import { membershipOperation, type MembershipOperation } from "./membership-operations.js";

/** Quotas on rooms; each refusal names the limit. */
export interface RoomLimits {
  /** Rooms one user may create (RATE_LIMITED beyond). */
  readonly maxRoomsCreatedPerUser: number;
  /** Joined members of one room (PERMISSION_DENIED beyond). */
  readonly maxMembersPerRoom: number;
  /** Invitations pending in one room (PERMISSION_DENIED beyond): invitations alone never fill a room. */
  readonly maxInvitationsPerRoom: number;
  /** Rooms one user may have joined, direct rooms others opened with them aside (PERMISSION_DENIED beyond). */
  readonly maxRoomsPerUser: number;
  /** Invitations one user may hold (PERMISSION_DENIED beyond): nobody floods another's room list. */
  readonly maxInvitationsPerUser: number;
}

export const DEFAULT_ROOM_LIMITS: RoomLimits = {
  maxRoomsCreatedPerUser: 1_000,
  maxMembersPerRoom: 10_000,
  maxInvitationsPerRoom: 1_000,
  maxRoomsPerUser: 10_000,
  maxInvitationsPerUser: 1_000,
};

/** Users a CreateRoom may name (invited, or a direct room's users): more are invited one call at a time. */
const MAX_CREATE_MEMBERS = 100;

export interface RoomServiceDeps {
  readonly unitOfWork: UnitOfWork;
  readonly store: RoomStore;
  /** Receives each committed event, in seq order per room (the room's followers). */
  readonly published: (events: readonly RoomEvent[]) => void;
  readonly limits: RoomLimits;
  /**
   * The development policy of rooms on first use: a room that does not exist
   * is described as ChatService reads it, an empty public room.
   */
  readonly implicitRooms?: boolean;
}


const MEMBER_STATES = [MembershipState.INVITED, MembershipState.JOINED];
/** Every direct room's id starts so (directRoomId); no other room's may. */
const DIRECT_PREFIX = "dm:";
const DEFAULT_MEMBERS_PAGE = 100;
const MAX_MEMBERS_PAGE = 500;
const DEFAULT_ROOMS_PAGE = 50;
const MAX_ROOMS_PAGE = 200;

/** parley.v1.RoomService: rooms and their members; every change an event of the room's log. */
export function roomServiceHandlers(deps: RoomServiceDeps): ServiceHandlers<typeof RoomService> {
  const { unitOfWork, store, limits } = deps;

  /** A write in one transaction; the events it appended are published once it has committed. */
  const write = async <T>(label: string, context: Record<string, string>, work: (em: EntityManager, events: RoomEvent[]) => Promise<T>): Promise<T> => {
    let events: RoomEvent[] = [];
    const result = await unitOfWork.transaction({ label, context }, (em) => {
      // A retried attempt starts over: only the committed one's events count.
      events = [];
      return work(em, events);
    });
    if (events.length > 0) deps.published(events);
    return result;
  };

  /** Appends `change` to the room's log as `actor`; the event goes to `events`. */
  const append = async (em: EntityManager, events: RoomEvent[], room: string, actor: string, change: RoomChange): Promise<RoomEvent> => {
    const { seq, createdAt } = await store.appendEvent(em, room, actor, change);
    const event: RoomEvent = {
      $typeName: "parley.v1.RoomEvent",
      room,
      seq,
      createdAt: timestampFromPg(createdAt),
      actor,
      event: change,
    };
    events.push(event);
    return event;
  };

  const standingOf = (room: RoomRecord, member: MemberRecord | undefined): RoomStanding => ({ kind: room.kind, headSeq: room.headSeq, member });

  const denied = (message: string) => new ParleyError(ErrorCategory.PERMISSION_DENIED, message, { retryable: false });

  /** The quota of rooms `user` may join. */
  const assertUserMayJoin = async (em: EntityManager, user: string): Promise<void> => {
    if ((await store.countJoinedRoomsOf(em, user)) >= limits.maxRoomsPerUser) {
      throw denied(`${user} has joined ${limits.maxRoomsPerUser} rooms, the most a user may join`);
    }
  };

  /** The quota of invitations `user` may hold. */
  const assertUserMayBeInvited = async (em: EntityManager, user: string): Promise<void> => {
    if ((await store.countInvitationsOf(em, user)) >= limits.maxInvitationsPerUser) {
      throw denied(`${user} holds ${limits.maxInvitationsPerUser} invitations, the most a user may hold`);
    }
  };

  /** Before `user` joins `room`: the room's and the user's quotas of joined rooms. */
  const assertMayJoin = async (em: EntityManager, room: string, user: string): Promise<void> => {
    if ((await store.countMembers(em, room, [MembershipState.JOINED])) >= limits.maxMembersPerRoom) {
      throw denied(`the room has ${limits.maxMembersPerRoom} members, the most a room may have`);
    }
    await assertUserMayJoin(em, user);
  };

  /** Before `user` is invited to `room`: the invitations pending there, and those `user` holds. */
  const assertMayInvite = async (em: EntityManager, room: string, user: string): Promise<void> => {
    if ((await store.countMembers(em, room, [MembershipState.INVITED])) >= limits.maxInvitationsPerRoom) {
      throw denied(`the room has ${limits.maxInvitationsPerRoom} pending invitations, the most a room may have`);
    }
    await assertUserMayBeInvited(em, user);
  };

  /** One membership operation (invite, join, leave, kick, ban, unban, set role), in the room's order. */
  const changeMembership = (operation: MembershipOperation, request: { room: string; user?: string; role?: RoomRole; reason?: string }, context: CallContext) => {
    const actor = actingUser(context);
    const room = checkRoom(request.room);
    const targetUser = operation.self ? actor : checkUser(request.user ?? "", "user");
    const role = operation.action === "set_role" ? checkRole(request.role ?? RoomRole.UNSPECIFIED) : undefined;
    const reason = checkText(request.reason ?? "", "reason", { required: false, maxCodePoints: MAX_REASON_CODE_POINTS });
    return write(`rooms.${operation.action}`, { room, user: actor }, async (em, events) => {
      const record = await store.lockRoom(em, room);
      if (record === undefined) throw notVisible();
      const actorMember = await store.member(em, room, actor);
      const target = targetUser === actor ? actorMember : await store.member(em, room, targetUser);
      const standing = standingOf(record, actorMember);
      if (operation.settled(target, role)) {
        // Already in effect: allowed if the change itself would be, and nothing is written.
        assertAllowed(standing, operation.action, { membership: operation.before(target), newRole: role });
        return { member: toMember(targetUser, target), event: undefined };
      }
      assertAllowed(standing, operation.action, { membership: target, newRole: role });
      const after = operation.after(target, role);
      await assertKeepsAnOwner(em, record, target, after);
      if (after.state === MembershipState.JOINED && target?.state !== MembershipState.JOINED) await assertMayJoin(em, room, targetUser);
      if (after.state === MembershipState.INVITED) await assertMayInvite(em, room, targetUser);
      const event = await append(em, events, room, actor, {
        case: "membership",
        value: {
          $typeName: "parley.v1.MembershipChange",
          user: targetUser,
          state: after.state,
          role: after.role,
          previousState: target?.state ?? MembershipState.UNSPECIFIED,
          previousRole: target?.role ?? RoomRole.UNSPECIFIED,
          reason,
        },
      });
      const member = await store.setMembership(em, room, targetUser, after);
      return { member: toMember(targetUser, member), event };
    });
  };

  /** A room keeps an owner while it has other members: its last owner hands the role on before leaving or stepping down. */
  const assertKeepsAnOwner = async (em: EntityManager, room: RoomRecord, target: Membership | undefined, after: Membership): Promise<void> => {
    const wasOwner = target?.state === MembershipState.JOINED && target.role === RoomRole.OWNER;
    const staysOwner = after.state === MembershipState.JOINED && after.role === RoomRole.OWNER;
    if (!wasOwner || staysOwner || room.kind === RoomKind.DIRECT) return;
    if ((await store.countOwners(em, room.id)) > 1) return;
    // Invited users count: once they join, someone must be able to manage the room.
    if (after.state === MembershipState.JOINED || (await store.countMembers(em, room.id, [MembershipState.JOINED, MembershipState.INVITED])) > 1) {
      throw new ParleyError(ErrorCategory.PERMISSION_DENIED, "the room's last owner must make another member owner first", { retryable: false });
    }
  };

  const summary = async (em: EntityManager, user: string, room: string): Promise<Room> => {
    const found = await roomSummary(em, user, room);
    if (found === undefined) throw notVisible();
    return found;
  };

  return {
    async createRoom(request, context) {
      const actor = actingUser(context);
      const plan = planCreation(actor, request);
      return write("rooms.create", { room: plan.id, user: actor }, async (em, events) => {
        const existing = await store.lockRoom(em, plan.id);
        if (existing !== undefined) {
          // A direct room is found by its users; a group room again by its creator (a retried create).
          const again =
            plan.kind === RoomKind.DIRECT
              ? existing.kind === RoomKind.DIRECT && (await store.member(em, plan.id, actor)) !== undefined
              : existing.createdBy === actor && existing.kind === plan.kind;
          const found = again ? await summary(em, actor, plan.id) : undefined;
          // A creator who may no longer read their group room (banned, kicked, left) is told only that the id is taken.
          if (found === undefined || (plan.kind !== RoomKind.DIRECT && !decide(found.kind, summaryStanding(found).member, "read").allowed)) {
            throw new ParleyError(ErrorCategory.PERMISSION_DENIED, "a room with this id exists", { field: "room", retryable: false });
          }
          return { room: found, existing: true };
        }
        if ((await store.countRoomsCreatedBy(em, actor)) >= limits.maxRoomsCreatedPerUser) {
          throw new ParleyError(ErrorCategory.RATE_LIMITED, `${actor} has created ${limits.maxRoomsCreatedPerUser} rooms, the most a user may create`, { retryable: false });
        }
        if (plan.kind === RoomKind.DIRECT && plan.members.length + 1 > limits.maxMembersPerRoom) {
          throw denied(`a room may have at most ${limits.maxMembersPerRoom} members`);
        }
        if (plan.kind !== RoomKind.DIRECT && plan.members.length > limits.maxInvitationsPerRoom) {
          throw denied(`a room may have at most ${limits.maxInvitationsPerRoom} pending invitations`);
        }
        // The room is new: only the users' own quotas apply. A direct room's other users are not counted (it is not theirs).
        await assertUserMayJoin(em, actor);
        if (plan.kind !== RoomKind.DIRECT) for (const user of plan.members) await assertUserMayBeInvited(em, user);
        await store.insertRoom(em, { id: plan.id, kind: plan.kind, name: plan.name, topic: plan.topic, createdBy: actor });
        await append(em, events, plan.id, actor, {
          case: "settings",
          value: { $typeName: "parley.v1.RoomSettingsChange", kind: plan.kind, name: plan.name, topic: plan.topic, created: true },
        });
        const direct = plan.kind === RoomKind.DIRECT;
        const joins: [string, Membership][] = [
          [actor, { state: MembershipState.JOINED, role: direct ? RoomRole.MEMBER : RoomRole.OWNER }],
          ...plan.members.map((user): [string, Membership] => [user, direct ? { state: MembershipState.JOINED, role: RoomRole.MEMBER } : { state: MembershipState.INVITED, role: RoomRole.UNSPECIFIED }]),
        ];
        for (const [user, membership] of joins) {
          await append(em, events, plan.id, actor, {
            case: "membership",
            value: {
              $typeName: "parley.v1.MembershipChange",
              user,
              state: membership.state,
              role: membership.role,
              previousState: MembershipState.UNSPECIFIED,
              previousRole: RoomRole.UNSPECIFIED,
              reason: "",
            },
          });
          await store.setMembership(em, plan.id, user, membership);
        }
        return { room: await summary(em, actor, plan.id), existing: false };
      });
    },

    async getRoom(request, context) {
      const actor = actingUser(context);
      const room = checkRoom(request.room);
      // Two statements, no transaction (every follow starts with a GetRoom:
      // a BEGIN and a COMMIT around them would be most of its round trips).
      // The standing is checked first, so that how long a refusal takes says
      // nothing of the room; the summary is one statement, one snapshot, and
      // its own standing is checked again, so that what it answers — the head
      // the bridge authorizes a follow up to, and the membership — is of one
      // moment, even when a kick landed between the two.
      return unitOfWork.read({ label: "rooms.get", context: { room, user: actor } }, async (em) => {
        const standing = await readStanding(em, room, actor);
        // Under rooms on first use a missing room reads as an empty public room, as ChatService reads it.
        if (standing === undefined && deps.implicitRooms === true) return { room: create(RoomSchema, { id: room, kind: RoomKind.PUBLIC }) };
        assertAllowed(standing, "read");
        const found = await summary(em, actor, room);
        assertAllowed(summaryStanding(found), "read");
        return { room: found };
      });
    },

    async updateRoom(request, context) {
      const actor = actingUser(context);
      const room = checkRoom(request.room);
      if (request.name === undefined && request.topic === undefined && request.kind === undefined) {
        throw validationError("name", "at least one of name, topic and kind must be set");
      }
      const name = request.name === undefined ? undefined : checkText(request.name, "name", { required: false, maxCodePoints: MAX_ROOM_NAME_CODE_POINTS });
      const topic = request.topic === undefined ? undefined : checkText(request.topic, "topic", { required: false, maxCodePoints: MAX_ROOM_TOPIC_CODE_POINTS });
      const kind = request.kind === undefined ? undefined : checkKind(request.kind);
      return write("rooms.update", { room, user: actor }, async (em, events) => {
        const record = await store.lockRoom(em, room);
        if (record === undefined) throw notVisible();
        const standing = standingOf(record, await store.member(em, room, actor));
        const next = { kind: kind ?? record.kind, name: name ?? record.name, topic: topic ?? record.topic };
        const kindChanges = next.kind !== record.kind;
        const settingsChange = next.name !== record.name || next.topic !== record.topic;
        if (kindChanges) assertAllowed(standing, "change_kind", { membership: undefined, newKind: next.kind });
        if (settingsChange || !kindChanges) assertAllowed(standing, "update_room");
        if (kindChanges || settingsChange) {
          await append(em, events, room, actor, { case: "settings", value: { $typeName: "parley.v1.RoomSettingsChange", ...next, created: false } });
          await store.updateSettings(em, room, next);
        }
        return { room: await summary(em, actor, room) };
      });
    },

    invite: (request, context) => changeMembership(membershipOperation("invite"), request, context),
    join: (request, context) => changeMembership(membershipOperation("join"), request, context),
    leave: (request, context) => changeMembership(membershipOperation("leave"), request, context),
    kick: (request, context) => changeMembership(membershipOperation("kick"), request, context),
    ban: (request, context) => changeMembership(membershipOperation("ban"), request, context),
    unban: (request, context) => changeMembership(membershipOperation("unban"), request, context),
    setRole: (request, context) => changeMembership(membershipOperation("set_role"), request, context),

    async listMembers(request, context) {
      const actor = actingUser(context);
      const room = checkRoom(request.room);
      const states = request.states.length === 0 ? MEMBER_STATES : request.states.map(checkState);
      const pageSize = checkPage(request.pageSize, "page_size", DEFAULT_MEMBERS_PAGE, MAX_MEMBERS_PAGE);
      const afterUser = request.afterUser === "" ? "" : checkUser(request.afterUser, "after_user");
      return unitOfWork.read({ label: "rooms.list-members", context: { room, user: actor } }, async (em) => {
        const record = await store.readRoom(em, room);
        assertAllowed(record && standingOf(record, await store.member(em, room, actor)), "read");
        const rows = await store.listMembers(em, room, states, afterUser, pageSize + 1);
        const page = rows.slice(0, pageSize);
        return { members: page.map((row) => toMember(row.user, row)), nextAfterUser: rows.length > pageSize ? (page.at(-1)?.user ?? "") : "" };
      });
    },

    async listMyRooms(request, context) {
      const actor = actingUser(context);
      const pageSize = checkPage(request.pageSize, "page_size", DEFAULT_ROOMS_PAGE, MAX_ROOMS_PAGE);
      return unitOfWork.read({ label: "rooms.list-mine", context: { user: actor } }, (em) => myRooms(em, actor, request.pageToken, pageSize));
    },
  };
}

/** What a CreateRoom request comes to, validated: the room's id, settings and other users. */
interface CreationPlan {
  readonly id: string;
  readonly kind: RoomKind;
  readonly name: string;
  readonly topic: string;
  /** Invited (group rooms) or joined (direct rooms) besides the creator. */
  readonly members: readonly string[];
}

function planCreation(actor: string, request: { kind: RoomKind; room: string; name: string; topic: string; members: readonly string[] }): CreationPlan {
  const kind = checkKind(request.kind, true);
  if (request.members.length > MAX_CREATE_MEMBERS) throw validationError("members", `must name at most ${MAX_CREATE_MEMBERS} users; invite more one at a time`);
  const members = [...new Set(request.members.map((user) => checkUser(user, "members")))].filter((user) => user !== actor);
  if (kind === RoomKind.DIRECT) {
    if (request.room !== "") throw validationError("room", "must be empty for a direct room: its id comes from its users");
    if (request.name !== "" || request.topic !== "") throw validationError(request.name === "" ? "topic" : "name", "must be empty for a direct room");
    if (members.length < 1 || members.length > MAX_DIRECT_OTHERS) throw validationError("members", `must name 1 to ${MAX_DIRECT_OTHERS} other users for a direct room`);
    return { id: directRoomId([actor, ...members]), kind, name: "", topic: "", members };
  }
  const id = request.room === "" ? `room-${randomUUID()}` : checkRoom(request.room);
  // Direct rooms' ids are theirs alone: a group room there would stand in the way of a conversation.
  if (id.startsWith(DIRECT_PREFIX)) throw validationError("room", `must not start with "${DIRECT_PREFIX}", which is kept for direct rooms`);
  return {
    id,
    kind,
    name: checkText(request.name, "name", { required: false, maxCodePoints: MAX_ROOM_NAME_CODE_POINTS }),
    topic: checkText(request.topic, "topic", { required: false, maxCodePoints: MAX_ROOM_TOPIC_CODE_POINTS }),
    members,
  };
}

/**
 * A direct room's id: the same for the same set of users, whoever opens it
 * and in whatever order they are named (user ids cannot hold a newline).
 */
export function directRoomId(users: readonly string[]): string {
  const set = [...new Set(users)].sort();
  return `${DIRECT_PREFIX}${createHash("sha256").update(set.join("\n")).digest("hex").slice(0, 40)}`;
}

/** The user a call acts for: the token's, or the one a service with ROOMS_ADMIN_SCOPE names. */
function actingUser(context: CallContext): string {
  const caller = context.values.get(CALLER);
  const actAs = context.header(ACT_AS_HEADER);
  if (actAs === undefined) return caller.user;
  if (!caller.scopes.has(ROOMS_ADMIN_SCOPE)) {
    throw new ParleyError(ErrorCategory.PERMISSION_DENIED, `acting for another user (${ACT_AS_HEADER}) needs the \`${ROOMS_ADMIN_SCOPE}\` token scope`, { retryable: false });
  }
  return checkUser(actAs, ACT_AS_HEADER);
}

function checkUser(user: string, field: string): string {
  if (user === "") throw validationError(field, "is required");
  if (!USER_ID.test(user)) throw validationError(field, "must be a user id: 1-128 characters, letters, digits, _ . : @ - (starting with a letter or digit)");
  return user;
}

function checkKind(kind: RoomKind, allowDirect = false): RoomKind {
  if (kind === RoomKind.PUBLIC || kind === RoomKind.PRIVATE || (allowDirect && kind === RoomKind.DIRECT)) return kind;
  throw validationError("kind", allowDirect ? "must be PUBLIC, PRIVATE or DIRECT" : "must be PUBLIC or PRIVATE");
}

function checkRole(role: RoomRole): RoomRole {
  if (role === RoomRole.READ_ONLY || role === RoomRole.MEMBER || role === RoomRole.ADMIN || role === RoomRole.OWNER) return role;
  throw validationError("role", "must be READ_ONLY, MEMBER, ADMIN or OWNER");
}

function checkState(state: MembershipState): MembershipState {
  if (state >= MembershipState.INVITED && state <= MembershipState.BANNED) return state;
  throw validationError("states", "must hold INVITED, JOINED, LEFT, KICKED or BANNED");
}

function checkPage(size: number, field: string, byDefault: number, max: number): number {
  if (size === 0) return byDefault;
  if (size < 0 || size > max) throw validationError(field, `must be between 1 and ${max} (0 for ${byDefault})`);
  return size;
}

function summaryStanding(room: Room): RoomStanding {
  return {
    kind: room.kind,
    headSeq: room.headSeq,
    member: room.myState === MembershipState.UNSPECIFIED ? undefined : { state: room.myState, role: room.myRole },
  };
}

function toMember(user: string, record: MemberRecord | Membership | undefined): Member {
  const known = record !== undefined && "readSeq" in record ? record : undefined;
  return create(MemberSchema, {
    user,
    state: record?.state ?? MembershipState.UNSPECIFIED,
    role: record?.state === MembershipState.JOINED ? record.role : RoomRole.UNSPECIFIED,
    readSeq: known?.readSeq ?? 0n,
    updatedAt: known ? timestampFromPg(known.updatedAt) : undefined,
  });
}

