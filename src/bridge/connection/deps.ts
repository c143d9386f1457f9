// What a connection is given by the bridge around it, and what it reports
// back. Kept apart from the session so that the connection's modules can
// name these types without importing the session that builds them.
import type { WebSocket } from "ws";
import type { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import type { NotificationService } from "../../../gen/parley/v1/notifications_pb.js";
import type { RoomService } from "../../../gen/parley/v1/room_service_pb.js";
import type { FrameFormat } from "../../wire/index.js";
import type { Identity, Logger, ServiceClient } from "../../runtime/index.js";
import type { RoomFeeds } from "../core-link/room-feeds.js";
import type { SendLink } from "../core-link/send-link.js";
import type { UserBudget } from "../admission/user-budgets.js";
import type { ConnectionLimits } from "../limits.js";
import type { RouteMatch } from "../routes.js";
import type { TurnScheduler } from "./turn-scheduler.js";

/** What a connection needs from the bridge around it. */
export interface ConnectionDeps {
  readonly id: string;
  readonly socket: WebSocket;
  readonly identity: Identity;
  /** The user's own token: every core call made for this connection carries it. */
  readonly token: string;
  readonly route: RouteMatch;
  /** Resume point from the URL (`after_seq`), for the route's own subscription. */
  readonly afterSeq: bigint | undefined;
  /** Format of frames pushed before the client sent any (from `?format=`). */
  readonly initialFormat: FrameFormat;
  readonly chat: ServiceClient<typeof ChatService>;
  readonly notifications: ServiceClient<typeof NotificationService>;
  readonly rooms: ServiceClient<typeof RoomService>;
  readonly sendLink: SendLink;
  readonly roomFeeds: RoomFeeds;
  /** Who a token is, as core verified it (for `refresh_token`). */
  readonly identities: { verify(token: string): Promise<Identity> };
  readonly limits: ConnectionLimits;
  /** What the connection's user shares with their other connections on this bridge (send rate, subscriptions). */
  readonly budget: UserBudget;
  /** The bridge's turns, shared by every connection's frame intake. */
  readonly turns: TurnScheduler;
  readonly logger: Logger;
  /** Counts and timings, for metrics. */
  readonly observe?: ConnectionObserver;
  /** Called once, when the connection has closed and cleaned up. */
  readonly onClosed: () => void;
}

/** Counts and timings of a connection, for metrics. */
export interface ConnectionObserver {
  frameIn?(kind: string): void;
  frameOut?(kind: string): void;
  error?(category: string): void;
  sendAnswered?(latencyMs: number, ok: boolean): void;
}
