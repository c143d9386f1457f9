import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintToken, ROOMS_RELAY_SCOPE } from "../../src/runtime/auth/tokens.js";
import { TEST_JWT_SECRET } from "../support/core.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { type ParleyProcess, spawnCore, spawnParley, withoutUnset } from "../support/processes.js";
import { WsTestClient } from "../support/ws-client.js";

// `parley core` + `parley bridge` as an operator runs them: the bridge gets
// no signing key, only its own relay token (in a file), and still serves
// users, whose tokens core verifies.

let db: TestDatabase;
const dir = mkdtempSync(join(tmpdir(), "parley-split-"));
const processes: ParleyProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const child of processes) await child.stop();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("the bridge's own credential", () => {
  it("`parley bridge` without one refuses to start, naming the variables (a signing key is not one)", async () => {
    const failure = await promisify(execFile)(process.execPath, ["bin/parley.js", "bridge"], {
      env: withoutUnset({ ...process.env, PARLEY_JWT_SECRET: TEST_JWT_SECRET, PARLEY_BRIDGE_TOKEN: undefined, PARLEY_BRIDGE_TOKEN_FILE: undefined, PARLEY_HTTP_ADDR: "127.0.0.1:0" }),
      timeout: 30_000,
    }).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toMatch(/the bridge needs its own credential at core: a client certificate .*PARLEY_BRIDGE_TOKEN_FILE .* or PARLEY_BRIDGE_TOKEN; it never needs a signing key/);
  });

  it("with a relay token file and no key, the bridge serves users whose tokens core verifies, and refuses tokens core refuses", async () => {
    const core = await spawnCore({ DATABASE_URL: db.url, PARLEY_JWT_SECRET: TEST_JWT_SECRET, PARLEY_MIGRATE: "1", PARLEY_RELAY_SUBJECTS: "parley-bridge-split" });
    processes.push(core.process);
    const tokenFile = join(dir, "bridge-token");
    writeFileSync(tokenFile, `${await mintToken(TEST_JWT_SECRET, "parley-bridge-split", { scopes: [ROOMS_RELAY_SCOPE] })}\n`, { mode: 0o600 });
    const bridge = spawnParley("bridge", { PARLEY_CORE_ADDR: core.address, PARLEY_HTTP_ADDR: "127.0.0.1:0", PARLEY_JWT_SECRET: undefined, PARLEY_BRIDGE_TOKEN_FILE: tokenFile });
    processes.push(bridge);
    const serving = await bridge.waitFor((line) => line.msg === "bridge serving");
    const base = `http://${String(serving.http)}`;

    const client = await WsTestClient.connect(base, "/ws/chat/split-room", { token: await mintToken(TEST_JWT_SECRET, "erin") });
    try {
      const { frame: welcome } = await client.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
      expect(welcome.kind.case === "welcome" ? welcome.kind.value.user : undefined).toBe("erin");
      await client.waitFor((frame) => frame.kind.case === "caughtUp", { what: "caught_up" });
      client.sendJson({ requestId: "s1", request: { case: "send", value: { seq: 1n, body: "through a keyless bridge", clientMsgId: "split-1" } } });
      const { frame: ack } = await client.waitFor((frame) => frame.requestId === "s1", { what: "the ack" });
      expect(ack.kind.case === "sendAck" ? ack.kind.value.message?.sender : ack.kind.case).toBe("erin");
    } finally {
      await client.close();
    }

    const refused = await WsTestClient.refusal(base, "/ws", { token: await mintToken("a-key-that-core-does-not-know-at-all-xx", "erin") });
    expect(refused.status).toBe(401);
    expect(refused.body.message).toMatch(/signature does not verify/);
  });
});
