import {
  type DescMessage,
  fromBinary,
  fromJson,
  fromJsonString,
  type JsonValue,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type ClientFrame, ClientFrameSchema, type ServerFrame, ServerFrameSchema } from "../../../gen/parley/v1/frames_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../errors/parley-error.js";
import { canHoldEnums, describeUndefinedEnum, findUndefinedEnum } from "../enum-check.js";
import { findLooseIntegerString } from "../json-integers.js";
import { plainSendFrame } from "./client-frame-json.js";
import { hotServerFrameJson } from "./server-frame-json.js";

/** How a frame travelled: a text frame (proto3 JSON) or a binary one (protobuf). */
export type FrameFormat = "json" | "binary";

/**
 * A client frame that failed to decode, with the request id and the request
 * kind ("send", "subscribe", ...) when they could be read: a send that does
 * not decode is still answered in its place among the connection's sends.
 */
export class FrameDecodeError extends ParleyError {
  constructor(
    readonly requestId: string,
    field: string,
    message: string,
    cause?: unknown,
    readonly requestKind?: string,
  ) {
    super(ErrorCategory.VALIDATION, field === "" ? message : `${field}: ${message}`, { field: field === "" ? undefined : field, cause });
  }
}

/** The fields of ClientFrame's `request` oneof, by proto name, JSON name and number. */
const REQUEST_FIELDS = ClientFrameSchema.fields.filter((field) => field.oneof?.name === "request");

/** Request kinds whose messages have an enum somewhere (history's direction, ...); the send frame has none, so it skips the walk. */
const KINDS_WITH_ENUMS: ReadonlySet<string> = new Set(
  REQUEST_FIELDS.filter((field) => field.fieldKind === "message" && canHoldEnums(field.message)).map((field) => field.localName),
);

const REQUEST_ID = /^[\x21-\x7e]{1,64}$/;

/**
 * Decodes one client frame against the schema before any field is read.
 * Unknown fields, wrong types, enum numbers the enum does not define and a
 * missing request id or request kind are VALIDATION errors naming the field
 * (proto field names, dotted).
 */
export function decodeClientFrame(data: string | Uint8Array, format: FrameFormat): ClientFrame {
  const frame = format === "json" ? decodeJson(textOf(data)) : decodeBinary(toBytes(data));
  if (!REQUEST_ID.test(frame.requestId)) {
    throw new FrameDecodeError("", "request_id", "is required: 1 to 64 printable ASCII characters without spaces", undefined, frame.request.case);
  }
  if (frame.request.case === undefined) {
    throw new FrameDecodeError(frame.requestId, "request", "one request kind (send, subscribe, history, ...) is required");
  }
  const undefinedEnum = KINDS_WITH_ENUMS.has(frame.request.case) ? findUndefinedEnum(ClientFrameSchema, frame) : undefined;
  if (undefinedEnum !== undefined) throw new FrameDecodeError(frame.requestId, undefinedEnum.path, describeUndefinedEnum(undefinedEnum), undefined, frame.request.case);
  return frame;
}

/** Encodes a server frame in the format the client used. Throws SERIALIZATION. */
export function encodeServerFrame(frame: ServerFrame, format: FrameFormat): string | Uint8Array {
  try {
    if (format === "binary") return toBinary(ServerFrameSchema, frame);
    return hotServerFrameJson(frame) ?? toJsonString(ServerFrameSchema, frame);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ParleyError(ErrorCategory.SERIALIZATION, `cannot encode server frame: ${reason}`, { cause: error });
  }
}

function decodeJson(text: string): ClientFrame {
  const plain = plainSendFrame(text);
  if (plain !== undefined) return plain;
  let frame: ClientFrame;
  try {
    // protobuf-es parses and checks in one pass (it also refuses duplicate keys, which JSON.parse would merge).
    frame = fromJsonString(ClientFrameSchema, text, { ignoreUnknownFields: false });
  } catch (error) {
    // The error path only: parse again to find the request id and the field.
    let json: JsonValue;
    try {
      json = JSON.parse(text) as JsonValue;
    } catch (syntax) {
      throw new FrameDecodeError("", "", "frame is not valid JSON", syntax);
    }
    const located = locateJsonProblem(ClientFrameSchema, json, "");
    const reason = located?.reason ?? describeJsonError(error);
    const kind = readJsonRequestKind(json);
    throw new FrameDecodeError(readJsonRequestId(json), located?.path ?? duplicateKeyPath(error, kind) ?? "", reason, error, kind);
  }
  // What protobuf-es takes as an integer is wider than proto3 JSON ("0x10");
  // the text is valid JSON by now, and this path is not the send frame's.
  const loose = findLooseIntegerString(ClientFrameSchema, JSON.parse(text) as JsonValue);
  if (loose !== undefined) throw new FrameDecodeError(REQUEST_ID.test(frame.requestId) ? frame.requestId : "", loose.path, loose.reason, undefined, frame.request.case);
  return frame;
}

/**
 * protobuf-es names a repeated key without its place ('duplicate object key
 * "body"'): a key that is not one of ClientFrame's own is taken to be inside
 * the request, and named under it (`send.body`).
 */
