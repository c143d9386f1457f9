#!/usr/bin/env node
// The `parley` command. Runs JavaScript built from the TypeScript sources
// (scripts/build.mjs: dist/<fingerprint of the sources>/), building it first
// when the sources changed since — once, in a fraction of a second — so that
// a start compiles nothing. Telemetry starts first: the pg instrumentation
// must see the driver load.
import { builtFor } from "../scripts/build.mjs";

const built = await builtFor(new URL("../", import.meta.url));
// Stack traces name the TypeScript lines (the build writes source maps).
process.setSourceMapsEnabled(true);
const { startTelemetry } = await import(new URL("src/runtime/telemetry/setup.js", built).href);
startTelemetry({ serviceName: "parley" });
await import(new URL("src/cli.js", built).href);
