/**
 * fast-check arbitraries for what the schema-driven generator
 * (arbitrary-message.ts) cannot make: plain objects as the bridge builds
 * them, with fields missing rather than at their zero value.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import fc from "fast-check";

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const text = fc.string({ unit: "binary", maxLength: 40 });

/** A SendBatches request item as the bridge builds it (a plain object). */
export const sendStreamRequestItem = fc.record(
  {
    streamSeq: fc.oneof(fc.constant(0n), int64),
    room: text,
    body: fc.string({ unit: "binary", maxLength: 300 }),
    clientMsgId: text,
    actingToken: fc.oneof(fc.constant(""), fc.string({ maxLength: 300 })),
    traceparent: fc.oneof(fc.constant(""), text),
  },
  { requiredKeys: ["room", "body", "clientMsgId"] },
);

/** Fields as [number, name] pairs, in number order. */
export function fieldsOf(schema: DescMessage): [number, string][] {
  return schema.fields.map((field): [number, string] => [field.number, field.name]).sort((a, b) => a[0] - b[0]);
}
