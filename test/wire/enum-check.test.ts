import { create } from "@bufbuild/protobuf";
import { DescriptorProtoSchema, FieldDescriptorProto_Type as FieldType } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus, HealthListResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { ListMessagesRequestSchema, SendBatchesResponseSchema, SendMessageRequestSchema } from "../../gen/parley/v1/chat_pb.js";
import type { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ClientFrameSchema, type CloseCode, ServerFrameSchema } from "../../gen/parley/v1/frames_pb.js";
import { SendNotificationRequestSchema } from "../../gen/parley/v1/notifications_pb.js";
import { canHoldEnums, checkEnums, findUndefinedEnum } from "../../src/wire/enum-check.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";

function refusal(run: () => void): ParleyError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ParleyError);
    return error as ParleyError;
  }
  throw new Error("expected a VALIDATION error");
}

describe("enum values outside their defined set", () => {
  it("refuses a top-level enum field with VALIDATION naming it, and takes defined values", () => {
    const error = refusal(() => {
      checkEnums(ListMessagesRequestSchema, create(ListMessagesRequestSchema, { room: "r", direction: 7 as unknown as ListDirection }));
    });
    expect(error.category).toBe(ErrorCategory.VALIDATION);
    expect(error.field).toBe("direction");
    expect(error.message).toMatch(/7 is not a defined value of parley\.v1\.ListDirection/);
    for (const direction of [0, 1, 2]) checkEnums(ListMessagesRequestSchema, create(ListMessagesRequestSchema, { direction: direction as unknown as ListDirection }));
  });

  it("finds enums inside oneofs, nested messages, repeated and map fields, by proto field names", () => {
    const frame = create(ClientFrameSchema, { requestId: "1", request: { case: "listNotifications", value: { direction: -1 as unknown as ListDirection } } });
    expect(findUndefinedEnum(ClientFrameSchema, frame)?.path).toBe("list_notifications.direction");

    const server = create(ServerFrameSchema, { kind: { case: "goAway", value: { closeCode: 4999 as unknown as CloseCode } } });
    expect(findUndefinedEnum(ServerFrameSchema, server)?.path).toBe("go_away.close_code");

    const answers = create(SendBatchesResponseSchema, {
      answers: [
        { result: { case: "error", value: { category: ErrorCategory.VALIDATION } } },
        { result: { case: "message", value: { body: "x" } } },
        { result: { case: "error", value: { category: 99 as unknown as ErrorCategory } } },
      ],
    });
    expect(findUndefinedEnum(SendBatchesResponseSchema, answers)).toEqual({ path: "answers[2].error.category", value: 99, enumName: "parley.v1.ErrorCategory" });

    const statuses = create(HealthListResponseSchema, { statuses: { ok: { status: ServingStatus.SERVING }, "odd key": { status: 42 as unknown as ServingStatus } } });
    expect(findUndefinedEnum(HealthListResponseSchema, statuses)?.path).toBe('statuses["odd key"].status');
  });

  it("walks a recursive schema (messages nested in messages of the same type)", () => {
    const descriptor = create(DescriptorProtoSchema, {
      name: "Outer",
      nestedType: [{ name: "Inner", field: [{ name: "a", type: FieldType.STRING }, { name: "b", type: 77 as unknown as FieldType }] }],
    });
    expect(findUndefinedEnum(DescriptorProtoSchema, descriptor)?.path).toBe("nested_type[0].field[1].type");
  });

  it("says which schemas cannot hold an enum, so the hot path skips the walk", () => {
    expect(canHoldEnums(SendMessageRequestSchema)).toBe(false);
    // Struct's NullValue arrives as JSON null in protobuf-es: nothing to check.
    expect(canHoldEnums(SendNotificationRequestSchema)).toBe(false);
    expect(canHoldEnums(ListMessagesRequestSchema)).toBe(true);
    expect(findUndefinedEnum(ClientFrameSchema, create(ClientFrameSchema, { requestId: "1", request: { case: "send", value: {} } }))).toBeUndefined();
  });
});
