import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type ServiceError, status as Status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { bindService, type RunningGrpcServer, startGrpcServer } from "../../src/runtime/grpc/grpc-server.js";
import { rejection } from "../support/assertions.js";

const run = promisify(execFile);

/**
 * A throwaway implementation: every unary call fails with a category chosen
 * by the request, streams echo. Enough to exercise the plumbing; the real
 * services have their own tests.
 */
function echoChat() {
  return bindService(ChatService, {
    sendMessage: (request) => {
      if (request.room === "fail") throw new ParleyError(ErrorCategory.PERSISTENCE, "forced failure", { field: "room" });
      return Promise.resolve({ message: { room: request.room, body: request.body, clientMsgId: request.clientMsgId, seq: 1n } });
    },
    sendStream: async (requests, responses) => {
      for await (const item of requests) await responses.send({ streamSeq: item.streamSeq, result: { case: "message", value: { body: item.body } } });
    },
    sendBatches: () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by this test")),
    listMessages: () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by this test")),
    listRoomEvents: () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by this test")),
    subscribe: async (request, responses) => {
      for (let seq = 1n; seq <= 3n; seq++) await responses.send({ event: { case: "message", value: { room: request.room, seq } } });
      await responses.send({ event: { case: "caughtUp", value: { headSeq: 3n } } });
    },
    markRead: () => Promise.reject(new Error("a bug: not a ParleyError")),
  });
}

function refusingNotifications() {
  const refuse = () => Promise.reject(new ParleyError(ErrorCategory.ROUTING, "not served by this test"));
  return bindService(NotificationService, {
    sendNotification: refuse,
    listNotifications: refuse,
    ackNotifications: refuse,
    subscribe: refuse,
  });
}

let server: RunningGrpcServer;
let url: string;

beforeAll(async () => {
  server = await startGrpcServer({ address: "127.0.0.1:0", services: [echoChat(), refusingNotifications()] });
  // Reflection is added once the server listens.
  await server.reflectionReady;
  url = `http://${server.address}`;
});

afterAll(async () => {
  await server.shutdown(1000);
});

