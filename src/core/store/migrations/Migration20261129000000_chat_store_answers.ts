import { Migration } from "@mikro-orm/migrations";

/**
 * Redefined `parley_store_chat_batch` to answer from what it inserts; that
 * body is now src/core/store/sql/parley_store_chat_batch.sql, applied as a
 * repeatable definition (sql-definitions.ts). Kept, empty, under its name for
 * the databases that have it on record; see
 * Migration20261128020000_chat_store_function.
 */
export class Migration20261129000000_chat_store_answers extends Migration {
  override up(): void {
    // Nothing: the function is a repeatable definition.
  }
}
