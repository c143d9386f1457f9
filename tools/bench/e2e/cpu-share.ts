/** CPU shares of one bench:e2e run: the servers, PostgreSQL, the load generator and the machine. */
import type { TestDatabase } from "../../../test/support/database.js";
import { backendDeltaMicros, machineBusyMs, postgresBackendMicros, processCpuMicros } from "../cpu.js";

export interface CpuSnapshot {
  readonly at: number;
  readonly server: number | undefined;
  /** µs by PostgreSQL pid; empty when PostgreSQL is not on this machine. */
  readonly postgres: ReadonlyMap<number, number>;
  readonly load: number;
  readonly machine: number;
}

export async function cpuSnapshot(serverPid: number | readonly (number | undefined)[] | undefined, db: TestDatabase): Promise<CpuSnapshot> {
  const usage = process.cpuUsage();
  const pids = serverPid === undefined ? [] : typeof serverPid === "number" ? [serverPid] : serverPid.filter((pid): pid is number => pid !== undefined);
  let server: number | undefined;
  for (const pid of pids) {
    const micros = await processCpuMicros(pid);
    if (micros !== undefined) server = (server ?? 0) + micros / 1000;
  }
  return {
    at: performance.now(),
    server,
    postgres: (await postgresBackendMicros(db)) ?? new Map<number, number>(),
    load: (usage.user + usage.system) / 1000,
    machine: await machineBusyMs(),
  };
}

/** Percent of one core, over the interval (200% = both cores of this machine). */
export interface CpuShare {
  readonly server: number | undefined;
  readonly postgres: number;
  readonly load: number;
  readonly machine: number;
}

export function cpuShare(before: CpuSnapshot, after: CpuSnapshot): CpuShare {
  const wall = after.at - before.at;
  const pct = (ms: number) => (100 * ms) / wall;
  return {
    server: after.server === undefined || before.server === undefined ? undefined : pct(after.server - before.server),
    postgres: pct(backendDeltaMicros(before.postgres, after.postgres) / 1000),
    load: pct(after.load - before.load),
    machine: pct(after.machine - before.machine),
  };
}
