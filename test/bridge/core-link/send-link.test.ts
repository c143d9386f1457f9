// The send link over a real grpc-js client whose channel is closed: grpc-js
// throws when a stream is opened on it, and every send must still be
// answered exactly once, after the call that made it, and never stored later.
import { describe, expect, it } from "vitest";
import { ChatService, type SendStreamResponse } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { SendLink } from "../../../src/bridge/core-link/send-link.js";
import { createClient } from "../../../src/runtime/grpc/client.js";
import { LogCapture } from "../../support/logs.js";

describe("SendLink on a closed channel", () => {
  it("answers each send once, UNAVAILABLE and retryable, never during the call, and keeps nothing pending", async () => {
    const chat = createClient(ChatService, "127.0.0.1:1");
    chat.close();
    const link = new SendLink({ chat, logger: new LogCapture("info").logger, answerTimeoutMs: 200 });
    const answers: { id: string; response: SendStreamResponse }[] = [];
    let inCall = true;
    for (const id of ["a", "b"]) {
      link.send({ room: "lobby", body: id, clientMsgId: id, actingToken: "", traceparent: "" }, (response) => {
        expect(inCall, "answered during the call").toBe(false);
        answers.push({ id, response });
      });
    }
    inCall = false;
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(answers.map((a) => a.id)).toEqual(["a", "b"]);
    for (const { response } of answers) {
      expect(response.result.case).toBe("error");
      if (response.result.case === "error") expect(response.result.value).toMatchObject({ category: ErrorCategory.UNAVAILABLE, retryable: true });
    }
    expect(link.inFlight).toBe(0);
    link.close();
  });
});
