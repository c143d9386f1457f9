import type { IMigrator } from "@mikro-orm/core";
import { MikroORM } from "@mikro-orm/postgresql";
import { ENTITIES } from "./entities.js";
import pg from "pg";
import { applySqlDefinitions, SQL_DEFINITIONS_TABLE } from "./sql-definitions.js";
import type { Logger } from "../../runtime/index.js";

export type Orm = MikroORM;

export interface OrmOptions {
  readonly databaseUrl: string;
  /** Connection pool size (default 10). */
  readonly poolSize?: number;
  /** Called with each SQL statement when set (debugging). */
  readonly debug?: boolean;
  /** Where the query builder's own warnings go (a pooled connection that dropped); its console otherwise. */
  readonly logger?: Logger;
}

/**
 * Opens MikroORM on PostgreSQL. `allowGlobalContext: false` makes use of the
 * global EntityManager outside a unit of work throw: every call must fork its
 * own (see unit-of-work.ts). Inside a running transaction MikroORM routes the
 * global EntityManager to that transaction, which is harmless.
 */
export async function openOrm(options: OrmOptions): Promise<Orm> {
  return MikroORM.init({
    clientUrl: options.databaseUrl,
    entities: ENTITIES,
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: options.debug ?? false,
    pool: { min: 1, max: options.poolSize ?? 10 },
    // knex writes "Connection Error: ..." to the console when a pooled
    // connection drops (a database restart): a JSON log line instead.
    ...(options.logger === undefined ? {} : { driverOptions: { log: knexLog(options.logger) } }),
    // The list of migrations is added by migratorOf, which loads them.
    migrations: {
      tableName: "parley_migrations",
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      silent: true,
    },
    // The record of applied SQL definitions is no entity: the schema diff must not drop it.
    schemaGenerator: { skipTables: [SQL_DEFINITIONS_TABLE] },
    discovery: { warnWhenNoEntities: false },
  });
}

function knexLog(logger: Logger) {
  const warn = (message: unknown) => {
    logger.warn({ category: "UNAVAILABLE", component: "database-pool" }, String(message));
  };
  return { warn, error: warn, deprecate: warn, debug: () => undefined };
}

/**
 * The ORM's migrator, with parley's migrations. Its package (and umzug,
 * and a command-line library under it) is loaded on first use only: a
 * fifth of a core's start-up went to loading it, and a core that does not
 * migrate never needs it.
 */
export async function migratorOf(orm: Orm): Promise<IMigrator> {
  const [{ Migrator }, { MIGRATIONS }] = await Promise.all([import("@mikro-orm/migrations"), import("./migrations/index.js")]);
  // Registered once per ORM: the extension's factory is what orm.migrator calls.
  if (orm.config.getExtension("@mikro-orm/migrator") === undefined) {
    orm.config.set("migrations", { ...orm.config.get("migrations"), migrationsList: MIGRATIONS });
    Migrator.register(orm);
  }
  return orm.migrator;
}

/** Any constant: it only has to differ from other advisory locks taken on this database. */
const MIGRATE_LOCK_KEY = 0x7061726c; // "parl"

/**
 * Applies pending migrations, then the SQL definitions that are new or
 * changed (sql-definitions.ts); returns the names applied, definitions as
 * `sql/<name>`. Every path that migrates (`parley migrate`,
 * PARLEY_MIGRATE=1, the embedded database, the tests) comes here.
 *
 * Both steps run under one session-level advisory lock, held on a
 * connection of its own, so that two cores starting with PARLEY_MIGRATE=1
 * migrate one after the other (the second finds nothing to do). The lock's
 * connection runs no transaction: on the embedded database every connection
 * is one session, where an open transaction would make the others wait (and
 * where the lock is re-entrant: one process, nothing to race).
 */
export async function migrate(orm: Orm): Promise<string[]> {
  const lock = new pg.Client({ connectionString: orm.config.get("clientUrl") });
  // A lost lock connection must not crash the process: the migration's own
  // connections fail or finish on their own, and the lock is gone with it.
  lock.on("error", () => undefined);
  await lock.connect();
  try {
    await lock.query("select pg_advisory_lock($1)", [MIGRATE_LOCK_KEY]);
    const migrations = await (await migratorOf(orm)).up();
    const definitions = await applySqlDefinitions(orm);
    // Released explicitly: the embedded database keeps a session's locks
    // when its client disconnects (all its connections are one session).
    await lock.query("select pg_advisory_unlock($1)", [MIGRATE_LOCK_KEY]);
    return [...migrations.map((migration) => migration.name), ...definitions.map((name) => `sql/${name}`)];
  } finally {
    // On PostgreSQL closing the session releases the lock, also when a step
    // failed; a failure to close must not hide the step's own error.
    await lock.end().catch(() => undefined);
  }
}
