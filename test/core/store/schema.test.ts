import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, openOrm } from "../../../src/core/store/orm.js";
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
    const env = { ...process.env, DATABASE_URL: "" };
    const failure = await run("node", ["bin/parley.js", "migrate"], { env }).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain("DATABASE_URL is required");
  });
});

describe("parley_store_chat_batch", () => {
  it("looks idempotency keys up by index even when its cached plan was made on an empty, analyzed table", async () => {
    // A plan made once per connection must not be a sequential scan that
    // grows with every message stored: the function rules scans out.
    const fresh = await createTestDatabase();
    const orm = await openOrm({ databaseUrl: fresh.url });
    const client = new pg.Client({ connectionString: fresh.url });
    try {
      await migrate(orm);
      await client.connect();
      await client.query("analyze");
      const scans = async () => {
        await client.query("select pg_stat_force_next_flush()");
        await client.query("select pg_stat_clear_snapshot()");
        const { rows } = await client.query<{ seq_scan: string; idx_scan: string }>(
          "select seq_scan::text, coalesce(idx_scan, 0)::text as idx_scan from pg_stat_user_tables where relname = 'chat_messages'",
        );
        return { seq: Number(rows[0]?.seq_scan), idx: Number(rows[0]?.idx_scan) };
      };
      const before = await scans();
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
        const { rows } = await client.query<{ kind: string; seq: string }>("select kind, seq::text from parley_store_chat_batch($1::jsonb, 'test')", [JSON.stringify(batch)]);
        expect(rows.map((row) => row.kind)).toEqual(["stored", "stored", "stored"]);
      }
      const after = await scans();
      expect(after.seq - before.seq).toBe(0);
      expect(after.idx - before.idx).toBeGreaterThanOrEqual(12 * 3);
    } finally {
      await client.end();
      await orm.close();
      await fresh.drop();
    }
  });
});
