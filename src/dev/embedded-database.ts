import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import type { Logger } from "../runtime/index.js";

export interface EmbeddedDatabase {
  /** A postgres:// URL for the MikroORM PostgreSQL driver, like a real server's. */
  readonly url: string;
  readonly dataDir: string;
  /** How many connections the driver may open: one (see startEmbeddedDatabase). */
  readonly poolSize: number;
  stop(): Promise<void>;
}

/**
 * PostgreSQL embedded in the process (PGlite), served over the PostgreSQL wire
 * protocol on a loopback port, so that the embedded mode runs the same
 * driver, the same migrations and the same SQL as production. Data lives in
 * `dataDir` and survives restarts.
 *
 * PGlite has one backend session: transactions are serialized, and a query
 * on another connection waits while a transaction is open. parley never
 * holds a transaction open while waiting on another connection, so this
 * costs throughput, not correctness.
 *
 * The driver gets one connection. The socket server keeps a connection's
 * messages together only while a transaction is open, so the
 * extended-protocol steps (Parse, Bind, Execute) of two connections
 * interleave on the one session and fail with SQLSTATE 26000 (unnamed
 * prepared statement does not exist) or 34000. A second connection would
 * only queue behind the first anyway.
 */
export async function startEmbeddedDatabase(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  const directory = resolve(dataDir);
  mkdirSync(directory, { recursive: true });
  const db = await PGlite.create({ dataDir: directory });
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 64 });
  await server.start();
  const url = `postgres://postgres@${server.getServerConn()}/postgres`;
  logger.info({ data_dir: directory }, "embedded PostgreSQL (PGlite) started");
  return {
    url,
    dataDir: directory,
    poolSize: 1,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
