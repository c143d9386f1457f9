#!/usr/bin/env node
// The `parley` command. Runs the TypeScript sources directly through tsx's
// loader, so there is no build step between a checkout and a running server.
// Telemetry starts first: the pg instrumentation must see the driver load.
import { register } from "tsx/esm/api";

register();
const { startTelemetry } = await import("../src/runtime/telemetry/setup.ts");
startTelemetry({ serviceName: "parley" });
await import("../src/cli.ts");
