import type { ListRoomEventsResponse } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import type { ServerFrame } from "../../gen/parley/v1/frames_pb.js";
import type {
  BanResponse,
  CreateRoomResponse,
  InviteResponse,
  JoinResponse,
  KickResponse,
  LeaveResponse,
  ListMembersResponse,
  ListMyRoomsResponse,
  Room,
  SetRoleResponse,
  UnbanResponse,
} from "../../gen/parley/v1/room_service_pb.js";
import { type MembershipState, RoomKind, type RoomRole } from "../../gen/parley/v1/rooms_pb.js";
import { ParleyClientError } from "./client-error.js";
import type { FrameChannel, FrameRequest } from "./frame-channel.js";
import { randomId } from "./random-id.js";

export interface CreateRoomOptions {
  /** PUBLIC, PRIVATE or DIRECT. */
  readonly kind: RoomKind;
  /**
   * The room's id. Unset for a public or private room: the client picks a
   * random one, so that a create resent after a reconnect finds the room it
   * made instead of making a second one. Must be unset for DIRECT.
   */
  readonly room?: string;
  readonly name?: string;
  readonly topic?: string;
  /** Users invited at creation; for DIRECT, the other users of the conversation. */
  readonly members?: readonly string[];
}

/** The answer of every membership operation: the member's standing after it, and the event it wrote (unset when it was already in effect). */
export type MembershipResult = InviteResponse | JoinResponse | LeaveResponse | KickResponse | BanResponse | UnbanResponse | SetRoleResponse;

/**
 * Rooms as RoomService sees them: creating, describing and changing them,
 * and who is in them. Each call is one request frame answered by the
 * server; it is resent after a reconnect until answered (a change already
 * in effect is answered without writing anything, so a resend is harmless)
 * and fails with TIMEOUT after `requestTimeoutMs`. Refusals reject with a
 * ParleyClientError (PERMISSION_DENIED, the same for a room that does not
 * exist as for one the user may not see; VALIDATION naming the field).
 *
 * Following a room's messages and events is `client.join(room)`; `join`
 * here is the membership.
 */
export class RoomOperations {
  constructor(private readonly client: FrameChannel) {}

  /** Creates a room (the user is its owner), or opens the direct conversation with `members`. */
  async createRoom(options: CreateRoomOptions): Promise<CreateRoomResponse> {
    const room = options.room ?? (options.kind === RoomKind.DIRECT ? "" : `room-${randomId()}`);
    const value = { kind: options.kind, room, name: options.name ?? "", topic: options.topic ?? "", members: [...(options.members ?? [])] };
    return answer(await this.client.request({ case: "createRoom", value }), "createRoom");
  }

  /** The room as the user sees it: kind, name, topic, head, their state, role, read position and unread count. */
  async getRoom(room: string): Promise<Room> {
    return roomOf(answer(await this.client.request({ case: "getRoom", value: { room } }), "getRoom"));
  }

  /** Changes what is given of name, topic and kind (public ↔ private). */
  async updateRoom(room: string, changes: { readonly name?: string; readonly topic?: string; readonly kind?: RoomKind }): Promise<Room> {
    return roomOf(answer(await this.client.request({ case: "updateRoom", value: { room, ...changes } }), "updateRoom"));
  }

  invite(room: string, user: string): Promise<InviteResponse> {
    return this.#membership({ case: "invite", value: { room, user } }, "invite");
  }

  /** Joins the room as a member (following it is `client.join`). */
  join(room: string): Promise<JoinResponse> {
    return this.#membership({ case: "join", value: { room } }, "join");
  }

  /** Leaves the room, or declines an invitation. */
  leave(room: string): Promise<LeaveResponse> {
    return this.#membership({ case: "leave", value: { room } }, "leave");
  }

  kick(room: string, user: string, reason = ""): Promise<KickResponse> {
    return this.#membership({ case: "kick", value: { room, user, reason } }, "kick");
  }

  ban(room: string, user: string, reason = ""): Promise<BanResponse> {
    return this.#membership({ case: "ban", value: { room, user, reason } }, "ban");
  }

  unban(room: string, user: string): Promise<UnbanResponse> {
    return this.#membership({ case: "unban", value: { room, user } }, "unban");
  }

  setRole(room: string, user: string, role: RoomRole): Promise<SetRoleResponse> {
    return this.#membership({ case: "setRole", value: { room, user, role } }, "setRole");
  }

  /** One page of the room's members by user id (JOINED and INVITED unless `states` says otherwise). */
  async listMembers(room: string, options: { readonly states?: readonly MembershipState[]; readonly pageSize?: number; readonly afterUser?: string } = {}): Promise<ListMembersResponse> {
    const value = { room, states: [...(options.states ?? [])], pageSize: options.pageSize ?? 0, afterUser: options.afterUser ?? "" };
    return answer(await this.client.request({ case: "listMembers", value }), "listMembers");
  }

  /** One page of the rooms the user has joined or is invited to, most recently active first, each with its unread count. */
  async listMyRooms(options: { readonly pageSize?: number; readonly pageToken?: string } = {}): Promise<ListMyRoomsResponse> {
    const value = { pageSize: options.pageSize ?? 0, pageToken: options.pageToken ?? "" };
    return answer(await this.client.request({ case: "listMyRooms", value }), "listMyRooms");
  }

  /**
   * A page of the room's whole log (messages, membership and settings
   * changes, no gap in seq): the newest first by default (before
   * `beforeSeq`, 0 = the newest); with `afterSeq`, ascending after it.
   */
  async roomEvents(room: string, options: { readonly beforeSeq?: bigint; readonly afterSeq?: bigint; readonly pageSize?: number } = {}): Promise<ListRoomEventsResponse> {
    const forward = options.afterSeq !== undefined;
    const value = {
      room,
      direction: forward ? ListDirection.FORWARD : ListDirection.BACKWARD,
      cursorSeq: forward ? options.afterSeq : (options.beforeSeq ?? 0n),
      pageSize: options.pageSize ?? 50,
    };
    return answer(await this.client.request({ case: "roomEvents", value }), "roomEvents");
  }

  async #membership<K extends "invite" | "join" | "leave" | "kick" | "ban" | "unban" | "setRole">(request: Extract<FrameRequest, { case: K }>, kind: K): Promise<Answer<K>> {
    return answer(await this.client.request(request), kind);
  }
}

type Answer<K extends NonNullable<ServerFrame["kind"]["case"]>> = Extract<ServerFrame["kind"], { case: K }>["value"];

/** The value of the answer `frame` must be, or an INTERNAL error when it is another (a server that does not follow the protocol). */
function answer<K extends NonNullable<ServerFrame["kind"]["case"]>>(frame: ServerFrame, kind: K): Answer<K> {
  if (frame.kind.case !== kind) throw new ParleyClientError("INTERNAL", `unexpected answer ${frame.kind.case ?? "none"} to ${kind}`);
  return frame.kind.value as Answer<K>;
}

function roomOf(response: { readonly room?: Room }): Room {
  if (response.room === undefined) throw new ParleyClientError("INTERNAL", "an answer without its room");
  return response.room;
}

