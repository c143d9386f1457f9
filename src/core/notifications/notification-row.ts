import { create, type JsonObject } from "@bufbuild/protobuf";
import { type Notification, NotificationSchema } from "../../../gen/parley/v1/notifications_pb.js";
import { timestampFromPg } from "../store/pg-timestamp.js";

/** The columns of `notifications` as the pg driver returns them (timestamps as text). */
export interface NotificationRow {
  id: string;
  recipient_id: string;
  seq: string;
  sender: string;
  kind: string;
  title: string;
  body: string;
  data: JsonObject | null;
  created_at: string;
  read_at: string | null;
}

/** The select list that produces a NotificationRow. */
export const NOTIFICATION_COLUMNS = "id, recipient_id, seq, sender, kind, title, body, data, created_at, read_at";

export function notificationFromRow(row: NotificationRow): Notification {
  return create(NotificationSchema, {
    id: row.id,
    recipient: row.recipient_id,
    seq: BigInt(row.seq),
    sender: row.sender,
    kind: row.kind,
    title: row.title,
    body: row.body,
    data: row.data ?? undefined,
    createdAt: timestampFromPg(row.created_at),
    readAt: row.read_at === null ? undefined : timestampFromPg(row.read_at),
  });
}
