import type { MigrationObject } from "@mikro-orm/core";
import { Migration20261128000000_chat } from "./Migration20261128000000_chat.js";
import { Migration20261128010000_notifications } from "./Migration20261128010000_notifications.js";
import { Migration20261128020000_chat_store_function } from "./Migration20261128020000_chat_store_function.js";
import { Migration20261129000000_chat_store_answers } from "./Migration20261129000000_chat_store_answers.js";

/**
 * Every migration, in order. Listed explicitly (rather than found by a file
 * glob) so they run the same from TypeScript sources and from any bundle.
 */
export const MIGRATIONS: MigrationObject[] = [
  { name: "Migration20261128000000_chat", class: Migration20261128000000_chat },
  { name: "Migration20261128010000_notifications", class: Migration20261128010000_notifications },
  { name: "Migration20261128020000_chat_store_function", class: Migration20261128020000_chat_store_function },
  { name: "Migration20261129000000_chat_store_answers", class: Migration20261129000000_chat_store_answers },
];
