import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { createClient, openChannel, type ServiceClient } from "../../src/runtime/grpc/client.js";
import { ResetPacer } from "../../src/runtime/grpc/reset-pacer.js";
import { fromGrpcError } from "../../src/runtime/grpc/status.js";
import { ParleyError } from "../../src/wire/errors/parley-error.js";
import { startTestCore, TEST_RELAY_TOKEN, type TestCore } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { openServerStream, type OpenStream } from "../support/open-streams.js";

let db: TestDatabase;
let core: TestCore;

beforeAll(async () => {
  db = await createTestDatabase();
  core = await startTestCore(db);
});

afterAll(async () => {
  await core.stop();
  await db.drop();
});

/** A relay's chat client on a channel of its own (the relay is exempt from per-caller stream caps). */
function relayChat(resets?: ResetPacer): { chat: ServiceClient<typeof ChatService>; close(): void } {
  const channel = openChannel(core.core.address);
  const chat = createClient(ChatService, core.core.address, { channel, resets, headers: () => ({ authorization: `Bearer ${TEST_RELAY_TOKEN.current()}` }) });
  return { chat, close: () => { channel.close(); } };
}

/**
 * Opens `total` subscriptions in batches and cancels each batch as soon as it
 * is open, while one more subscription stays open throughout, as every other
 * call on the session would: what ended it (or undefined) is returned.
 */
async function churn(chat: ServiceClient<typeof ChatService>, total: number): Promise<ParleyError | undefined> {
  const room = "reset-churn";
  const bystander = await openServerStream((signal) => chat.subscribe({ room }, { signal }));
  if (bystander.refused) throw bystander.refused;
  let ended: ParleyError | undefined;
  const watching = (async () => {
    try {
      while ((await bystander.open.rest.next()).done !== true);
      ended = new ParleyError(ErrorCategory.UNAVAILABLE, "the subscription ended");
    } catch (error) {
      ended ??= fromGrpcError(error);
    }
  })();
  for (let done = 0; done < total && ended === undefined; done += 100) {
    const batch = await Promise.all(Array.from({ length: 100 }, () => openServerStream((signal) => chat.subscribe({ room }, { signal }))));
    const open: OpenStream[] = [];
    for (const opening of batch) if (opening.open) open.push(opening.open);
    for (const stream of open) stream.cancel();
  }
  // The server closes the session when the resets arrive, a moment after they leave.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const outcome = ended;
  bystander.open.cancel();
  await watching;
  return outcome;
}

describe("ResetPacer", () => {
  it("cancels within the budget at once and the rest in order as it refills; a call that ended meanwhile costs nothing; after flush, at once", async () => {
    const cancelled: string[] = [];
    const call = (name: string) => ({ cancel: () => { cancelled.push(name); } });
    const pacer = new ResetPacer({ ratePerSecond: 2, burst: 1 });
    pacer.cancel(call("a"));
    let bEnded = false;
    pacer.cancel(call("b"), () => bEnded);
    pacer.cancel(call("c"));
    pacer.cancel(call("d"));
    expect(cancelled).toEqual(["a"]);
    expect(pacer.waiting).toBe(3);
    bEnded = true;
    // One token per 500 ms: b is dropped without one, c takes the first, d waits for the next.
    const deadline = performance.now() + 2_000;
    while (cancelled.length < 2 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(cancelled).toEqual(["a", "c"]);
    pacer.flush();
    expect(cancelled).toEqual(["a", "c", "d"]);
    pacer.cancel(call("e"));
    expect(cancelled).toEqual(["a", "c", "d", "e"]);
  });


  it("without pacing, a burst of cancellations ends the whole session (the server's rapid-reset defence)", async () => {
    const unpaced = relayChat();
    const failure = await churn(unpaced.chat, 1_600);
    unpaced.close();
    expect(failure?.category).toBe(ErrorCategory.UNAVAILABLE);
  }, 60_000);

  it("paced, the same churn leaves the session and every call on it alone; the cancellations past the budget wait", async () => {
    const saturated: number[] = [];
    const resets = new ResetPacer({ ratePerSecond: 25, burst: 500 }, (waiting) => saturated.push(waiting));
    const paced = relayChat(resets);
    expect(await churn(paced.chat, 1_600)).toBeUndefined();
    expect(saturated.length).toBeGreaterThan(0);
    expect(resets.waiting).toBeGreaterThan(0);
    resets.flush();
    paced.close();
  }, 60_000);
});
