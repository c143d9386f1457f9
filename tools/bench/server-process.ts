import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isChildMessage, type ParentMessage } from "./ipc.js";

export type ServerKind = "noop" | "core";

export interface ServerProcessOptions {
  readonly kind: ServerKind;
  /** Extra environment (the core's database URL and JWT secret). */
  readonly env?: Readonly<Record<string, string>>;
  /** Extra node flags, e.g. `--cpu-prof`. */
  readonly nodeFlags?: readonly string[];
  /** How long start-up may take. */
  readonly startTimeoutMs?: number;
}

/** A tools/bench/servers.ts child process, serving on `address`. */
export class ServerProcess {
  #nextId = 0;
  readonly #exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly address: string,
  ) {
    this.#exited = exitOf(child);
  }

  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const child = fork(fileURLToPath(new URL("./servers.ts", import.meta.url)), [options.kind], {
      execArgv: ["--import", "tsx", ...(options.nodeFlags ?? [])],
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    try {
      const startTimeoutMs = options.startTimeoutMs ?? 60_000;
      let timer: NodeJS.Timeout | undefined;
      const address = await new Promise<string>((resolve, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`the ${options.kind} server did not start within ${startTimeoutMs} ms`));
        }, startTimeoutMs);
        child.on("message", (message: unknown) => {
          if (!isChildMessage(message)) return;
          if (message.type === "ready") resolve(message.address);
          if (message.type === "failed") reject(new Error(`the ${options.kind} server failed to start: ${message.message}`));
        });
        child.once("exit", (code, signal) => {
          reject(new Error(`the ${options.kind} server exited during start-up (${signal ?? String(code)})`));
        });
        child.once("error", reject);
      }).finally(() => {
        clearTimeout(timer);
      });
      return new ServerProcess(child, address);
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
  }

  /** The child's CPU time so far (user + system), in µs. */
  cpuMicros(): Promise<number> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.off("message", onMessage);
        reject(new Error("the server did not report its CPU time"));
      }, 5_000);
      const onMessage = (message: unknown) => {
        if (!isChildMessage(message) || message.type !== "cpu" || message.id !== id) return;
        clearTimeout(timer);
        this.child.off("message", onMessage);
        resolve(message.usage.user + message.usage.system);
      };
      this.child.on("message", onMessage);
      this.#send({ type: "cpu", id });
    });
  }

  /** Asks the server to stop and waits for it to exit; kills it after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.#send({ type: "stop" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Immediate, for failures and Ctrl-C. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  #send(message: ParentMessage): void {
    if (this.child.connected) this.child.send(message);
  }
}

function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => { resolve(); }));
}
