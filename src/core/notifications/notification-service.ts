import { ListDirection } from "../../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { Notification, NotificationService } from "../../../gen/parley/v1/notifications_pb.js";
import { CALLER, follow, type Identity, logError, type Logger, NOTIFICATIONS_SEND_SCOPE, originOf, type ServiceHandlers, traceDelivery } from "../../runtime/index.js";
import { checkPageSize, checkSeq, ParleyError } from "../../wire/index.js";
import type { GroupCommitter } from "../store/group-commit.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import type { TopicFanout } from "../store/topic-fanout.js";
import type { NotificationCommitter } from "./notification-committer.js";
import type { NotificationStore } from "./notification-store.js";
import { checkNotification, checkNotificationIds } from "./validation.js";

export interface NotificationServiceDeps {
  readonly unitOfWork: UnitOfWork;
  readonly store: NotificationStore;
  readonly committer: NotificationCommitter;
  readonly fanout: TopicFanout<Notification>;
  /** Records notifications that reached a live subscriber (cancels their webhooks). */
  readonly liveDelivered: GroupCommitter<string, undefined>;
  readonly logger: Logger;
}

/**
 * Who may do what with notifications, in one place:
 *  - sending needs the `notifications:send` scope in the token — a service
 *    identity — since a notification lands in someone else's inbox;
 *  - an inbox is read, acknowledged and followed only by its owner.
 */
const notificationAccess = {
  assertCanSend(caller: Identity): void {
    if (!caller.scopes.has(NOTIFICATIONS_SEND_SCOPE)) {
      throw new ParleyError(ErrorCategory.PERMISSION_DENIED, `sending notifications needs the \`${NOTIFICATIONS_SEND_SCOPE}\` token scope`);
    }
  },
  /** The inbox a request names: empty means the caller's own; anyone else's is refused. */
  inboxOf(caller: Identity, recipient: string): string {
    if (recipient !== "" && recipient !== caller.user) {
      throw new ParleyError(ErrorCategory.PERMISSION_DENIED, "only the recipient may read, acknowledge or follow an inbox");
    }
    return caller.user;
  },
};

/**
 * An id the caller may not acknowledge. One answer whether the id does not
 * exist or is in someone else's inbox, as for rooms: a different answer
 * would let anyone probe which notification ids exist.
 */
function notInInbox(field: string): ParleyError {
  return new ParleyError(ErrorCategory.PERMISSION_DENIED, `${field}: not a notification of your inbox`, { field });
}

/** parley.v1.NotificationService: transport-free rules, bound to gRPC by the caller. */
export function notificationServiceHandlers(deps: NotificationServiceDeps): ServiceHandlers<typeof NotificationService> {
  const { unitOfWork, store, committer, fanout, liveDelivered, logger } = deps;

  return {
    async sendNotification(request, context) {
      const caller = context.values.get(CALLER);
      notificationAccess.assertCanSend(caller);
      const fields = checkNotification({
        recipients: request.recipients,
        kind: request.kind,
        title: request.title,
        body: request.body,
        data: request.data,
        idempotencyKey: request.idempotencyKey,
      });
      const result = await committer.submit({ ...fields, sender: caller.user });
      return { notifications: result.notifications, duplicate: result.duplicate };
    },

    async listNotifications(request, context) {
      const user = notificationAccess.inboxOf(context.values.get(CALLER), request.recipient);
      const cursor = checkSeq(request.cursorSeq, "cursor_seq");
      const pageSize = checkPageSize(request.pageSize);
      const backward = request.direction === ListDirection.BACKWARD;
      return unitOfWork.read({ label: "notifications.list", context: { user } }, async (em) => {
        const rows = backward
          ? await store.readBefore(em, user, cursor, pageSize + 1, request.unreadOnly)
          : await store.readAfter(em, user, cursor, pageSize + 1, request.unreadOnly);
        const page = rows.slice(0, pageSize);
        const { headSeq, unreadCount } = await store.counts(em, user);
        return { notifications: page, hasMore: rows.length > pageSize, nextCursorSeq: page.at(-1)?.seq ?? cursor, headSeq, unreadCount };
      });
    },

    async ackNotifications(request, context) {
      const caller = context.values.get(CALLER);
      const upToSeq = checkSeq(request.upToSeq, "up_to_seq");
      const ids = checkNotificationIds(request.ids);
      return unitOfWork.transaction({ label: "notifications.ack", context: { user: caller.user } }, async (em) => {
        if (ids.length > 0) {
          const mine = await store.inInbox(em, caller.user, ids);
          const missing = ids.findIndex((id) => !mine.has(id));
          if (missing >= 0) throw notInInbox(`ids[${missing}]`);
        }
        const ackedCount = await store.acknowledge(em, caller.user, upToSeq, ids);
        const { unreadCount } = await store.counts(em, caller.user);
        return { ackedCount, unreadCount };
      });
    },

    async subscribe(request, responses, context) {
      const user = notificationAccess.inboxOf(context.values.get(CALLER), request.recipient);
      const afterSeq = request.afterSeq === undefined ? undefined : checkSeq(request.afterSeq, "after_seq");
      const read = { label: "notifications.replay", context: { user } };
      await follow({
        hub: fanout.hub,
        topic: user,
        afterSeq,
        readAfter: (seq, limit) => unitOfWork.read(read, (em) => store.readAfter(em, user, seq, limit)),
        readHead: () => unitOfWork.read(read, async (em) => (await store.counts(em, user)).headSeq),
        send: async (notification) => {
          await traceDelivery("notification", user, notification, originOf(notification), () =>
            responses.send({ event: { case: "notification", value: notification } }),
          );
          // Reached a live subscriber: no webhook needed. Best effort — if this
          // fails the webhook goes out anyway, which is the safe side.
          if (notification.readAt === undefined) {
            liveDelivered.submit(notification.id).catch((error: unknown) => {
              logError(logger, ParleyError.from(error), { user, notification_id: notification.id }, "could not record live delivery");
            });
          }
        },
        caughtUp: (headSeq) => responses.send({ event: { case: "caughtUp", value: { headSeq } } }),
        signal: context.signal,
      });
    },
  };
}
