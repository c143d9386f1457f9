// A PostgreSQL server of a test's own — initdb into a temporary directory,
// a free port on loopback — that the test may stop, restart or kill as it
// pleases. The machine's shared server is never touched.
import { execFile } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { freePort } from "./free-port.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const OWNER = "postgres";

/** Runs a PostgreSQL program as its owner (initdb and postgres refuse to run as root). */
async function asOwner(program: string, args: readonly string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const { stdout } = await run(asRoot ? "runuser" : program, asRoot ? ["-u", OWNER, "--", program, ...args] : [...args], { timeout: 60_000 });
  return stdout;
}


export class PrivatePostgres {
  private constructor(
    private readonly dir: string,
    readonly port: number,
  ) {}

  /** initdb (trust, user postgres) and start on a free loopback port. */
  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), "parley-pg-"));
    if (process.getuid?.() === 0) {
      const { stdout } = await run("id", ["-u", OWNER]);
      const { stdout: gid } = await run("id", ["-g", OWNER]);
      chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    }
    const server = new PrivatePostgres(dir, await freePort());
    try {
      await asOwner("initdb", ["-D", server.dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
      await server.#pgCtl(["start"]);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    return server;
  }

  private get dataDir(): string {
    return join(this.dir, "data");
  }

  /** The connection URL of database `name` (default `postgres`). */
  url(name = "postgres"): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`;
  }

  /** `pg_ctl restart -m <mode>`: fast (connections closed, a clean shutdown) or immediate (like a crash). */
  restart(mode: "fast" | "immediate"): Promise<void> {
    return this.#pgCtl(["restart", "-m", mode]);
  }

  stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    return this.#pgCtl(["stop", "-m", mode]);
  }

  startAgain(): Promise<void> {
    return this.#pgCtl(["start"]);
  }

  /** Stops the server (immediate) and removes its files. */
  async destroy(): Promise<void> {
    await this.stop("immediate").catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #pgCtl(args: readonly string[]): Promise<void> {
    // -w: wait until it is up (or down); no fsync: a test's data need not survive the machine.
    const options = `-p ${this.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c max_connections=50`;
    await asOwner("pg_ctl", ["-D", this.dataDir, "-l", join(this.dir, "log"), "-w", "-t", "30", ...args, ...(args[0] === "stop" ? [] : ["-o", options])]);
  }
}
