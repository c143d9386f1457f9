import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatMessageSchema } from "../../../gen/parley/v1/chat_pb.js";
import { MessageStore } from "../../../src/core/chat/message-store.js";
import { CHAT_MESSAGE_COLUMNS } from "../../../src/core/store/chat-tables.js";
import { migrate, openOrm, type Orm } from "../../../src/core/store/orm.js";
import { createTestDatabase, type TestDatabase } from "../../support/database.js";

// The store's side of docs/adding-a-field.md: each test here fails when one
// of its steps for a new ChatMessage field is forgotten.

let db: TestDatabase;
let orm: Orm;

beforeAll(async () => {
  db = await createTestDatabase();
  orm = await openOrm({ databaseUrl: db.url });
  await migrate(orm);
});

afterAll(async () => {
  await orm.close();
  await db.drop();
});

describe("the chat_messages mapping", () => {
  it("reads one column for each field of ChatMessage", () => {
    expect(CHAT_MESSAGE_COLUMNS).toHaveLength(ChatMessageSchema.fields.length);
  });

  it("reads every column of chat_messages, no more (the migration and the mapping agree)", async () => {
    const columns = await db.sql<{ column_name: string }>(
      "select column_name from information_schema.columns where table_schema = current_schema() and table_name = 'chat_messages' order by column_name",
    );
    expect(columns.map((column) => column.column_name)).toEqual([...CHAT_MESSAGE_COLUMNS].sort());
  });

  it("gets every column it reads from parley_store_chat_batch (the function and the mapping agree)", async () => {
    const [result] = await db.sql<{ names: string[] }>(
      "select proargnames as names from pg_proc where proname = 'parley_store_chat_batch'",
    );
    // proargnames lists the arguments, then the result's columns.
    expect(result?.names).toEqual(["messages", "notify_origin", "allowed_send", "implicit_rooms", "ord", "kind", ...CHAT_MESSAGE_COLUMNS]);
  });

  it("answers a send with the message as it is read back, field for field", async () => {
    const store = new MessageStore("test", { implicitRooms: true });
    const em = orm.em.fork();
    const [stored] = await store.storeBatch(em, [{ id: crypto.randomUUID(), room: "mapping", sender: "ada", body: "é 😀", clientMsgId: "c1" }]);
    const [duplicate] = await store.storeBatch(em, [{ id: crypto.randomUUID(), room: "mapping", sender: "ada", body: "é 😀", clientMsgId: "c1" }]);
    const read = await store.readAfter(em, "mapping", 0n, 10);
    if (stored?.kind !== "stored" || duplicate?.kind !== "duplicate") throw new Error(`not stored then duplicate: ${stored?.kind}, ${duplicate?.kind}`);
    expect(read).toEqual([stored.message]);
    expect(duplicate.message).toEqual(stored.message);
    expect(read[0]).toMatchObject({ room: "mapping", seq: 1n, sender: "ada", body: "é 😀", clientMsgId: "c1" });
  });
});
