import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export interface DemoAssets {
  readonly html: string;
  readonly script: string;
}

/**
 * Bundles the demo page (and with it the client library and the generated
 * types) for browsers, in memory, at start-up: no build step, no stale bundle.
 */
export async function buildDemo(): Promise<DemoAssets> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("./demo-app.ts", import.meta.url))],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: false,
    logLevel: "silent",
  });
  const script = result.outputFiles[0]?.text;
  if (script === undefined) throw new Error("the demo bundle is empty");
  return { html: readFileSync(new URL("./index.html", import.meta.url), "utf8"), script };
}
