import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { hotCodec, ParleyError } from "../../wire/index.js";

/**
 * Stands in for a request that did not decode. grpc-js answers a throwing
 * deserializer with a bare INTERNAL; passing this marker on lets the
 * handler wrapper answer VALIDATION instead, with the reason.
 */
export class UndecodableMessage {
  constructor(readonly error: ParleyError) {}
}

/** Binary encoding for `schema`: its hand-written encoder (wire/codecs/registry.ts) for the chat traffic's hottest messages, toBinary for the rest. */
export function serializer<D extends DescMessage>(schema: D): (message: MessageInitShape<D>) => Buffer {
  const encode = hotCodec(schema)?.encode ?? ((message: MessageInitShape<D>) => toBinary(schema, create(schema, message)));
  return (message) => {
    const encoded = encode(message);
    return Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  };
}

/** Binary decoding for `schema`: its hand-written decoder (wire/codecs/registry.ts) for the chat traffic's hottest messages, fromBinary for the rest. */
function binaryDecoder<D extends DescMessage>(schema: D): (bytes: Uint8Array) => MessageShape<D> {
  return hotCodec(schema)?.decode ?? ((bytes) => fromBinary(schema, bytes));
}

export function lenientDeserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> | UndecodableMessage {
  const decode = binaryDecoder(schema);
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return new UndecodableMessage(
        new ParleyError(ErrorCategory.VALIDATION, `cannot decode ${schema.typeName}: ${reason}`, { cause: error }),
      );
    }
  };
}

export function strictDeserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return binaryDecoder(schema);
}
