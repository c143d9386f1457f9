import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { MessageStore } from "../../../src/core/chat/message-store.js";
import { migrate, openOrm, type Orm } from "../../../src/core/store/orm.js";
import { applySqlDefinitions, loadSqlDefinitions } from "../../../src/core/store/sql-definitions.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

const opened: { db: TestDatabase; orm: Orm }[] = [];

afterEach(async () => {
  for (const { db, orm } of opened.splice(0)) {
    await orm.close();
    await db.drop();
  }
});

async function freshDatabase(): Promise<{ db: TestDatabase; orm: Orm }> {
  const db = await createTestDatabase();
  const orm = await openOrm({ databaseUrl: db.url });
  opened.push({ db, orm });
  return { db, orm };
}

/** Stores one message in `room` through the store's function, and reads the room back. */
async function storeAndRead(orm: Orm, room: string, clientMsgId: string): Promise<{ stored: bigint; read: string[] }> {
  const store = new MessageStore("test");
  const em = orm.em.fork();
  const [outcome] = await store.storeBatch(em, [{ id: crypto.randomUUID(), room, sender: "ada", body: `body ${clientMsgId}`, clientMsgId }]);
  if (outcome?.kind !== "stored") throw new Error(`not stored: ${outcome?.kind}`);
  const read = await store.readAfter(em, room, 0n, 100);
  return { stored: outcome.message.seq, read: read.map((message) => message.body) };
}

const DEFINITION_NAMES = loadSqlDefinitions().map((definition) => `sql/${definition.name}`);

describe("repeatable SQL definitions", () => {
  it("are found as files beside the store, from the sources", () => {
    const names = loadSqlDefinitions().map((definition) => definition.name);
    expect(names).toContain("parley_store_chat_batch");
    const file = readFileSync(new URL("../../../src/core/store/sql/parley_store_chat_batch.sql", import.meta.url), "utf8");
    expect(loadSqlDefinitions().find((definition) => definition.name === "parley_store_chat_batch")?.sql).toBe(file);
  });

  it("are applied to a fresh database after the migrations, which then stores and reads messages", async () => {
    const { db, orm } = await freshDatabase();
    const applied = await migrate(orm);
    expect(applied.slice(-DEFINITION_NAMES.length)).toEqual(DEFINITION_NAMES);
    expect(applied).toContain("Migration20261129000000_chat_store_answers");
    const recorded = await db.sql<{ name: string; sha256: string }>("select name, sha256 from parley_sql_definitions order by name");
    expect(recorded).toEqual(loadSqlDefinitions().map(({ name, sha256 }) => ({ name, sha256 })));
    expect(await storeAndRead(orm, "lobby", "c1")).toEqual({ stored: 1n, read: ["body c1"] });
  });

  it("are not applied again when unchanged", async () => {
    const { db, orm } = await freshDatabase();
    await migrate(orm);
    const [before] = await db.sql<{ applied_at: string }>("select applied_at::text from parley_sql_definitions where name = 'parley_store_chat_batch'");
    expect(await migrate(orm)).toEqual([]);
    const [after] = await db.sql<{ applied_at: string }>("select applied_at::text from parley_sql_definitions where name = 'parley_store_chat_batch'");
    expect(after).toEqual(before);
  });

  it("are applied again, in place of what the database holds, when the recorded checksum differs", async () => {
    const { db, orm } = await freshDatabase();
    await migrate(orm);
    // A function of the same signature that stores nothing, recorded under another checksum.
    await db.sql(`create or replace function parley_store_chat_batch(messages jsonb, notify_origin text)
      returns table (ord int, kind text, id uuid, room_id text, seq bigint, sender text, body text, client_msg_id text, created_at timestamptz)
      language sql as $$ select null::int, null::text, null::uuid, null::text, null::bigint, null::text, null::text, null::text, null::timestamptz where false $$`);
    await db.sql("update parley_sql_definitions set sha256 = 'tampered' where name = 'parley_store_chat_batch'");
    await expect(storeAndRead(orm, "lobby", "c1")).rejects.toThrow(/no outcome/);
    expect(await migrate(orm)).toEqual(["sql/parley_store_chat_batch"]);
    expect(await storeAndRead(orm, "lobby", "c2")).toEqual({ stored: 1n, read: ["body c2"] });
  });

  it("upgrade a database migrated before they existed, keeping its messages", async () => {
    const { db, orm } = await freshDatabase();
    // As the four migrations left a database: the function made by a
    // migration (its body then was this file's), no record of definitions.
    await orm.migrator.up();
    const definition = loadSqlDefinitions().find((candidate) => candidate.name === "parley_store_chat_batch");
    await db.sql(definition?.sql ?? "");
    expect(await db.sql("select to_regclass('parley_sql_definitions') as t")).toEqual([{ t: null }]);
    expect(await storeAndRead(orm, "lobby", "before")).toEqual({ stored: 1n, read: ["body before"] });

    expect(await migrate(orm)).toEqual(DEFINITION_NAMES);
    expect(await db.sql("select name from parley_sql_definitions")).toEqual([{ name: "parley_store_chat_batch" }]);
    expect(await storeAndRead(orm, "lobby", "after")).toEqual({ stored: 2n, read: ["body before", "body after"] });
    expect(await migrate(orm)).toEqual([]);
    expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe("");
  });

  it("leave nothing applied when a definition fails", async () => {
    const { db, orm } = await freshDatabase();
    await orm.migrator.up();
    const broken = [...loadSqlDefinitions(), { name: "zz_broken", sql: "create function broken( as", sha256: "x" }];
    await expect(applySqlDefinitions(orm, broken)).rejects.toThrow(/syntax error/);
    expect(await db.sql("select to_regclass('parley_sql_definitions') as t")).toEqual([{ t: null }]);
    expect(await db.sql("select count(*)::int as n from pg_proc where proname = 'parley_store_chat_batch'")).toEqual([{ n: 0 }]);
  });
});