describe("gRPC server plumbing", () => {
  it("binds port 0 to a real port", () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
  });

  it("lists parley's services through reflection to a standard tool (buf curl)", async () => {
    const { stdout } = await run("npx", ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", url]);
    const services = stdout.trim().split("\n");
    expect(services).toContain("parley.v1.ChatService");
    expect(services).toContain("parley.v1.NotificationService");
    expect(services).toContain("grpc.health.v1.Health");
  });

  it("serves no reflection when it is switched off, and health still", async () => {
    const quiet = await startGrpcServer({ address: "127.0.0.1:0", services: [echoChat()], reflection: false });
    try {
      const listed = await run("npx", ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", `http://${quiet.address}`]).then(
        () => "listed",
        (error: unknown) => String((error as { stderr?: string }).stderr),
      );
      expect(listed).toMatch(/unimplemented|not implemented|ServerReflection/i);
      // A client with the descriptors (not buf curl, which needs reflection for any call).
      const health = createClient(Health, quiet.address);
      try {
        expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
      } finally {
        health.close();
      }
    } finally {
      await quiet.shutdown(1000);
    }
  });

  it("lets buf curl call a method knowing only the server (descriptors are complete)", async () => {
    const { stdout } = await run("npx", [
      "buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "-d", '{"room":"lobby","body":"hello","client_msg_id":"c-1"}',
      `${url}/parley.v1.ChatService/SendMessage`,
    ]);
    expect(JSON.parse(stdout)).toEqual({ message: { room: "lobby", body: "hello", clientMsgId: "c-1", seq: "1" } });
    const health = await run("npx", ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", `${url}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
  });

  it("reports SERVING for the server and each service over the health protocol", async () => {
    const health = createClient(Health, server.address);
    try {
      for (const service of ["", "parley.v1.ChatService", "parley.v1.NotificationService"]) {
        expect((await health.check({ service })).status).toBe(ServingStatus.SERVING);
      }
      const listed = await health.list({});
      expect(Object.keys(listed.statuses).sort()).toEqual(["", "parley.v1.ChatService", "parley.v1.NotificationService"]);
    } finally {
      health.close();
    }
  });
});

describe("grpc.health.v1 for a service the server does not know", () => {
  it("answers Check with NOT_FOUND, as health.proto says (category ROUTING in the details)", async () => {
    const health = createClient(Health, server.address);
    try {
      const error = await rejection(health.check({ service: "nope.Service" }));
      expect((error.cause as ServiceError).code).toBe(Status.NOT_FOUND);
      expect(error.category).toBe(ErrorCategory.ROUTING);
      expect(error.message).toMatch(/unknown service "nope\.Service"/);
    } finally {
      health.close();
    }
  });

  it("answers Watch with SERVICE_UNKNOWN and keeps the call open, then sends the status once it is set", async () => {
    const health = createClient(Health, server.address);
    try {
      const statuses: ServingStatus[] = [];
      for await (const answer of health.watch({ service: "later.Service" })) {
        statuses.push(answer.status);
        if (statuses.length === 1) server.health.setStatus("later.Service", ServingStatus.SERVING);
        else break;
      }
      expect(statuses).toEqual([ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING]);
    } finally {
      health.close();
    }
  });
});

describe("typed client over real gRPC", () => {
  const client = () => createClient(ChatService, server.address);

  it("returns typed responses for unary calls", async () => {
    const chat = client();
    try {
      const response = await chat.sendMessage({ room: "lobby", body: "hi", clientMsgId: "c" });
      expect(response.message?.seq).toBe(1n);
    } finally {
      chat.close();
    }
  });

  it("turns a handler's ParleyError into the same category, field and message on the client", async () => {
    const chat = client();
    try {
      const error = await chat.sendMessage({ room: "fail", body: "", clientMsgId: "" }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ParleyError);
      expect(error).toMatchObject({ category: ErrorCategory.PERSISTENCE, field: "room", message: "forced failure", retryable: true });
    } finally {
      chat.close();
    }
  });

  it("reports a thrown non-ParleyError as INTERNAL", async () => {
    const chat = client();
    try {
      await expect(chat.markRead({ room: "r", seq: 1n })).rejects.toMatchObject({ category: ErrorCategory.INTERNAL });
    } finally {
      chat.close();
    }
  });

  it("streams server-streaming responses as an async iterable", async () => {
    const chat = client();
    try {
      const seen: string[] = [];
      for await (const event of chat.subscribe({ room: "r" })) seen.push(event.event.case === "message" ? `m${event.event.value.seq}` : "caught-up");
      expect(seen).toEqual(["m1", "m2", "m3", "caught-up"]);
    } finally {
      chat.close();
    }
  });

  it("carries bidirectional streams in order", async () => {
    const chat = client();
    try {
      const stream = chat.sendStream();
      const answers: bigint[] = [];
      const done = (async () => {
        for await (const answer of stream) answers.push((answer as { streamSeq: bigint }).streamSeq);
      })();
      for (let i = 1n; i <= 100n; i++) stream.write({ streamSeq: i, body: `b${i}` });
      stream.end();
      await done;
      expect(answers).toEqual(Array.from({ length: 100 }, (_, i) => BigInt(i + 1)));
    } finally {
      chat.close();
    }
  });

  it("answers a request that does not decode with VALIDATION, not a bare INTERNAL", async () => {
    const { Client, credentials, Metadata } = await import("@grpc/grpc-js");
    const raw = new Client(server.address, credentials.createInsecure());
    try {
      const error = await new Promise<unknown>((resolve) => {
        raw.makeUnaryRequest(
          "/parley.v1.ChatService/SendMessage",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0x0a, 0xff, 0xff]), // field 1, length far beyond the message
          new Metadata(),
          {},
          (e) => { resolve(e); },
        );
      });
      const { fromGrpcError } = await import("../../src/runtime/grpc/status.js");
      expect(fromGrpcError(error).category).toBe(ErrorCategory.VALIDATION);
    } finally {
      raw.close();
    }
  });
});

describe("a client's reconnect backoff", () => {
  it("finds a server restarted on the same address within about 2 s, however long it was down (grpc-js's own backoff grows to 120 s)", async () => {
    const first = await startGrpcServer({ address: "127.0.0.1:0", services: [echoChat()] });
    const address = first.address;
    const health = createClient(Health, address);
    try {
      expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
      await first.shutdown(0);
      // Down for 6 s: with grpc-js's defaults (1 s, ×1.6) the next attempt would come ~3.4 s after the restart.
      const downUntil = performance.now() + 6_000;
      while (performance.now() < downUntil) {
        await health.check({ service: "" }, { timeoutMs: 200 }).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const again = await startGrpcServer({ address, services: [echoChat()] });
      const restartedAt = performance.now();
      try {
        for (;;) {
          const answer = await health.check({ service: "" }, { timeoutMs: 200 }).catch(() => undefined);
          if (answer?.status === ServingStatus.SERVING) break;
          if (performance.now() - restartedAt > 10_000) throw new Error("the client did not find the server again within 10 s");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(performance.now() - restartedAt).toBeLessThan(2_500);
      } finally {
        await again.shutdown(0);
      }
    } finally {
      health.close();
    }
  }, 30_000);
});
