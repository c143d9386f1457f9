import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { MikroORM } from "@mikro-orm/postgresql";

/**
 * Repeatable SQL definitions: each file in ./sql is the current definition of
 * one database object (a function), written to be applied again and again
 * (`create or replace`, or `drop ... if exists` + `create` where the
 * signature may change). After the versioned migrations, every migrate
 * applies each file whose SHA-256 differs from the one recorded in
 * `parley_sql_definitions`, so that changing a function is a diff of its
 * file instead of a new migration that copies its whole body.
 *
 * Files are applied in name order, all in one transaction, and recorded in
 * the same transaction: a file that fails leaves the database as it was.
 * `migrate` (orm.ts) calls this under its advisory lock, so two cores
 * starting at once do not race.
 */

/** The table of applied definitions; MikroORM's schema diff leaves it alone (see orm.ts). */
export const SQL_DEFINITIONS_TABLE = "parley_sql_definitions";

/** Resolved from this module, so that the files are found from the sources under tsx and under vitest alike. */
const SQL_DIRECTORY = new URL("./sql/", import.meta.url);

export interface SqlDefinition {
  /** The file name without `.sql`: the name recorded. */
  readonly name: string;
  readonly sql: string;
  readonly sha256: string;
}

/** Every definition file, in name order. */
export function loadSqlDefinitions(): SqlDefinition[] {
  return readdirSync(SQL_DIRECTORY)
    .filter((file) => file.endsWith(".sql"))
    .sort()
    .map((file) => {
      const sql = readFileSync(new URL(file, SQL_DIRECTORY), "utf8");
      return { name: file.slice(0, -".sql".length), sql, sha256: createHash("sha256").update(sql).digest("hex") };
    });
}

/** Applies the definitions that are new or changed; returns their names. */
export async function applySqlDefinitions(orm: MikroORM, definitions: readonly SqlDefinition[] = loadSqlDefinitions()): Promise<string[]> {
  const knex = orm.em.getConnection().getKnex();
  return knex.transaction(async (trx) => {
    await trx.raw(
      `create table if not exists "${SQL_DEFINITIONS_TABLE}" ("name" text not null primary key, "sha256" text not null, "applied_at" timestamptz(6) not null default now())`,
    );
    const recorded = await trx.raw<{ rows: { name: string; sha256: string }[] }>(`select name, sha256 from "${SQL_DEFINITIONS_TABLE}"`);
    const applied = new Map(recorded.rows.map((row) => [row.name, row.sha256]));
    const changed = definitions.filter((definition) => applied.get(definition.name) !== definition.sha256);
    for (const definition of changed) {
      // Without bindings, knex sends the text as written (`?` included).
      await trx.raw(definition.sql);
      await trx.raw(
        `insert into "${SQL_DEFINITIONS_TABLE}" (name, sha256) values (?, ?) on conflict (name) do update set sha256 = excluded.sha256, applied_at = now()`,
        [definition.name, definition.sha256],
      );
    }
    return changed.map((definition) => definition.name);
  });
}
