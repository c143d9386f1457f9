import { readdirSync, readFileSync } from "node:fs";
import type { MigrationObject } from "@mikro-orm/core";
import { Migration } from "@mikro-orm/migrations";
import { Migration20261128000000_chat } from "./Migration20261128000000_chat.js";
import { Migration20261128010000_notifications } from "./Migration20261128010000_notifications.js";
import { Migration20261128020000_chat_store_function } from "./Migration20261128020000_chat_store_function.js";
import { Migration20261129000000_chat_store_answers } from "./Migration20261129000000_chat_store_answers.js";

/** The migrations written in TypeScript (with a way down), in order. */
const TYPESCRIPT_MIGRATIONS: MigrationObject[] = [
  { name: "Migration20261128000000_chat", class: Migration20261128000000_chat },
  { name: "Migration20261128010000_notifications", class: Migration20261128010000_notifications },
  { name: "Migration20261128020000_chat_store_function", class: Migration20261128020000_chat_store_function },
  { name: "Migration20261129000000_chat_store_answers", class: Migration20261129000000_chat_store_answers },
];

/** Resolved from this module: found from the sources under tsx and vitest alike. */
const MIGRATIONS_DIRECTORY = new URL("./", import.meta.url);

/**
 * A migration written as a file `MigrationYYYYMMDDhhmmss_what.sql` beside
 * this one: a change of the tables (say, a new column) is one new file, with
 * no list to extend. It runs as one statement batch in the migration's
 * transaction and has no way down (write a TypeScript migration for that).
 */
function sqlMigration(directory: URL, file: string): MigrationObject {
  const sql = readFileSync(new URL(file, directory), "utf8");
  class SqlMigration extends Migration {
    override up(): void {
      // Run as written: without bindings, knex leaves `?` (jsonb's operators) alone.
      this.addSql(sql);
    }
  }
  return { name: file.slice(0, -".sql".length), class: SqlMigration };
}

/** The .sql migrations in `directory`, in name order (the timestamp). */
export function sqlMigrations(directory: URL): MigrationObject[] {
  return readdirSync(directory)
    .filter((file) => /^Migration\d{14}_\w+\.sql$/.test(file))
    .sort()
    .map((file) => sqlMigration(directory, file));
}

/**
 * Every migration, in the order of the timestamps in their names (checked
 * here: a .sql migration dated before a TypeScript one would otherwise run
 * out of order). The TypeScript ones are listed explicitly rather than found
 * by a glob, so that no module loader is needed to find them.
 */
export const MIGRATIONS: MigrationObject[] = [...TYPESCRIPT_MIGRATIONS, ...sqlMigrations(MIGRATIONS_DIRECTORY)];

for (let index = 1; index < MIGRATIONS.length; index++) {
  const before = MIGRATIONS[index - 1]?.name ?? "";
  const name = MIGRATIONS[index]?.name ?? "";
  if (!(before < name)) throw new Error(`migration ${name} is not dated after ${before}`);
}
