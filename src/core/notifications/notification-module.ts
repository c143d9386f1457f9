import { type Notification, NotificationService } from "../../../gen/parley/v1/notifications_pb.js";
import { bindService, type Logger, type ServiceBinding } from "../../runtime/index.js";
import { GroupCommitter } from "../store/group-commit.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { TopicFanout } from "../store/topic-fanout.js";
import { createNotificationCommitter } from "./notification-committer.js";
import { notificationServiceHandlers } from "./notification-service.js";
import { INBOX_CHANNEL, NotificationStore } from "./notification-store.js";

/** Everything notifications need, assembled: gRPC binding, fan-out hooks, drain. */
export interface NotificationModule {
  readonly binding: ServiceBinding;
  readonly channel: string;
  readonly fanout: TopicFanout<Notification>;
  /** Waits for what is queued to be committed; from now on nothing waits for an unreachable database. */
  drain(): Promise<void>;
}

export function createNotificationModule(deps: {
  instanceId: string;
  unitOfWork: UnitOfWork;
  logger: Logger;
  /** Set when webhooks are configured: deliveries are queued after this grace. */
  webhookGraceMs: number | undefined;
}): NotificationModule {
  const { unitOfWork, logger } = deps;
  const store = new NotificationStore({ origin: deps.instanceId, webhookGraceMs: deps.webhookGraceMs });
  const fanout = new TopicFanout<Notification>({
    origin: deps.instanceId,
    topicOf: (notification) => notification.recipient,
    readRange: (user, from, to) =>
      unitOfWork.read({ label: "notifications.fanout-read", context: { user } }, (em) => store.readRange(em, user, from, to)),
    logger,
  });
  const committer = createNotificationCommitter(unitOfWork, store, {
    onCommitted: (notifications, origin) => {
      fanout.committed(notifications, origin);
    },
  });
  // Live deliveries are recorded in groups too: one UPDATE for many.
  const liveDelivered = new GroupCommitter<string, undefined>(unitOfWork, {
    label: "notifications.live-delivered",
    store: async (em, ids) => {
      await store.cancelWebhooks(em, ids);
      return ids.map(() => ({ ok: true, value: undefined }));
    },
    contextOf: (id) => ({ notification_id: id }),
  });
  return {
    binding: bindService(
      NotificationService,
      notificationServiceHandlers({ unitOfWork, store, committer, fanout, liveDelivered, logger }),
    ),
    channel: INBOX_CHANNEL,
    fanout,
    drain: async () => {
      committer.stopHolding();
      liveDelivered.stopHolding();
      await committer.idle();
      await liveDelivered.idle();
    },
  };
}