function duplicateKeyPath(error: unknown, requestKind: string | undefined): string | undefined {
  const match = /duplicate object key "([^"]{1,64})"/.exec(error instanceof Error ? error.message : "");
  const key = match?.[1];
  if (key === undefined) return undefined;
  const own = ClientFrameSchema.fields.find((field) => field.jsonName === key || field.name === key);
  if (own !== undefined) return own.name;
  const request = REQUEST_FIELDS.find((field) => field.localName === requestKind);
  if (request?.fieldKind !== "message") return key;
  const inner = request.message.fields.find((field) => field.jsonName === key || field.name === key);
  return `${request.name}.${inner?.name ?? key}`;
}

/** Best effort: which request a JSON frame that did not decode carries ("send", ...). */
function readJsonRequestKind(json: JsonValue): string | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  return REQUEST_FIELDS.find((field) => field.jsonName in json || field.name in json)?.localName;
}

function readJsonRequestId(json: JsonValue): string {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return "";
  const id = json.requestId ?? json.request_id;
  return typeof id === "string" && REQUEST_ID.test(id) ? id : "";
}

/**
 * Finds the first key of `json` that `schema` rejects, as a dotted path of
 * proto field names. Only runs on the error path, so it simply re-decodes
 * one key at a time and descends into message fields.
 */
function locateJsonProblem(schema: DescMessage, json: JsonValue, prefix: string): { path: string; reason: string } | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { path: prefix, reason: `must be a JSON object, got ${Array.isArray(json) ? "an array" : typeof json}` };
  }
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
    // An unknown key is the client's text: bound it before it goes into a message.
    const name = field?.name ?? key.slice(0, 64);
    const path = prefix === "" ? name : `${prefix}.${name}`;
    if (field === undefined) return { path, reason: "unknown field" };
    try {
      fromJson(schema, { [key]: value }, { ignoreUnknownFields: false });
    } catch (error) {
      if (field.fieldKind === "message" && field.message.typeName.startsWith("parley.")) {
        const inner = locateJsonProblem(field.message, value, path);
        if (inner) return inner;
      }
      return { path, reason: describeJsonError(error) };
    }
  }
  return undefined;
}

function describeJsonError(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // protobuf-es: 'cannot decode field parley.v1.SendFrame.seq from JSON: "x"'
  // — the value is the client's: quote at most a little of it.
  const match = /from JSON: (.*)$/s.exec(text);
  if (match?.[1] === undefined) return text.slice(0, 200);
  return `invalid value ${match[1].length > 64 ? `${match[1].slice(0, 64)}…` : match[1]}`;
}

function decodeBinary(bytes: Uint8Array): ClientFrame {
  let frame: ClientFrame;
  try {
    frame = fromBinary(ClientFrameSchema, bytes);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new FrameDecodeError(readBinaryRequestId(bytes), "", `frame is not a valid protobuf ClientFrame: ${reason}`, error, readBinaryRequestKind(bytes));
  }
  const unknown = findUnknownField(frame, "");
  if (unknown !== undefined) {
    throw new FrameDecodeError(REQUEST_ID.test(frame.requestId) ? frame.requestId : "", unknown, "unknown field", undefined, frame.request.case);
  }
  return frame;
}

/** Best effort: which request a binary frame that did not decode carries, from its top-level tags. */
function readBinaryRequestKind(bytes: Uint8Array): string | undefined {
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [fieldNo, wireType] = reader.tag();
      const request = REQUEST_FIELDS.find((field) => field.number === fieldNo);
      if (request !== undefined) return request.localName;
      reader.skip(wireType, fieldNo);
    }
  } catch {
    // Unreadable past this point: no kind.
  }
  return undefined;
}

/** Best effort: field 1 (request_id) of a frame that did not decode as a whole. */
export function readBinaryRequestId(bytes: Uint8Array): string {
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [fieldNo, wireType] = reader.tag();
      if (fieldNo === 1 && wireType === WireType.LengthDelimited) {
        const id = reader.string();
        return REQUEST_ID.test(id) ? id : "";
      }
      reader.skip(wireType, fieldNo);
    }
  } catch {
    // Unreadable: answer without a request id.
  }
  return "";
}

interface MaybeUnknown {
  $unknown?: { no: number }[];
}

/** Binary frames keep unknown fields in `$unknown`; parley rejects them like JSON does. */
function findUnknownField(message: object, prefix: string): string | undefined {
  const unknown = (message as MaybeUnknown).$unknown;
  if (unknown !== undefined && unknown.length > 0) {
    const no = unknown[0]?.no ?? 0;
    return prefix === "" ? `#${no}` : `${prefix}.#${no}`;
  }
  for (const [key, value] of Object.entries(message)) {
    if (key.startsWith("$")) continue;
    const nested = nestedMessage(value);
    if (nested) {
      const found = findUnknownField(nested.message, prefix === "" ? nested.name ?? key : `${prefix}.${nested.name ?? key}`);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function nestedMessage(value: unknown): { message: object; name?: string } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  // A oneof: { case: "send", value: {...} }
  const oneof = value as { case?: unknown; value?: unknown };
  if (typeof oneof.case === "string" && typeof oneof.value === "object" && oneof.value !== null) {
    return { message: oneof.value, name: snakeCase(oneof.case) };
  }
  if ("$typeName" in value) return { message: value };
  return undefined;
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * A text frame's text. ws has checked that it is UTF-8; Buffer decodes it
 * faster than TextDecoder, which also drops a leading byte order mark (kept
 * for that case, so a frame means the same either way).
 */
function textOf(data: string | Uint8Array): string {
  if (typeof data === "string") return data;
  if (Buffer.isBuffer(data) && !(data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf)) return data.toString("utf8");
  return new TextDecoder().decode(data);
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}
