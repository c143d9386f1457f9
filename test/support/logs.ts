import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/runtime/logger.js";

/** A real pino logger whose JSON lines the test can read back. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: Logger;

  constructor(level = "info") {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const line of chunk.toString().split("\n")) {
          if (line.trim() !== "") this.lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        callback();
      },
    });
    this.logger = createLogger({ level, destination: sink });
  }

  /** Lines whose fields include every given field. */
  find(fields: Record<string, unknown>): Record<string, unknown>[] {
    return this.lines.filter((line) => Object.entries(fields).every(([key, value]) => line[key] === value));
  }
}
