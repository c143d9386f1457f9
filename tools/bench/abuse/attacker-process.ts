/** The parent's side of the attacker process (attacker.ts): started, given its plan, its report awaited, its exit awaited. */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type AttackPlan, type AttackReport, parseChildMessage } from "./attack-plan.js";

const ATTACKER = fileURLToPath(new URL("./attacker.ts", import.meta.url));

export class AttackerProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once("exit", () => { resolve(); });
    });
  }

  /** Forks the attacker and waits until it has loaded (so that the attack starts on time). */
  static async start(): Promise<AttackerProcess> {
    const child = fork(ATTACKER, [], { execArgv: ["--import", "tsx"], env: process.env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const attacker = new AttackerProcess(child);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error("the attacker process did not start within 60 s")); }, 60_000);
        child.on("message", (message: unknown) => {
          if (parseChildMessage(message)?.type !== "ready") return;
          clearTimeout(timer);
          resolve();
        });
        child.once("exit", (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`the attacker process exited during start-up (${signal ?? String(code)})`));
        });
      });
    } catch (error) {
      attacker.kill();
      throw error;
    }
    return attacker;
  }

  /**
   * Starts the attack and resolves with the attacker's report once the
   * attack is over; a report that does not come `graceMs` after the planned
   * end is reported as missing.
   */
  run(plan: AttackPlan, graceMs: number): Promise<AttackReport> {
    return new Promise((resolve) => {
      const missing = (why: string) => {
        resolve({ summary: `no report from the attacker (${why})`, details: [] });
      };
      const timer = setTimeout(() => { missing("timed out"); }, plan.durationMs + graceMs);
      this.#child.on("message", (message: unknown) => {
        const parsed = parseChildMessage(message);
        if (parsed === undefined || parsed.type === "ready") return;
        clearTimeout(timer);
        if (parsed.type === "report") resolve({ summary: parsed.summary, details: parsed.details });
        else missing(`it failed: ${parsed.message}`);
      });
      this.#child.once("exit", (code, signal) => {
        clearTimeout(timer);
        missing(`it exited: ${signal ?? String(code)}`);
      });
      this.#child.send({ type: "start", plan });
    });
  }

  /** Waits for the attacker to end its connections and exit; kills it after `graceMs`. */
  async exit(graceMs: number): Promise<void> {
    const killer = setTimeout(() => { this.kill(); }, graceMs);
    await this.#exited;
    clearTimeout(killer);
  }

  kill(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill("SIGKILL");
  }
}
