import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, openOrm } from "../src/core/db/orm.js";
import { createTestDatabase, type TestDatabase } from "./support/database.js";

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
