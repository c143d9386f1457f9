// Builds the JavaScript the `parley` command runs: every TypeScript file of
// src/ and gen/ transpiled by esbuild, file by file (no bundle: modules find
// their SQL and HTML beside them, and pg still loads after the telemetry
// that instruments it), into dist/<fingerprint>/, where the fingerprint
// names the sources it was built from. bin/parley.js calls builtFor() at
// every start: when the sources are unchanged that is a stat of each file;
// after a change, a build of a fraction of a second. `npm run build` does
// it ahead of time (an image build does, so that no start compiles).
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SOURCE_DIRECTORIES = ["src", "gen"];
/** Builds kept in dist/, the newest first. */
const KEPT_BUILDS = 3;

/** Every file under the source directories, relative to `root`, sorted. */
function sourceFiles(root) {
  const walk = (directory) =>
    readdirSync(directory, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(directory, entry.name)) : [join(directory, entry.name)]));
  return SOURCE_DIRECTORIES.flatMap((directory) => walk(join(root, directory)))
    .map((file) => relative(root, file))
    .sort();
}

/** Names the sources by path, size and modification time: any edit changes it. */
function fingerprint(root, files) {
  const hash = createHash("sha256");
  for (const file of files) {
    const { size, mtimeMs } = statSync(join(root, file));
    hash.update(`${file}\0${size}\0${mtimeMs}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}

/**
 * The directory of JavaScript built from the sources under `root` (a URL
 * ending in "/"), built now if it is not there yet. Safe when several
 * processes start at once: each builds into a directory of its own and the
 * first to rename it into place wins.
 */
export async function builtFor(rootUrl) {
  const root = fileURLToPath(rootUrl);
  const files = sourceFiles(root);
  const name = fingerprint(root, files);
  const target = join(root, "dist", name);
  if (!existsSync(target)) await build(root, files, target);
  return pathToFileURL(`${target}/`);
}

async function build(root, files, target) {
  const { build: esbuild } = await import("esbuild");
  const scratch = `${target}.${process.pid}.tmp`;
  mkdirSync(dirname(target), { recursive: true });
  rmSync(scratch, { recursive: true, force: true });
  await esbuild({
    absWorkingDir: root,
    entryPoints: files.filter((file) => file.endsWith(".ts")),
    outdir: scratch,
    outbase: ".",
    format: "esm",
    platform: "node",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
  });
  // Everything else beside it (SQL, HTML), and the TypeScript too: the
  // demo page is bundled for browsers from its sources at start-up.
  for (const file of files) {
    mkdirSync(dirname(join(scratch, file)), { recursive: true });
    copyFileSync(join(root, file), join(scratch, file));
  }
  try {
    renameSync(scratch, target);
  } catch (error) {
    // Another process put the same build in place first.
    rmSync(scratch, { recursive: true, force: true });
    if (!existsSync(target)) throw error;
  }
  // The builds of older sources go, but for the newest few: a process
  // started from one may still load a module from it lazily.
  const builds = readdirSync(join(root, "dist"))
    .filter((entry) => /^[0-9a-f]{16}$/.test(entry))
    .map((entry) => ({ entry, at: statSync(join(root, "dist", entry)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  for (const { entry } of builds.slice(KEPT_BUILDS)) rmSync(join(root, "dist", entry), { recursive: true, force: true });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const built = await builtFor(new URL("../", import.meta.url));
  process.stdout.write(`built ${relative(process.cwd(), fileURLToPath(built))} in ${Math.round(performance.now() - started)} ms\n`);
}
