import { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { bindService, type Logger, type ServiceBinding, type TokenVerifier } from "../../runtime/index.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { TopicFanout } from "../store/topic-fanout.js";
import { chatServiceHandlers } from "./chat-service.js";
import { CHAT_CHANNEL, MessageStore } from "./message-store.js";
import { createSendCommitter } from "./send-committer.js";
import { RoomLog, type RoomLogItem } from "./room-log.js";

/** Everything chat needs, assembled: its gRPC binding and its fan-out hooks. */
export interface ChatModule {
  readonly binding: ServiceBinding;
  readonly channel: string;
  /** Every room's log, messages and other events, to the room's followers. */
  readonly fanout: TopicFanout<RoomLogItem>;
  /** Answers every send already submitted. */
  /** Waits for what is queued to be committed; from now on nothing waits for an unreachable database. */
  drain(): Promise<void>;
}

export function createChatModule(deps: {
  instanceId: string;
  unitOfWork: UnitOfWork;
  verifier: TokenVerifier;
  logger: Logger;
  maxBatch?: number;
  /** Rooms on first use (development; see RoomPolicy). */
  implicitRooms: boolean;
}): ChatModule {
  const { unitOfWork, logger } = deps;
  const store = new MessageStore(deps.instanceId, { implicitRooms: deps.implicitRooms });
  const log = new RoomLog(store);
  const fanout = new TopicFanout<RoomLogItem>({
    origin: deps.instanceId,
    topicOf: (item) => item.room,
    readRange: (room, from, to) => unitOfWork.read({ label: "chat.fanout-read", context: { room } }, (em) => log.readRange(em, room, from, to)),
    logger,
  });
  const committer = createSendCommitter(unitOfWork, store, {
    maxBatch: deps.maxBatch,
    onCommitted: (messages, origin) => {
      fanout.committed(messages, origin);
    },
  });
  return {
    binding: bindService(ChatService, chatServiceHandlers({ unitOfWork, store, log, committer, fanout, verifier: deps.verifier, logger, implicitRooms: deps.implicitRooms })),
    channel: CHAT_CHANNEL,
    fanout,
    drain: () => {
      committer.stopHolding();
      return committer.idle();
    },
  };
}
