import { Migration } from "@mikro-orm/migrations";

/**
 * Created `parley_store_chat_batch`, whose definition now lives in
 * src/core/store/sql/parley_store_chat_batch.sql and is applied after the
 * migrations whenever that file changes (sql-definitions.ts). This migration
 * stays, empty, under its name: databases have it on record as applied, and
 * the order of the history is kept. Its old body is in the git history; a
 * fresh database no longer creates a function only to replace it.
 */
export class Migration20261128020000_chat_store_function extends Migration {
  override up(): void {
    // Nothing: the function is a repeatable definition.
  }

  override down(): void {
    this.addSql(`drop function if exists parley_store_chat_batch(jsonb, text);`);
    // So that the next migrate creates it again.
    this.addSql(`do $$ begin if to_regclass('parley_sql_definitions') is not null then delete from parley_sql_definitions where name = 'parley_store_chat_batch'; end if; end $$;`);
  }
}
