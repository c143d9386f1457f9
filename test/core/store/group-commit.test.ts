import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GroupCommitter } from "../../../src/core/store/group-commit.js";
import { openOrm, type Orm } from "../../../src/core/store/orm.js";
import { UnitOfWork } from "../../../src/core/store/unit-of-work.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";
import { LogCapture } from "../../support/logs.js";

let db: TestDatabase;
let orm: Orm;

beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ databaseUrl: db.url, poolSize: 2 });
});

afterAll(async () => {
  await orm.close(true);
  await db.drop();
});

/** A committer whose batch is one real statement answering each command with itself. */
function echoCommitter(): GroupCommitter<number, number> {
  return new GroupCommitter<number, number>(new UnitOfWork(orm, new LogCapture("error").logger), {
    label: "test.echo",
    singleStatement: true,
    store: async (em, batch) => {
      await em.getConnection().execute("select 1");
      return batch.map((value) => ({ ok: true as const, value }));
    },
    contextOf: (value) => ({ value }),
  });
}

/** Resolves after `hops` chained promise reactions. */
function afterHops(hops: number): Promise<void> {
  let chain = Promise.resolve();
  for (let i = 0; i < hops; i++) chain = chain.then(() => undefined);
  return chain;
}

describe("GroupCommitter", () => {
  it("commits a command submitted from a continuation of the last batch, whatever the moment", async () => {
    const committer = echoCommitter();
    // A caller that submits again after some promise hops may land just
    // after the drain's last look at its queue: the command must still be
    // committed, not wait for a submit that never comes.
    for (let hops = 0; hops <= 40; hops++) {
      const second = committer.submit(hops).then(async () => {
        await afterHops(hops);
        return committer.submit(1000 + hops);
      });
      const answer = await Promise.race([second, new Promise((resolve) => setTimeout(resolve, 2_000, "stuck"))]);
      expect(answer, `submitted after ${hops} hops`).toBe(1000 + hops);
    }
  });
});
