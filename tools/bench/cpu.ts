/** CPU time of the machine and of PostgreSQL backends, for telling where a benchmark's time goes. */
import { readFile } from "node:fs/promises";
import os from "node:os";
import type { TestDatabase } from "../../test/support/database.js";

/** Linux reports CPU times in clock ticks of 1/100 s on every common platform. */
const MICROS_PER_TICK = 10_000;

/** Busy time of all CPUs since boot, in ms (every process, this one included). */
export async function machineBusyMs(): Promise<number> {
  if (os.platform() === "linux") {
    // os.cpus() leaves out softirq time, which is where loopback traffic is
    // handled: at tens of thousands of messages a second it matters.
    const total = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0] ?? "";
    const [user = 0, nice = 0, system = 0, _idle, _iowait, irq = 0, softirq = 0] = total.split(/\s+/).slice(1).map(Number);
    return ((user + nice + system + irq + softirq) * MICROS_PER_TICK) / 1000;
  }
  return os.cpus().reduce((sum, cpu) => sum + cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq, 0);
}

/**
 * CPU time (µs) of each PostgreSQL process working for `db`, by pid, read
 * from /proc; undefined where that cannot work (not Linux, or PostgreSQL not
 * on this machine). The connection asking is left out.
 */
export async function postgresBackendMicros(db: TestDatabase): Promise<Map<number, number> | undefined> {
  if (os.platform() !== "linux" || !LOCAL_HOSTS.has(new URL(db.url).hostname)) return undefined;
  // The database's own backends (the pool, the LISTEN connection, autovacuum) and the
  // shared writers that flush its WAL and pages.
  const rows = await db.sql<{ pid: number }>(
    `select pid from pg_stat_activity
      where (datname = current_database() and pid <> pg_backend_pid())
         or backend_type in ('walwriter', 'checkpointer', 'background writer')`,
  );
  const micros = new Map<number, number>();
  for (const { pid } of rows) {
    const used = await processCpuMicros(pid);
    if (used !== undefined) micros.set(pid, used); // undefined: the backend exited meanwhile
  }
  return micros;
}

/** CPU time (user + system, µs) of process `pid` on Linux; undefined once it has exited. */
export async function processCpuMicros(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * MICROS_PER_TICK;
}

const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** CPU used between two readings by the backends present in both (pooled connections persist). */
export function backendDeltaMicros(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let sum = 0;
  for (const [pid, end] of after) {
    const start = before.get(pid);
    if (start !== undefined) sum += end - start;
  }
  return sum;
}
