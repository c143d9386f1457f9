/**
 * parley's TypeScript client for browsers and Node.js.
 *
 *   const client = new ParleyClient({ url: "ws://127.0.0.1:8080", token });
 *   const room = client.join("lobby", { onMessage: (m) => render(m) });
 *   const stored = await room.send("hello");          // resolves on the server's ack
 *   client.notifications.subscribe((n) => badge(n));
 *   const { room: team } = await client.rooms.createRoom({ kind: RoomKind.PRIVATE, name: "Team", members: ["bob"] });
 *
 * The client keeps one WebSocket (`/ws`), reconnects with backoff and full
 * jitter, resumes every room (its messages and membership and settings
 * events share one seq) and the inbox from the last seq it saw (no gap, no
 * duplicate), and resends sends that were not acknowledged or that the
 * server refused with a retryable error (its rate, an outage), in order,
 * with their original client_msg_id, so nothing is stored twice or out of
 * order. All frames are the generated protobuf types; nothing here declares
 * a wire shape.
 */
export { ParleyClient, type ParleyClientOptions, type ConnectionState } from "./parley-client.js";
export { ParleyClientError } from "./client-error.js";
export type { RoomHandle, JoinOptions } from "./rooms.js";
export type { CreateRoomOptions, MembershipResult, RoomOperations } from "./room-operations.js";
export type { NotificationsHandle } from "./notifications.js";
export type { SocketFactory, SocketLike } from "./socket.js";
export type { BackoffPolicy } from "../wire/index.js";
export type { ChatMessage, ListRoomEventsResponse, MembershipChange, RoomEvent, RoomSettingsChange } from "../../gen/parley/v1/chat_pb.js";
export type { CreateRoomResponse, ListMembersResponse, ListMyRoomsResponse, Member, Room } from "../../gen/parley/v1/room_service_pb.js";
export { MembershipState, RoomKind, RoomRole } from "../../gen/parley/v1/rooms_pb.js";
export type { Notification } from "../../gen/parley/v1/notifications_pb.js";
/** Limits the server enforces (room ids, body length, idempotency keys, page sizes), for checking input before it is sent. */
export { DEFAULT_PAGE_SIZE, IDEMPOTENCY_KEY, MAX_BODY_CODE_POINTS, MAX_PAGE_SIZE, ROOM_ID } from "../wire/index.js";
