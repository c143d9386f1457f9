// Guards the contract: `buf lint`, gen/ up to date with proto/, and
// `buf breaking` against the previous commit when there is one.
// Exits non-zero on the first failure.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const env = { ...process.env, PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH ?? ""}` };

function run(step, args) {
  process.stdout.write(`check:contracts: ${step}\n`);
  const result = spawnSync("buf", args, { cwd: root, env, stdio: "inherit" });
  if (result.status !== 0) {
    process.stderr.write(`check:contracts: ${step} failed (exit ${result.status ?? result.signal})\n`);
    process.exit(1);
  }
}

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const entry of readdirSync(d)) {
      const path = join(d, entry);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path));
    }
  };
  walk(dir);
  return out.sort();
}

run("buf lint", ["lint"]);

const scratch = mkdtempSync(join(tmpdir(), "parley-gen-"));
try {
  run("buf generate (into a scratch directory)", ["generate", "--output", scratch]);
  const fresh = join(scratch, "gen");
  const committed = join(root, "gen");
  const freshFiles = listFiles(fresh);
  const committedFiles = listFiles(committed);
  const stale = [
    ...freshFiles.filter((f) => !committedFiles.includes(f)).map((f) => `missing: gen/${f}`),
    ...committedFiles.filter((f) => !freshFiles.includes(f)).map((f) => `not generated: gen/${f}`),
    ...freshFiles
      .filter((f) => committedFiles.includes(f))
      .filter((f) => !readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))))
      .map((f) => `differs: gen/${f}`),
  ];
  if (stale.length > 0) {
    process.stderr.write(`check:contracts: gen/ is stale; run \`npm run generate\` and commit:\n  ${stale.join("\n  ")}\n`);
    process.exit(1);
  }
  process.stdout.write("check:contracts: gen/ is up to date\n");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const hasPrevious = (() => {
  try {
    execFileSync("git", ["cat-file", "-e", "HEAD~1:buf.yaml"], { cwd: root, stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (hasPrevious) {
  run("buf breaking against HEAD~1", ["breaking", "--against", ".git#ref=HEAD~1"]);
} else {
  process.stdout.write("check:contracts: no previous commit with contracts; breaking check skipped\n");
}
