import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SEND_STANDINGS } from "../../../src/core/access/write-access.js";
import { migrate, openOrm } from "../../../src/core/store/orm.js";
import { withoutUnset } from "../../support/processes.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

const run = promisify(execFile);
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db.drop();
});

describe("migrations", () => {
  it("`parley migrate` applies them to an empty database, and a second run applies nothing", async () => {
    const env = { ...process.env, DATABASE_URL: db.url, PARLEY_LOG_LEVEL: "info" };
    const first = await run("node", ["bin/parley.js", "migrate"], { env });
    expect(first.stdout).toContain("migrations applied");
    expect(first.stdout).toContain("Migration20261128000000_chat");
    const second = await run("node", ["bin/parley.js", "migrate"], { env });
    expect(second.stdout).toContain("database is up to date");
  });

  it("leave the schema exactly as the entities describe it", async () => {
    const orm = await openOrm({ databaseUrl: db.url });
    try {
      expect(await migrate(orm)).toEqual([]);
      expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe("");
    } finally {
      await orm.close();
    }
  });

  it("`parley migrate` without DATABASE_URL names the variable and exits 2", async () => {
    const env = withoutUnset({ ...process.env, DATABASE_URL: undefined });
    const failure = await run("node", ["bin/parley.js", "migrate"], { env }).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain("DATABASE_URL is required");
  });
});

describe("parley_store_chat_batch", () => {
  it("looks idempotency keys, rooms and members up by index even when its cached plan was made on empty, analyzed tables", async () => {
    // A plan made once per connection must not be a sequential scan that
    // grows with every message stored: the function rules scans out.
    const fresh = await createTestDatabase();
    const orm = await openOrm({ databaseUrl: fresh.url });
    const client = new pg.Client({ connectionString: fresh.url });
    try {
      await migrate(orm);
      await client.connect();
      await client.query("analyze");
      const scans = async (table: string) => {
        await client.query("select pg_stat_force_next_flush()");
        await client.query("select pg_stat_clear_snapshot()");
        const { rows } = await client.query<{ seq_scan: string; idx_scan: string }>(
          "select seq_scan::text, coalesce(idx_scan, 0)::text as idx_scan from pg_stat_user_tables where relname = $1",
          [table],
        );
        return { seq: Number(rows[0]?.seq_scan), idx: Number(rows[0]?.idx_scan) };
      };
      const tables = ["chat_messages", "rooms", "room_members"];
      const allScans = async () => Promise.all(tables.map(scans));
      const before = await allScans();
      // More calls than PostgreSQL's five custom plans before it settles on a generic one.
      for (let call = 0; call < 12; call++) {
        const batch = [0, 1, 2].map((ord) => ({
          ord,
          id: crypto.randomUUID(),
          room_id: "plan-room",
          sender: `sender-${ord}`,
          body: `message ${call}.${ord}`,
          client_msg_id: `key-${call}`,
        }));
        // Rooms on first use: the first call creates the room, the others join their senders.
        const { rows } = await client.query<{ kind: string; seq: string }>("select kind, seq::text from parley_store_chat_batch($1::jsonb, 'test', $2::int[], true)", [
          JSON.stringify(batch),
          SEND_STANDINGS,
        ]);
        expect(rows.map((row) => row.kind)).toEqual(["stored", "stored", "stored"]);
      }
      const after = await allScans();
      expect(after.map((table, index) => table.seq - (before[index]?.seq ?? 0))).toEqual([0, 0, 0]);
      expect(after.map((table, index) => table.idx - (before[index]?.idx ?? 0) >= 12)).toEqual([true, true, true]);
    } finally {
      await client.end();
      await orm.close();
      await fresh.drop();
    }
  });
});
