import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { assertDevelopmentModeAllowed } from "../../src/dev/development-guard.js";
import { loadConfig } from "../../src/runtime/config.js";
import { withoutUnset } from "../support/processes.js";

// The development mode hands out tokens to anyone: it must not start where
// production is declared, beyond loopback, or on an empty DATABASE_URL.

describe("the development mode's guard", () => {
  it("allows loopback addresses when nothing says production", () => {
    for (const host of ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"]) {
      expect(() => { assertDevelopmentModeAllowed(loadConfig({ PARLEY_HTTP_ADDR: `${host}:8080` })); }).not.toThrow();
    }
  });

  it("refuses a production marker and any address beyond loopback, naming each", () => {
    expect(() => { assertDevelopmentModeAllowed(loadConfig({ NODE_ENV: "production" })); }).toThrow(/PARLEY_ENV or NODE_ENV is production/);
    expect(() => { assertDevelopmentModeAllowed(loadConfig({ PARLEY_ENV: "production" })); }).toThrow(/PARLEY_ENV or NODE_ENV is production/);
    expect(() => { assertDevelopmentModeAllowed(loadConfig({ PARLEY_HTTP_ADDR: "0.0.0.0:8080" })); }).toThrow(/PARLEY_HTTP_ADDR 0\.0\.0\.0:8080: the development mode listens on loopback/);
    expect(() => { assertDevelopmentModeAllowed(loadConfig({ PARLEY_GRPC_ADDR: "[::]:50051" })); }).toThrow(/PARLEY_GRPC_ADDR/);
    expect(() => { assertDevelopmentModeAllowed(loadConfig({ PARLEY_HTTP_ADDR: "10.0.0.5:8080" })); }).toThrow(/loopback/);
  });

  it("`parley serve` refuses to start, exits 2 and creates no data, on NODE_ENV=production or an empty DATABASE_URL", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "parley-guard-"));
    try {
      for (const [env, expected] of [
        [{ DATABASE_URL: undefined, NODE_ENV: "production" }, /PARLEY_ENV or NODE_ENV is production/],
        [{ DATABASE_URL: "" }, /DATABASE_URL is set but empty/],
      ] as const) {
        const failure = await promisify(execFile)(process.execPath, ["bin/parley.js", "serve"], {
          env: withoutUnset({ ...process.env, PARLEY_DATA_DIR: join(dataDir, "data"), PARLEY_HTTP_ADDR: "127.0.0.1:0", PARLEY_GRPC_ADDR: "127.0.0.1:0", ...env }),
          timeout: 30_000,
        }).then(
          () => undefined,
          (error: unknown) => error as { code: number; stderr: string },
        );
        expect(failure?.code).toBe(2);
        expect(failure?.stderr).toMatch(expected);
      }
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
