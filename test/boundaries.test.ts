// The import boundaries of src/ (.dependency-cruiser.cjs) catch what they
// promise to: each deliberately wrong import below, in a scratch tree laid out
// like src/, fails `depcruise` with the name of the rule it breaks, while the
// same tree without them passes.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/** Files every scratch tree has: one legal module per folder. */
const LEGAL: Record<string, string> = {
  "gen/thing_pb.ts": "export const schema = 1;\n",
  "src/wire/limits.ts": 'import { create } from "@bufbuild/protobuf";\nimport { schema } from "../../gen/thing_pb.js";\nexport const limit = [create, schema];\n',
  "src/wire/index.ts": 'export { limit } from "./limits.js";\n',
  "src/runtime/logger.ts": 'import { limit } from "../wire/index.js";\nexport const logger = limit;\n',
  "src/runtime/index.ts": 'export { logger } from "./logger.js";\n',
  "src/core/store.ts": 'import { logger } from "../runtime/index.js";\nexport const store = logger;\n',
  "src/core/index.ts": 'export { store } from "./store.js";\n',
  "src/bridge/server.ts": 'import { logger } from "../runtime/index.js";\nimport { limit } from "../wire/index.js";\nexport const server = [logger, limit];\n',
  "src/bridge/index.ts": 'export { server } from "./server.js";\n',
  "src/client/client.ts": 'import { limit } from "../wire/index.js";\nexport const client = limit;\n',
  "src/client/index.ts": 'export { client } from "./client.js";\n',
  "src/dev/demo.ts": 'import { client } from "../client/index.js";\nexport const demo = client;\n',
  "src/dev/index.ts": 'export { demo } from "./demo.js";\n',
  "src/cli.ts": 'import { store } from "./core/index.js";\nimport { server } from "./bridge/index.js";\nimport { demo } from "./dev/index.js";\nexport const all = [store, server, demo];\n',
};

/** One deliberately wrong import per rule: the file that holds it, and its text. */
const WRONG: ReadonlyArray<{ rule: string; file: string; text: string }> = [
  { rule: "bridge-not-core", file: "src/bridge/uses-core.ts", text: 'import { store } from "../core/index.js";\nexport const x = store;\n' },
  { rule: "core-not-bridge", file: "src/core/uses-bridge.ts", text: 'import { server } from "../bridge/index.js";\nexport const x = server;\n' },
  { rule: "client-only-wire-and-gen", file: "src/client/uses-runtime.ts", text: 'import { logger } from "../runtime/index.js";\nexport const x = logger;\n' },
  { rule: "client-only-wire-and-gen", file: "src/client/uses-node.ts", text: 'import { readFileSync } from "node:fs";\nexport const x = readFileSync;\n' },
  { rule: "wire-only-gen-and-protobuf", file: "src/wire/uses-runtime.ts", text: 'import { logger } from "../runtime/index.js";\nexport const x = logger;\n' },
  { rule: "wire-only-gen-and-protobuf", file: "src/wire/uses-grpc.ts", text: 'import { status } from "@grpc/grpc-js";\nexport const x = status;\n' },
  { rule: "runtime-no-product", file: "src/runtime/uses-core.ts", text: 'import { store } from "../core/index.js";\nexport const x = store;\n' },
  { rule: "dev-only-from-cli", file: "src/core/uses-dev.ts", text: 'import { demo } from "../dev/index.js";\nexport const x = demo;\n' },
  { rule: "public-surface-only", file: "src/bridge/deep-import.ts", text: 'import { logger } from "../runtime/logger.js";\nexport const x = logger;\n' },
  { rule: "cli-uses-public-surfaces", file: "src/cli.ts", text: 'import { store } from "./core/store.js";\nexport const all = store;\n' },
  { rule: "no-own-index", file: "src/core/own-index.ts", text: 'import { store } from "./index.js";\nexport const x = store;\n' },
  { rule: "no-circular", file: "src/runtime/cycle-a.ts", text: 'import { b } from "./cycle-b.js";\nexport const a = () => b;\n' },
];

/** The other half of the cycle: a cycle is reported once, from the module where it was first seen. */
const CYCLE_PARTNER = { "src/runtime/cycle-b.ts": 'import { a } from "./cycle-a.js";\nexport const b = () => a;\n' };

async function scratchTree(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "parley-boundaries-"));
  await symlink(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  await writeFile(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext" } }));
  for (const [file, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text);
  }
  return dir;
}

/** Runs the project's own boundary check over `dir`; returns its exit status and report. */
async function cruise(dir: string): Promise<{ code: number; report: string }> {
  const bin = path.join(ROOT, "node_modules/.bin/depcruise");
  const args = ["src", "gen", "--config", path.join(ROOT, ".dependency-cruiser.cjs"), "--output-type", "err"];
  try {
    const { stdout } = await run(bin, args, { cwd: dir });
    return { code: 0, report: stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: failed.code ?? -1, report: failed.stdout ?? "" };
  }
}

describe("import boundaries", () => {
  const dirs: string[] = [];
  let legal: { code: number; report: string };
  let wrong: { code: number; report: string };

  beforeAll(async () => {
    const legalDir = await scratchTree(LEGAL);
    const wrongDir = await scratchTree({ ...LEGAL, ...CYCLE_PARTNER, ...Object.fromEntries(WRONG.map((w) => [w.file, w.text])) });
    dirs.push(legalDir, wrongDir);
    [legal, wrong] = await Promise.all([cruise(legalDir), cruise(wrongDir)]);
  });

  afterAll(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it("passes a tree whose imports follow the layout", () => {
    expect(legal.report).toContain("no dependency violations found");
    expect(legal.code).toBe(0);
  });

  it("fails the check when any wrong import is present", () => {
    expect(wrong.code).not.toBe(0);
  });

  it.each(WRONG.map((w) => [w.rule, w.file] as const))("names rule %s for %s", (rule, file) => {
    const line = wrong.report.split("\n").find((l) => l.includes(`error ${rule}:`) && l.includes(file));
    expect(line, wrong.report).toBeDefined();
  });
});
