// How errors name the fields of a client frame: by their dotted proto path
// in the frame ("history.page_size", "subscribe.after_seq"), also when core
// refused a call the bridge made for the frame and named a field of its own
// request. And which room a request names.
import type { ClientFrame } from "../../../gen/parley/v1/frames_pb.js";
import { checkRoom, ParleyError, validationError } from "../../wire/index.js";

/** A request kind of ClientFrame as proto names it, or "route" for the route's own subscription (its `?after_seq=`). */
export type FrameRequestName =
  | "send"
  | "subscribe"
  | "unsubscribe"
  | "history"
  | "mark_read"
  | "list_notifications"
  | "ack_notifications"
  | "subscribe_notifications"
  | "create_room"
  | "get_room"
  | "update_room"
  | "invite"
  | "join"
  | "leave"
  | "kick"
  | "ban"
  | "unban"
  | "set_role"
  | "list_members"
  | "list_my_rooms"
  | "room_events"
  | "route";

/**
 * The frame field a field of core's request stands for. History, mark_read,
 * the notification and room requests are core's own request messages, so
 * their fields only gain the prefix; a send and a subscribe are carried by other
 * requests (SendStreamRequest, ListMessagesRequest), whose fields are mapped
 * by name. A core field with no counterpart in the frame (set by the bridge)
 * names the request as a whole.
 */
function frameFieldOf(request: FrameRequestName, coreField: string): string {
  const name = /^[a-z_]+/.exec(coreField)?.[0] ?? "";
  switch (request) {
    case "send":
      switch (name) {
        case "room":
        case "body":
        case "client_msg_id":
          return `send.${coreField}`;
        case "traceparent":
          return "traceparent";
        default:
          return "send";
      }
    case "subscribe":
      switch (name) {
        case "room":
          return "subscribe.room";
        // The replay reads pages after the resume point: their cursor is after_seq.
        case "after_seq":
        case "cursor_seq":
          return "subscribe.after_seq";
        default:
          return "subscribe";
      }
    case "route":
      return name === "cursor_seq" ? "after_seq" : coreField;
    case "unsubscribe":
    case "history":
    case "mark_read":
    case "list_notifications":
    case "ack_notifications":
    case "subscribe_notifications":
    case "create_room":
    case "get_room":
    case "update_room":
    case "invite":
    case "join":
    case "leave":
    case "kick":
    case "ban":
    case "unban":
    case "set_role":
    case "list_members":
    case "list_my_rooms":
    case "room_events":
      return `${request}.${coreField}`;
  }
}

/**
 * `error` with its field named as the client knows it: the path in the
 * frame of `request`. An error that names no field, or already a path in
 * this frame, is returned as it is.
 */
export function inFrameTerms(error: ParleyError, request: FrameRequestName): ParleyError {
  const coreField = error.field;
  if (coreField === undefined || (request !== "route" && coreField.startsWith(`${request}.`))) return error;
  const field = frameFieldOf(request, coreField);
  if (field === coreField) return error;
  const message = error.message.startsWith(`${coreField}: `) ? `${field}: ${error.message.slice(coreField.length + 2)}` : error.message;
  return new ParleyError(error.category, message, {
    field,
    cause: error.cause,
    retryable: error.retryable,
    retryAfterMs: error.retryAfterMs,
    context: error.context,
  });
}

/** The room a request names, checked; the route's room when it names none (throws when the route has none either). */
export function roomOr(room: string, field: string, routeRoom: string | undefined): string {
  if (room !== "") return checkRoom(room, field);
  if (routeRoom === undefined) throw validationError(field, "is required on this route");
  return routeRoom;
}

/** The room a request names, for the frame span (undefined when it names none). */
export function roomOfRequest(frame: ClientFrame): string | undefined {
  const request = frame.request;
  switch (request.case) {
    case "send":
    case "subscribe":
    case "unsubscribe":
    case "history":
    case "markRead":
    case "createRoom":
    case "getRoom":
    case "updateRoom":
    case "invite":
    case "join":
    case "leave":
    case "kick":
    case "ban":
    case "unban":
    case "setRole":
    case "listMembers":
    case "roomEvents":
      return request.value.room === "" ? undefined : request.value.room;
    case "listMyRooms":
    case "listNotifications":
    case "ackNotifications":
    case "subscribeNotifications":
    case "ping":
    case "refreshToken":
    case undefined:
      return undefined;
  }
}
