import type { SpanContext } from "@opentelemetry/api";
import type { Notification } from "../../../gen/parley/v1/notifications_pb.js";
import { parleyMetrics } from "../../runtime/index.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError, validationError } from "../../wire/index.js";
import { GroupCommitter, type ItemResult } from "../store/group-commit.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import type { NotificationSend, NotificationStore } from "./notification-store.js";

interface NotificationSendResult {
  /** One per recipient, in the order of the request's recipients. */
  readonly notifications: Notification[];
  readonly duplicate: boolean;
}

export type NotificationCommitter = GroupCommitter<NotificationSend, NotificationSendResult>;

/** Another transaction holds the same (sender, key) and has not committed yet. */
class ConcurrentRepeat extends Error {}

/**
 * Notification sends through the same group commit as chat. A batch is
 * bounded by rows (recipients), not only by sends, since one send may carry a
 * thousand recipients.
 */
export function createNotificationCommitter(
  unitOfWork: UnitOfWork,
  store: NotificationStore,
  options: { onCommitted?: (notifications: readonly Notification[], origin: SpanContext) => void } = {},
): NotificationCommitter {
  return new GroupCommitter<NotificationSend, NotificationSendResult>(unitOfWork, {
    label: "notifications.send-batch",
    maxBatch: 256,
    maxWeight: 5_000,
    weightOf: (send) => send.recipients.length,
    store: async (em, batch) => {
      const firsts = new Map<string, number>();
      const unique: NotificationSend[] = [];
      const slot = batch.map((send) => {
        const key = `${send.sender}\u0000${send.idempotencyKey}`;
        let index = firsts.get(key);
        if (index === undefined) {
          index = unique.push(send) - 1;
          firsts.set(key, index);
        }
        return index;
      });
      const outcomes = await store.storeSends(em, unique);
      return batch.map((send, position): ItemResult<NotificationSendResult> => {
        const index = slot[position] ?? -1;
        const outcome = outcomes[index];
        if (outcome === undefined) return { ok: false, error: new ParleyError(ErrorCategory.INTERNAL, "send has no outcome") };
        const repeat = outcome.kind === "duplicate" || unique[index] !== send;
        if (outcome.kind === "duplicate" && outcome.notifications.length < outcome.original.recipients.length) {
          // Committed by another transaction after ours began: retry to see it.
          throw new ConcurrentRepeat("a concurrent send with the same idempotency key is committing");
        }
        const originalRecipients = outcome.kind === "duplicate" ? outcome.original.recipients : (unique[index]?.recipients ?? []);
        if (repeat && !sameSend(send, originalRecipients, outcome.notifications)) {
          return { ok: false, error: validationError("idempotency_key", "was already used for a different notification") };
        }
        return { ok: true, value: { notifications: outcome.notifications, duplicate: repeat } };
      });
    },
    committed: (results, origin) => {
      const fresh = results.filter((result) => !result.duplicate).flatMap((result) => result.notifications);
      parleyMetrics().notificationsStored.add(fresh.length);
      if (fresh.length > 0) options.onCommitted?.(fresh, origin);
    },
    retryIf: (error) => error instanceof ConcurrentRepeat || isKeyRace(error),
    contextOf: (send) => ({ sender: send.sender, idempotency_key: send.idempotencyKey, recipients: send.recipients.length }),
  });
}

function sameSend(send: NotificationSend, originalRecipients: readonly string[], stored: readonly Notification[]): boolean {
  const first = stored[0];
  return (
    first !== undefined &&
    first.kind === send.kind &&
    first.title === send.title &&
    first.body === send.body &&
    originalRecipients.length === send.recipients.length &&
    originalRecipients.every((recipient, i) => recipient === send.recipients[i])
  );
}

/** Two instances inserted the same (sender, key, recipient) at once. */
function isKeyRace(error: unknown): boolean {
  const text = String((error as { message?: unknown }).message);
  return text.includes("notifications_send_recipient_unique") || text.includes("notification_sends_pkey");
}
