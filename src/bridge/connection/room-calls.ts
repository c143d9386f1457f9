// The room operations of a client frame, each as the RoomService call of the
// same name and the server frame that answers it. The frames carry
// RoomService's own request messages, so nothing is translated: the bridge
// adds only the user's token (in the call options) and relays core's answer.
import type { ClientFrame } from "../../../gen/parley/v1/frames_pb.js";
import type { RoomService } from "../../../gen/parley/v1/room_service_pb.js";
import type { CallOptions, ServiceClient } from "../../runtime/index.js";
import type { FrameRequestName } from "./frame-fields.js";
import type { ServerFrameKind } from "./writer.js";

type RoomRequestCase = "createRoom" | "getRoom" | "updateRoom" | "invite" | "join" | "leave" | "kick" | "ban" | "unban" | "setRole" | "listMembers" | "listMyRooms";

/** A ClientFrame request that is a RoomService call. */
export type RoomRequest = Extract<ClientFrame["request"], { case: RoomRequestCase }>;

/** One room operation: its name in the frame (for error fields), and the call that produces its answer. */
export interface RoomCall {
  readonly name: FrameRequestName;
  readonly call: (options: CallOptions) => Promise<ServerFrameKind>;
}

/** The RoomService call for `request`. */
export function roomCall(request: RoomRequest, rooms: ServiceClient<typeof RoomService>): RoomCall {
  switch (request.case) {
    case "createRoom": {
      const value = request.value;
      return { name: "create_room", call: async (options) => ({ case: "createRoom", value: await rooms.createRoom(value, options) }) };
    }
    case "getRoom": {
      const value = request.value;
      return { name: "get_room", call: async (options) => ({ case: "getRoom", value: await rooms.getRoom(value, options) }) };
    }
    case "updateRoom": {
      const value = request.value;
      return { name: "update_room", call: async (options) => ({ case: "updateRoom", value: await rooms.updateRoom(value, options) }) };
    }
    case "invite": {
      const value = request.value;
      return { name: "invite", call: async (options) => ({ case: "invite", value: await rooms.invite(value, options) }) };
    }
    case "join": {
      const value = request.value;
      return { name: "join", call: async (options) => ({ case: "join", value: await rooms.join(value, options) }) };
    }
    case "leave": {
      const value = request.value;
      return { name: "leave", call: async (options) => ({ case: "leave", value: await rooms.leave(value, options) }) };
    }
    case "kick": {
      const value = request.value;
      return { name: "kick", call: async (options) => ({ case: "kick", value: await rooms.kick(value, options) }) };
    }
    case "ban": {
      const value = request.value;
      return { name: "ban", call: async (options) => ({ case: "ban", value: await rooms.ban(value, options) }) };
    }
    case "unban": {
      const value = request.value;
      return { name: "unban", call: async (options) => ({ case: "unban", value: await rooms.unban(value, options) }) };
    }
    case "setRole": {
      const value = request.value;
      return { name: "set_role", call: async (options) => ({ case: "setRole", value: await rooms.setRole(value, options) }) };
    }
    case "listMembers": {
      const value = request.value;
      return { name: "list_members", call: async (options) => ({ case: "listMembers", value: await rooms.listMembers(value, options) }) };
    }
    case "listMyRooms": {
      const value = request.value;
      return { name: "list_my_rooms", call: async (options) => ({ case: "listMyRooms", value: await rooms.listMyRooms(value, options) }) };
    }
  }
}
