import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import type { Logger } from "../runtime/index.js";

export interface EmbeddedDatabase {
  /** A postgres:// URL for the MikroORM PostgreSQL driver, like a real server's (its host is the socket's directory). */
  readonly url: string;
  /** The unix socket the database is served on, in a directory only this user may enter. */
  readonly socketPath: string;
  readonly dataDir: string;
  /** How many connections the driver may open: one (see startEmbeddedDatabase). */
  readonly poolSize: number;
  stop(): Promise<void>;
}

/**
 * PostgreSQL embedded in the process (PGlite), served over the PostgreSQL wire
 * protocol, so that the embedded mode runs the same driver, the same
 * migrations and the same SQL as production. Data lives in `dataDir` and
 * survives restarts.
 *
 * The wire protocol is served on a unix socket in `<dataDir>/run`, a
 * directory only the owner may enter (0700): PGlite accepts any connection
 * without a password, and a loopback TCP port would let every local user
 * and every local process (a browser page included) in. The driver reaches
 * it like a PostgreSQL socket, with the directory as the URL's host.
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
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const socketPath = await privateSocket(join(directory, "run"));
  const db = await PGlite.create({ dataDir: directory });
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 64 });
  await server.start();
  // The pg driver takes a host that starts with "/" as a socket directory and
  // adds `.s.PGSQL.<port>`; percent-encoded, the URL still parses (MikroORM
  // reads clientUrl with new URL()).
  const url = `postgres://postgres@${encodeURIComponent(join(directory, "run"))}:${SOCKET_PORT}/postgres`;
  logger.info({ data_dir: directory, socket: socketPath }, "embedded PostgreSQL (PGlite) started");
  return {
    url,
    socketPath,
    dataDir: directory,
    poolSize: 1,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

/** The port number in the socket's name, as PostgreSQL names its sockets. */
const SOCKET_PORT = 5432;
/** sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 103;

/**
 * The socket path in `runDir`, made ready: the directory private to this
 * user (also when it existed with looser modes), and a socket left by a
 * process that died removed. A socket something still answers on means the
 * data directory is in use, which PGlite cannot share.
 */
async function privateSocket(runDir: string): Promise<string> {
  const path = join(runDir, `.s.PGSQL.${SOCKET_PORT}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`the embedded database's socket ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the most a unix socket path may have: choose a shorter PARLEY_DATA_DIR`);
  }
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  chmodSync(runDir, 0o700);
  if (existsSync(path)) {
    if (await answers(path)) throw new Error(`the data directory ${resolve(runDir, "..")} is in use by another process (its database socket answers)`);
    unlinkSync(path);
  }
  return path;
}

function answers(path: string): Promise<boolean> {
  return new Promise((done) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      done(true);
    });
    probe.once("error", () => {
      done(false);
    });
  });
}
