import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Migration } from "@mikro-orm/migrations";
import { afterEach, describe, expect, it } from "vitest";
import { MessageStore } from "../../../src/core/chat/message-store.js";
import { migrate, migratorOf, openOrm, type Orm } from "../../../src/core/store/orm.js";
import { MIGRATIONS, sqlMigrations } from "../../../src/core/store/migrations/index.js";
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
  const store = new MessageStore("test", { implicitRooms: true });
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

  it("two cores migrating one fresh database at once: one applies everything, the other nothing, both succeed", async () => {
    const { db, orm } = await freshDatabase();
    const second = await openOrm({ databaseUrl: db.url });
    try {
      const results = await Promise.all([migrate(orm), migrate(second)]);
      const [longer, shorter] = [...results].sort((a, b) => b.length - a.length);
      expect(longer).toContain("Migration20261129000000_chat_store_answers");
      expect(longer?.slice(-DEFINITION_NAMES.length)).toEqual(DEFINITION_NAMES);
      expect(shorter).toEqual([]);
      expect(await storeAndRead(orm, "raced", "r1")).toEqual({ stored: 1n, read: ["body r1"] });
    } finally {
      await second.close();
    }
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
    // As if the function had been changed by hand: gone, and recorded under another checksum.
    await db.sql("drop function parley_store_chat_batch(jsonb, text, int[], boolean)");
    await db.sql("update parley_sql_definitions set sha256 = 'tampered' where name = 'parley_store_chat_batch'");
    await expect(storeAndRead(orm, "lobby", "c1")).rejects.toThrow(/parley_store_chat_batch.*does not exist/);
    expect(await migrate(orm)).toEqual(["sql/parley_store_chat_batch"]);
    expect(await storeAndRead(orm, "lobby", "c2")).toEqual({ stored: 1n, read: ["body c2"] });
  });

  it("upgrade a database migrated before they existed, keeping its messages", async () => {
    const { db, orm } = await freshDatabase();
    // As the four migrations left a database: the function made by a
    // migration (its body then was this file's), no record of definitions.
    await (await migratorOf(orm)).up();
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

  it("run as written, `?` (a jsonb operator) included", async () => {
    const { db, orm } = await freshDatabase();
    const probe = { name: "probe_has_a", sql: "create or replace function probe_has_a(j jsonb) returns boolean language sql as $$ select j ? 'a' $$;", sha256: "1" };
    expect(await applySqlDefinitions(orm, [probe])).toEqual(["probe_has_a"]);
    expect(await db.sql(`select probe_has_a('{"a": 1}') as has_a`)).toEqual([{ has_a: true }]);
  });

  it("leave nothing applied when a definition fails", async () => {
    const { db, orm } = await freshDatabase();
    await (await migratorOf(orm)).up();
    const broken = [...loadSqlDefinitions(), { name: "zz_broken", sql: "create function broken( as", sha256: "x" }];
    await expect(applySqlDefinitions(orm, broken)).rejects.toThrow(/syntax error/);
    expect(await db.sql("select to_regclass('parley_sql_definitions') as t")).toEqual([{ t: null }]);
    expect(await db.sql("select count(*)::int as n from pg_proc where proname = 'parley_store_chat_batch'")).toEqual([{ n: 0 }]);
  });
});

describe("versioned .sql migrations", () => {
  it("are found in name order and run as written, `?` included", async () => {
    const directory = mkdtempSync(join(tmpdir(), "parley-migrations-"));
    try {
      writeFileSync(join(directory, "Migration20991231000001_second.sql"), `insert into probe values ('{"a": 1}'::jsonb ? 'a');`);
      writeFileSync(join(directory, "Migration20991231000000_first.sql"), "create table probe (has_a boolean not null);");
      writeFileSync(join(directory, "notes.sql"), "not a migration");
      const found = sqlMigrations(pathToFileURL(`${directory}/`));
      expect(found.map((migration) => migration.name)).toEqual(["Migration20991231000000_first", "Migration20991231000001_second"]);

      const { db, orm } = await freshDatabase();
      const driver = orm.em.getDriver();
      for (const { class: MigrationClass } of found) {
        const migration = new (MigrationClass as new (...args: ConstructorParameters<typeof Migration>) => Migration)(driver, orm.config);
        await migration.up();
        for (const query of migration.getQueries()) await orm.em.getConnection().execute(query as string);
      }
      expect(await db.sql("select has_a from probe")).toEqual([{ has_a: true }]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("are dated after every TypeScript migration (the list is in order)", () => {
    const names = MIGRATIONS.map((migration) => migration.name);
    expect(names).toEqual([...names].sort());
  });
});
