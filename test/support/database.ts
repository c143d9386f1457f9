import { randomBytes } from "node:crypto";
import pg from "pg";

/** The server the tests use: the machine's PostgreSQL unless told otherwise. */
export const TEST_SERVER_URL = process.env.PARLEY_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  /** Runs one SQL statement as the superuser against this database. */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/**
 * A fresh, empty database for one test file, dropped afterwards, so that no
 * test depends on data left by another run.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `parley_test_${process.pid}_${randomBytes(4).toString("hex")}`;
  await withClient(TEST_SERVER_URL, (client) => client.query(`create database "${name}"`));
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    sql: <T extends pg.QueryResultRow>(text: string, params?: unknown[]) =>
      withClient(url.toString(), async (client) => (await client.query<T>(text, params)).rows),
    drop: () => withClient(TEST_SERVER_URL, (client) => client.query(`drop database if exists "${name}" with (force)`)).then(() => undefined),
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
