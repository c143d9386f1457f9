import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { USER_ID } from "../../runtime/index.js";
import { checkIdempotencyKey, checkText, validationError } from "../../wire/index.js";

const MAX_RECIPIENTS = 1000;
const MAX_ACK_IDS = 1000;
const MAX_DATA_BYTES = 16 * 1024;
const KIND = /^[A-Za-z0-9_.:-]{1,64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface NotificationFields {
  readonly recipients: readonly string[];
  readonly kind: string;
  readonly title: string;
  readonly body: string;
  readonly data: JsonObject | undefined;
  readonly idempotencyKey: string;
}

/** Validates a SendNotification before any database work; names the field on failure. */
export function checkNotification(fields: NotificationFields): NotificationFields {
  const { recipients } = fields;
  if (recipients.length === 0) throw validationError("recipients", "at least one recipient is required");
  if (recipients.length > MAX_RECIPIENTS) throw validationError("recipients", `at most ${MAX_RECIPIENTS} recipients per send`);
  const seen = new Set<string>();
  recipients.forEach((recipient, index) => {
    if (!USER_ID.test(recipient)) throw validationError(`recipients[${index}]`, "is not a valid user id");
    if (seen.has(recipient)) throw validationError(`recipients[${index}]`, `"${recipient}" is listed twice`);
    seen.add(recipient);
  });
  if (!KIND.test(fields.kind)) throw validationError("kind", "must be 1-64 characters: letters, digits, _ . : -");
  checkText(fields.title, "title", { required: true, maxCodePoints: 256 });
  checkText(fields.body, "body", { required: false, maxCodePoints: 4096 });
  if (fields.data !== undefined) {
    const json = JSON.stringify(fields.data);
    const encoded = Buffer.byteLength(json);
    if (encoded > MAX_DATA_BYTES) throw validationError("data", `must encode to at most ${MAX_DATA_BYTES} bytes of JSON (got ${encoded})`);
    if (json.includes("\\u0000")) throw validationError("data", "must not contain NUL characters");
    checkFiniteNumbers(fields.data, "data");
  }
  checkIdempotencyKey(fields.idempotencyKey, "idempotency_key");
  return fields;
}

/**
 * A binary google.protobuf.Struct can carry NaN and ±Infinity as number
 * values, which JSON (and so the stored jsonb) cannot: JSON.stringify would
 * store them as null. Refused, naming the path (`data.a.b[2]`). The data is
 * already bounded in size, so the walk is too.
 */
function checkFiniteNumbers(value: JsonValue, path: string): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw validationError(path, `${String(value)} is not a JSON number`);
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => {
      checkFiniteNumbers(item, `${path}[${index}]`);
    });
  } else if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) checkFiniteNumbers(item, `${path}.${key.slice(0, 64)}`);
  }
}

export function checkNotificationIds(ids: readonly string[]): readonly string[] {
  if (ids.length > MAX_ACK_IDS) throw validationError("ids", `at most ${MAX_ACK_IDS} ids per call`);
  ids.forEach((id, index) => {
    if (!UUID.test(id)) throw validationError(`ids[${index}]`, "is not a notification id (UUID)");
  });
  return ids.map((id) => id.toLowerCase());
}
