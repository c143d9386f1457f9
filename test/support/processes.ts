import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { TEST_RELAY_SUBJECT } from "./core.js";

export interface ParleyProcess {
  readonly child: ChildProcess;
  /** JSON log lines written so far. */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first log line matching `predicate` (rejects after `timeoutMs`). */
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGKILL: no graceful anything. */
  kill(): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
}

/**
 * Runs `parley <command>` as a real child process with the given environment
 * (rooms on first use and the test relay subject, as startTestCore has them,
 * unless `env` says otherwise);
 * a variable given as undefined is removed from the child's environment.
 */
export function spawnParley(command: string, env: Record<string, string | undefined>): ParleyProcess {
  const child = spawn(process.execPath, ["bin/parley.js", command], {
    // Test bridges bring relay tokens of TEST_RELAY_SUBJECT (test/support/core.ts).
    env: withoutUnset({ ...process.env, PARLEY_LOG_LEVEL: "info", PARLEY_IMPLICIT_ROOMS: "1", PARLEY_RELAY_SUBJECTS: TEST_RELAY_SUBJECT, ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  const exited = new Promise<void>((resolve) => child.once("exit", () => { resolve(); }));
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  {
    createInterface({ input: child.stdout }).on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    });
  }
  return {
    child,
    lines,
    waitFor(predicate, timeoutMs = 20_000) {
      const found = lines.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`parley ${command}: no matching log line within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
        }, timeoutMs);
        waiters.push({
          predicate,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Starts `parley core` and resolves with its gRPC address once it serves. */
export async function spawnCore(env: Record<string, string>): Promise<{ process: ParleyProcess; address: string }> {
  const core = spawnParley("core", { PARLEY_GRPC_ADDR: "127.0.0.1:0", ...env });
  const serving = await core.waitFor((line) => line.msg === "core serving");
  return { process: core, address: String(serving.grpc) };
}

/** The environment without the variables whose value is undefined (a child would see "undefined"). */
export function withoutUnset(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}
