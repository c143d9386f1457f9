import type { Channel } from "@grpc/grpc-js";
import { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { NotificationService } from "../../../gen/parley/v1/notifications_pb.js";
import { RoomService } from "../../../gen/parley/v1/room_service_pb.js";
import { type ClientOptions, createClient, type Logger, openChannel, ResetPacer, type ServiceClient } from "../../runtime/index.js";
import { SendLink } from "./send-link.js";

/** HTTP/2 sessions from a bridge to core, by default. */
const DEFAULT_CORE_SESSIONS = 4;

/**
 * One HTTP/2 session to core and what travels on it: the connections given
 * this session make their calls and their sends here (one ordered send
 * link), and the rooms hashed to it have their feeds here.
 */
export interface CoreSession {
  readonly chat: ServiceClient<typeof ChatService>;
  readonly notifications: ServiceClient<typeof NotificationService>;
  readonly rooms: ServiceClient<typeof RoomService>;
  readonly sendLink: SendLink;
  /** Paces the session's cancellations: see ResetPacer. */
  readonly resets: ResetPacer;
}

export interface CoreSessionsOptions {
  readonly coreAddress: string;
  /** Credentials, channel options and the relay's `authorization` header. */
  readonly client: Omit<ClientOptions, "channel" | "resets">;
  readonly count?: number;
  readonly sendAnswerTimeoutMs?: number;
  readonly logger: Logger;
}

/**
 * A small pool of HTTP/2 sessions to core. With one session, its loss (core
 * restarting, a proxy dropping it, the server's rapid-reset defence) was
 * every room feed's and every send's at once; spread over a few, a lost
 * session is a share of them, and each call on it fails UNAVAILABLE and is
 * retried (sends in order, on their link; feeds resubscribe). Each session
 * paces its own cancellations, so no client behaviour can make the bridge
 * reset streams faster than core accepts.
 */
export class CoreSessions {
  readonly sessions: readonly CoreSession[];
  readonly #channels: Channel[] = [];

  constructor(options: CoreSessionsOptions) {
    const count = options.count ?? DEFAULT_CORE_SESSIONS;
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`core sessions must be a positive integer, got ${count}`);
    const sessions: CoreSession[] = [];
    for (let index = 0; index < count; index++) {
      const channel = openChannel(options.coreAddress, options.client);
      this.#channels.push(channel);
      const logger = options.logger.child({ core_session: index });
      const resets = new ResetPacer(undefined, (waiting) => {
        logger.warn({ waiting }, "cancellations to core over budget: they wait their turn (streams stay open at core meanwhile)");
      });
      const clientOptions: ClientOptions = { ...options.client, channel, resets };
      const chat = createClient(ChatService, options.coreAddress, clientOptions);
      sessions.push({
        chat,
        notifications: createClient(NotificationService, options.coreAddress, clientOptions),
        rooms: createClient(RoomService, options.coreAddress, clientOptions),
        sendLink: new SendLink({ chat, logger, answerTimeoutMs: options.sendAnswerTimeoutMs }),
        resets,
      });
    }
    this.sessions = sessions;
  }

  /**
   * The session of a new connection of `user`: always the same one for a
   * user, so that all their sends — from every tab, before and after a
   * reconnect — travel on one ordered send link (a resend after a reconnect
   * cannot race, on another session, the original still on its way).
   */
  forUser(user: string): CoreSession {
    return this.#at(hash(user) % this.sessions.length);
  }

  /** The session that carries `room`'s feed: always the same one for a room. */
  forRoom(room: string): CoreSession {
    return this.#at(hash(room) % this.sessions.length);
  }

  /** Sends not answered yet, over every session. */
  get inFlight(): number {
    return this.sessions.reduce((total, session) => total + session.sendLink.inFlight, 0);
  }

  /** Resolves once every session's pending sends are answered (or `timeoutMs` passed). */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.all(this.sessions.map((session) => session.sendLink.drain(timeoutMs)));
  }

  /** Answers what is pending UNAVAILABLE, cancels what waits, and closes every session. */
  close(): void {
    for (const session of this.sessions) {
      session.sendLink.close();
      session.resets.flush();
    }
    for (const channel of this.#channels) channel.close();
  }

  #at(index: number): CoreSession {
    const session = this.sessions[index];
    if (session === undefined) throw new RangeError(`no core session ${index}`);
    return session;
  }
}

/** FNV-1a over the room id's UTF-16 units: cheap, stable, spreads short ids well. */
function hash(text: string): number {
  let value = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    value ^= text.charCodeAt(index);
    value = Math.imul(value, 0x01000193);
  }
  return value >>> 0;
}
